// Single-core speed of the dense kernels (fr_conv2d_*, fr_gemm) on the
// shapes of the torchcfm MNIST U-Net, against OpenBLAS cblas_sgemm on a full
// im2col, and against the AVX-512 FMA peak measured here.
//
// Build and run from the repository root:
//   clang -std=c99 -O2 bench/kernels/bench_conv.c Sources/CKernels/*.c -ISources/CKernels/include \
//     $(pkg-config --cflags --libs openblas) -lm -o /tmp/bench_conv
//   /tmp/bench_conv                                              # OPENBLAS_CORETYPE as set
//   env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE /tmp/bench_conv  # OpenBLAS's own choice
//
// Each figure is the best of 60 rounds of ≥ 3 ms: on a shared machine short
// rounds are likelier to find the core to themselves.
// GFLOP/s counts 2 flops per multiply-add of the direct formula (padding
// included in neither). OpenBLAS runs on one thread. Columns: ours, share
// of the measured peak, OpenBLAS whole (forward: im2col + sgemm per sample;
// backward weight: the same; backward input: not measured, col2im would
// add to it), OpenBLAS sgemm alone on a prepared im2col. Rows marked
// "winograd" are the F(2×2, 3×3) path of the same convolution, counted with
// the direct formula's flops (effective GFLOP/s: above the peak means
// fewer multiplies, not faster ones).
#define _POSIX_C_SOURCE 200112L
#include <cblas.h>
#include <immintrin.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ckernels.h"
#include "../bench_util.h"

void openblas_set_num_threads(int);
char *openblas_get_corename(void);

typedef void (*bench_fn)(void *ctx);

// Best seconds per call.
static double best_time(bench_fn fn, void *ctx) {
    fn(ctx);
    size_t iters = 1;
    double t0 = now();
    fn(ctx);
    double once = now() - t0;
    if (once < 0.003) iters = (size_t)(0.003 / (once > 1e-7 ? once : 1e-7)) + 1;
    double best = 1e30;
    for (int round = 0; round < 60; round++) {
        t0 = now();
        for (size_t i = 0; i < iters; i++) fn(ctx);
        double t = (now() - t0) / (double)iters;
        if (t < best) best = t;
    }
    return best;
}

// --- FMA peak: 24 independent accumulator chains.
__attribute__((target("avx512f"))) static void peak_body(void *ctx) {
    float *out = ctx;
    __m512 acc[24];
    for (int i = 0; i < 24; i++) acc[i] = _mm512_set1_ps((float)i);
    const __m512 a = _mm512_set1_ps(0.999f), b = _mm512_set1_ps(0.001f);
    for (int it = 0; it < 100000; it++) {
        for (int i = 0; i < 24; i++) acc[i] = _mm512_fmadd_ps(acc[i], a, b);
        __asm__ volatile("" : "+v"(acc[0]), "+v"(acc[1]), "+v"(acc[2]), "+v"(acc[3]));
    }
    __m512 s = acc[0];
    for (int i = 1; i < 24; i++) s = _mm512_add_ps(s, acc[i]);
    _mm512_storeu_ps(out, s);
}

// --- Convolution.
typedef struct {
    const char *name;
    fr_conv2d_geometry g;
    size_t n;
    float *x, *w, *bias, *y, *gy, *gx, *gw, *scratch, *col, *col_t, *u, *ut, *wscratch;
    int pass;  // 0 forward, 1 backward input, 2 backward weight, 3 / 4 forward / backward input by Winograd
} conv_ctx;

static void conv_ours(void *p) {
    conv_ctx *c = p;
    if (c->pass == 0) fr_conv2d_forward(&c->g, c->x, c->w, c->bias, c->y, c->n, c->scratch);
    else if (c->pass == 1) fr_conv2d_backward_input(&c->g, c->gy, c->w, c->gx, c->n, c->scratch);
    else if (c->pass == 2) fr_conv2d_backward_weight(&c->g, c->x, c->gy, c->gw, c->n, c->scratch);
    else if (c->pass == 3) fr_conv2d_forward_winograd(&c->g, c->x, c->u, c->bias, c->y, c->n, c->wscratch);
    else fr_conv2d_backward_input_winograd(&c->g, c->gy, c->ut, c->gx, c->n, c->wscratch);
}

static size_t conv_k(const fr_conv2d_geometry *g) { return g->cin / g->groups * g->kh * g->kw; }

// Full im2col of one sample (groups = 1): col [K, oh·ow]; the in-image run
// of each output row is found once and copied (memcpy at stride 1), the
// rest zero-filled, so the baseline is not held back by a naive gather.
static void im2col(const fr_conv2d_geometry *g, const float *x, float *col) {
    size_t ohw = g->oh * g->ow;
    for (size_t ci = 0; ci < g->cin; ci++)
        for (size_t ky = 0; ky < g->kh; ky++)
            for (size_t kx = 0; kx < g->kw; kx++) {
                float *row = col + ((ci * g->kh + ky) * g->kw + kx) * ohw;
                long x0 = (long)(kx * g->dil_w) - (long)g->pad_left, sw = (long)g->stride_w;
                // ox in [lo, hi) reads inside the image.
                long lo = x0 < 0 ? (-x0 + sw - 1) / sw : 0;
                long hi = x0 >= (long)g->w ? 0 : ((long)g->w - 1 - x0) / sw + 1;
                if (hi > (long)g->ow) hi = (long)g->ow;
                if (hi < lo) hi = lo;
                for (size_t oy = 0; oy < g->oh; oy++) {
                    float *dst = row + oy * g->ow;
                    long iy = (long)(oy * g->stride_h + ky * g->dil_h) - (long)g->pad_top;
                    if (iy < 0 || iy >= (long)g->h) {
                        memset(dst, 0, g->ow * sizeof(float));
                        continue;
                    }
                    const float *src = x + (ci * g->h + (size_t)iy) * g->w;
                    for (long ox = 0; ox < lo; ox++) dst[ox] = 0.0f;
                    if (sw == 1) memcpy(dst + lo, src + x0 + lo, (size_t)(hi - lo) * sizeof(float));
                    else
                        for (long ox = lo; ox < hi; ox++) dst[ox] = src[x0 + ox * sw];
                    for (long ox = hi; ox < (long)g->ow; ox++) dst[ox] = 0.0f;
                }
            }
}

static void im2col_one(void *p) {
    conv_ctx *c = p;
    im2col(&c->g, c->x, c->col);
}

// OpenBLAS forward: im2col (counted) + sgemm, per sample.
static void conv_blas(void *p) {
    conv_ctx *c = p;
    const fr_conv2d_geometry *g = &c->g;
    size_t K = conv_k(g), ohw = g->oh * g->ow;
    for (size_t s = 0; s < c->n; s++) {
        const float *b = c->x + s * g->cin * g->h * g->w;
        if (!(g->kh == 1 && g->kw == 1 && g->stride_h == 1 && g->pad_top == 0)) {
            im2col(g, b, c->col);
            b = c->col;
        }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)g->cout, (int)ohw, (int)K, 1.0f, c->w, (int)K, b,
                    (int)ohw, 0.0f, c->y + s * g->cout * ohw, (int)ohw);
    }
}

// OpenBLAS sgemm alone on a prepared im2col (the GEMM's own speed).
static void conv_blas_gemm_only(void *p) {
    conv_ctx *c = p;
    const fr_conv2d_geometry *g = &c->g;
    size_t K = conv_k(g), ohw = g->oh * g->ow;
    for (size_t s = 0; s < c->n; s++)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)g->cout, (int)ohw, (int)K, 1.0f, c->w, (int)K,
                    c->col, (int)ohw, 0.0f, c->y + s * g->cout * ohw, (int)ohw);
}

// --- GEMM.
typedef struct {
    int ta, tb;
    size_t m, n, k;
    float *a, *b, *c, *scratch;
} gemm_ctx;

static void gemm_ours(void *p) {
    gemm_ctx *g = p;
    fr_gemm(g->ta, g->tb, g->m, g->n, g->k, g->a, g->ta ? g->m : g->k, g->b, g->tb ? g->k : g->n, 0.0f, g->c, g->n,
            g->scratch);
}

static void gemm_blas(void *p) {
    gemm_ctx *g = p;
    cblas_sgemm(CblasRowMajor, g->ta ? CblasTrans : CblasNoTrans, g->tb ? CblasTrans : CblasNoTrans, (int)g->m,
                (int)g->n, (int)g->k, 1.0f, g->a, (int)(g->ta ? g->m : g->k), g->b, (int)(g->tb ? g->k : g->n), 0.0f,
                g->c, (int)g->n);
}

// Table rows: ours, OpenBLAS whole (im2col + sgemm; 0 = not measured) and
// OpenBLAS sgemm alone, in GFLOP/s; printed at the end against the best
// peak seen before and after (on a shared machine either may be low).
typedef struct {
    char name[64];
    double ours, blas_whole, blas_gemm;
} row_t;
static row_t rows[64];
static int nrows;

static void report(const char *name, double flops, double ours, double blas_whole, double blas_gemm) {
    row_t *r = &rows[nrows++];
    snprintf(r->name, sizeof r->name, "%s", name);
    r->ours = flops / ours * 1e-9;
    r->blas_whole = blas_whole > 0 ? flops / blas_whole * 1e-9 : 0.0;
    r->blas_gemm = flops / blas_gemm * 1e-9;
}

static double measure_peak(void) {
    float sink[16];
    double t = best_time(peak_body, sink);
    return 24.0 * 16.0 * 2.0 * 100000.0 / t * 1e-9;
}

static void bench_conv(const char *name, size_t n, size_t cin, size_t hw, size_t cout, size_t k, size_t pad) {
    conv_ctx c;
    memset(&c, 0, sizeof c);
    c.name = name;
    c.n = n;
    c.g = (fr_conv2d_geometry){cin, hw, hw, cout, k, k, 1, 1, pad, pad, 1, 1, 1, hw, hw};
    size_t K = conv_k(&c.g), ohw = hw * hw;
    c.x = fbuf(n * cin * hw * hw);
    c.w = fbuf(cout * K);
    c.bias = fbuf(cout);
    c.y = fbuf(n * cout * ohw);
    c.gy = fbuf(n * cout * ohw);
    c.gx = fbuf(n * cin * hw * hw);
    c.gw = fbuf(cout * K);
    c.scratch = fbuf(fr_conv2d_scratch_floats(&c.g));
    c.col = fbuf(K * ohw);
    im2col(&c.g, c.x, c.col);
    double flops = 2.0 * (double)n * (double)cout * (double)ohw * (double)K;
    char label[128];
    c.pass = 0;
    double ours = best_time(conv_ours, &c);
    double blas = best_time(conv_blas, &c), blas_gemm = best_time(conv_blas_gemm_only, &c);
    snprintf(label, sizeof label, "%s fwd", name);
    report(label, flops, ours, blas, blas_gemm);
    c.pass = 1;
    ours = best_time(conv_ours, &c);
    snprintf(label, sizeof label, "%s bwd input", name);
    // OpenBLAS: Wᵀ·GY per sample (sgemm only; col2im not measured).
    gemm_ctx gi = {1, 0, K, ohw, cout, c.w, c.gy, c.col, NULL};
    double bg = best_time(gemm_blas, &gi) * (double)n;
    report(label, flops, ours, 0, bg);
    c.pass = 2;
    ours = best_time(conv_ours, &c);
    snprintf(label, sizeof label, "%s bwd weight", name);
    // OpenBLAS: GY·X̂ᵀ per sample, with and without the im2col.
    gemm_ctx gw = {0, 1, cout, K, ohw, c.gy, c.col, c.gw, NULL};
    bg = best_time(gemm_blas, &gw) * (double)n;
    double whole = bg;
    if (!(c.g.kh == 1 && c.g.kw == 1)) whole += best_time(im2col_one, &c) * (double)n;
    report(label, flops, ours, whole, bg);
    if (fr_conv2d_winograd_input_grad_applies(&c.g)) {
        c.u = fbuf(fr_conv2d_winograd_packed_floats(&c.g));
        c.ut = fbuf(fr_conv2d_winograd_packed_floats(&c.g));
        c.wscratch = fbuf(fr_conv2d_winograd_scratch_floats(&c.g));
        fr_conv2d_winograd_pack(&c.g, c.w, c.u);
        fr_conv2d_winograd_pack_input_grad(&c.g, c.w, c.ut);
        c.pass = 3;
        snprintf(label, sizeof label, "%s fwd winograd", name);
        report(label, flops, best_time(conv_ours, &c), blas, blas_gemm);
        c.pass = 4;
        snprintf(label, sizeof label, "%s bwd input winograd", name);
        report(label, flops, best_time(conv_ours, &c), 0, best_time(gemm_blas, &gi) * (double)n);
        free(c.u); free(c.ut); free(c.wscratch);
    }
    free(c.x); free(c.w); free(c.bias); free(c.y); free(c.gy); free(c.gx); free(c.gw); free(c.scratch); free(c.col);
}

static void bench_gemm(const char *name, int ta, int tb, size_t m, size_t n, size_t k) {
    gemm_ctx g = {ta, tb, m, n, k, fbuf(m * k), fbuf(k * n), fbuf(m * n), fbuf(fr_gemm_scratch_floats(m, n, k))};
    double flops = 2.0 * (double)m * (double)n * (double)k;
    double ours = best_time(gemm_ours, &g), blas = best_time(gemm_blas, &g);
    report(name, flops, ours, blas, blas);
    free(g.a); free(g.b); free(g.c); free(g.scratch);
}

// --- Softmax and GroupNorm (memory-bound: reported in time and GB/s of
// input + output).
typedef struct {
    size_t n, c, spatial, groups;
    float *x, *y, *pre, *stats, *gamma, *beta;
} norm_ctx;

static void softmax_ours(void *p) {
    norm_ctx *c = p;
    fr_softmax_rows(c->x, c->y, c->n, c->spatial);
}

static void group_norm_ours(void *p) {
    norm_ctx *c = p;
    fr_group_norm_forward(c->x, c->gamma, c->beta, c->y, c->stats, c->pre, c->n, c->c, c->spatial, c->groups, 1e-5f, 1);
}

static void bench_norm(void) {
    norm_ctx s = {784, 1, 784, 1, fbuf(784 * 784), fbuf(784 * 784), NULL, NULL, NULL, NULL};
    double t = best_time(softmax_ours, &s);
    printf("softmax rows 784 x 784 (attention): %.1f us, %.1f GB/s\n", t * 1e6, 2.0 * 4 * 784 * 784 / t * 1e-9);
    norm_ctx g = {8, 64, 784, 32, fbuf(8 * 64 * 784), fbuf(8 * 64 * 784), fbuf(8 * 64 * 784), fbuf(8 * 32 * 2),
                  fbuf(64), fbuf(64)};
    t = best_time(group_norm_ours, &g);
    printf("GroupNorm+SiLU n=8 c=64 28x28 groups=32 (with pre-activation): %.1f us, %.1f GB/s\n", t * 1e6,
           3.0 * 4 * 8 * 64 * 784 / t * 1e-9);
}

int main(void) {
    openblas_set_num_threads(1);
    const char *ct = getenv("OPENBLAS_CORETYPE"), *l2 = getenv("OPENBLAS_L2_SIZE");
    printf("OpenBLAS core: %s (OPENBLAS_CORETYPE=%s, OPENBLAS_L2_SIZE=%s); our path: %s\n", openblas_get_corename(),
           ct ? ct : "unset", l2 ? l2 : "unset", fr_dense_avx512_active() ? "AVX-512F" : "portable");
    double peak_before = measure_peak();
    bench_conv("conv 3x3 32->32 28x28", 1, 32, 28, 32, 3, 1);
    bench_conv("conv 3x3 32->32 28x28, batch 8", 8, 32, 28, 32, 3, 1);
    bench_conv("conv 3x3 64->64 14x14", 1, 64, 14, 64, 3, 1);
    bench_conv("conv 3x3 64->64 14x14, batch 8", 8, 64, 14, 64, 3, 1);
    bench_conv("conv 3x3 64->64 16x16, batch 8", 8, 64, 16, 64, 3, 1);
    bench_conv("conv 1x1 32->96 28x28 (qkv)", 1, 32, 28, 96, 1, 0);
    bench_gemm("attention Q.K^T m=n=784 k=32 (trans_b)", 0, 1, 784, 784, 32);
    bench_gemm("attention P.V m=784 n=32 k=784", 0, 0, 784, 32, 784);
    bench_gemm("gemm m=256 n=256 k=1024", 0, 0, 256, 256, 1024);
    bench_gemm("gemm m=1024 n=256 k=256", 0, 0, 1024, 256, 256);
    bench_gemm("gemm m=1024 n=256 k=256 trans_a (g^T.x)", 1, 0, 1024, 256, 256);
    bench_norm();
    double peak_after = measure_peak(), peak = peak_before > peak_after ? peak_before : peak_after;
    printf("AVX-512 FMA peak (one core, best of before and after): %.1f GFLOP/s (%.1f, %.1f)\n\n", peak,
           peak_before, peak_after);
    printf("| %-40s | GFLOP/s | %% peak | OpenBLAS | BLAS sgemm only |\n", "shape (batch 1 unless noted)");
    printf("|%s|--------:|-------:|---------:|---------:|\n", "------------------------------------------");
    for (int i = 0; i < nrows; i++) {
        printf("| %-40s | %7.1f | %5.0f%% |", rows[i].name, rows[i].ours, 100.0 * rows[i].ours / peak);
        if (rows[i].blas_whole > 0) printf(" %8.1f |", rows[i].blas_whole);
        else printf("        - |");
        printf(" %8.1f |\n", rows[i].blas_gemm);
    }
    return 0;
}
