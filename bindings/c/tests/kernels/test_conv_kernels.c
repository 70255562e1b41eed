// Dense kernels of CKernels (fr_gemm, fr_conv2d_*, fr_softmax_rows,
// fr_group_norm_forward, fr_gemm_bf16) against naive double-precision references
// (and fr_gemm_bf16 against a scalar bf16 emulation; see its section).
//
// Build and run from the repository root:
//   clang -std=c99 -Wall -Wextra -Werror -pedantic -O2 bindings/c/tests/kernels/test_conv_kernels.c
//     Sources/CKernels/*.c -ISources/CKernels/include -lm -o /tmp/test_conv_kernels && /tmp/test_conv_kernels
//
// Tolerances. A float result r of a sum of terms t_i is accepted when
// |r - ref| <= 1e-5 * scale, scale = sum |t_i| (the output's magnitude before
// cancellation; for GEMM and convolutions every product, bias and prior
// value of an accumulated output count as terms). Softmax: relative error
// <= 1e-5 (relative to max(|ref|, 1e-6)); GroupNorm:
// |r - ref| <= 1e-5 * max(1, |ref|). Every kernel runs on its AVX-512F path
// (when the CPU has it) and on its portable path, each checked against the
// reference and against each other; conv forward is also checked to give a
// sample bitwise the same output alone and inside a batch of up to 3, and
// GEMM a row alone the same as inside the product.
#define _POSIX_C_SOURCE 200112L
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ckernels.h"

static int passed = 0, failed = 0;

#define CHECK(cond, ...)                                                       \
    do {                                                                       \
        if (cond) { passed++; }                                                \
        else { failed++; printf("FAIL %s:%d: ", __FILE__, __LINE__);           \
               printf(__VA_ARGS__); printf("\n"); }                            \
    } while (0)

static const double TOL = 1e-5;

// ---------------------------------------------------------------------------
// Random numbers (xorshift64*, fixed seed) and buffers.

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

static uint64_t rng_next(void) {
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545F4914F6CDD1Dull;
}

static size_t rng_int(size_t lo, size_t hi) { return lo + (size_t)(rng_next() % (uint64_t)(hi - lo + 1)); }

static float rng_float(void) { return (float)((double)(rng_next() >> 11) / 9007199254740992.0 * 2.0 - 1.0); }

static float *fbuf(size_t count) {
    size_t bytes = (count == 0 ? 1 : count) * sizeof(float);
    void *p = NULL;
    if (posix_memalign(&p, 64, bytes) != 0) { printf("out of memory\n"); exit(2); }
    return p;
}

static float *frand(size_t count) {
    float *p = fbuf(count);
    for (size_t i = 0; i < count; i++) p[i] = rng_float();
    return p;
}

static float *fcopy(const float *src, size_t count) {
    float *p = fbuf(count);
    memcpy(p, src, count * sizeof(float));
    return p;
}

// Worst |got - ref| / scale over count outputs (scale floored at 1e-30).
static double worst(const float *got, const double *ref, const double *scale, size_t count) {
    double w = 0.0;
    for (size_t i = 0; i < count; i++) {
        double e = fabs((double)got[i] - ref[i]) / (scale[i] > 1e-30 ? scale[i] : 1e-30);
        if (!(e <= w)) w = e;  // NaN sticks
    }
    return w;
}

// Worst |a - b| / scale between two float results.
static double worst_pair(const float *a, const float *b, const double *scale, size_t count) {
    double w = 0.0;
    for (size_t i = 0; i < count; i++) {
        double e = fabs((double)a[i] - (double)b[i]) / (scale[i] > 1e-30 ? scale[i] : 1e-30);
        if (!(e <= w)) w = e;
    }
    return w;
}

static int have_avx512;

// Runs `body` on the AVX-512F path (if any) and the portable path.
#define BOTH_PATHS(path_var, ...)                                              \
    for (int path_var = have_avx512 ? 0 : 1; path_var < 2; path_var++) {       \
        fr_dense_force_portable(path_var);                                     \
        __VA_ARGS__                                                            \
    }                                                                          \
    fr_dense_force_portable(0)

static const char *path_name(int portable) { return portable ? "portable" : "avx512"; }

// ---------------------------------------------------------------------------
// GEMM

static void test_gemm_case(int ta, int tb, size_t m, size_t n, size_t k, float beta) {
    size_t lda = (ta ? m : k) + rng_int(0, 3), ldb = (tb ? k : n) + rng_int(0, 3), ldc = n + rng_int(0, 3);
    size_t arows = ta ? k : m, brows = tb ? n : k;
    float *a = frand(arows * lda), *b = frand(brows * ldb), *c0 = frand(m * ldc);
    double *ref = malloc(m * n * sizeof(double)), *scale = malloc(m * n * sizeof(double));
    for (size_t i = 0; i < m; i++)
        for (size_t j = 0; j < n; j++) {
            double s = beta != 0.0f ? (double)beta * c0[i * ldc + j] : 0.0, sc = fabs(s);
            for (size_t p = 0; p < k; p++) {
                double t = (double)(ta ? a[p * lda + i] : a[i * lda + p]) * (tb ? b[j * ldb + p] : b[p * ldb + j]);
                s += t;
                sc += fabs(t);
            }
            ref[i * n + j] = s;
            scale[i * n + j] = sc;
        }
    float *scratch = fbuf(fr_gemm_scratch_floats(m, n, k));
    float *results[2] = {NULL, NULL};
    BOTH_PATHS(portable, {
        float *c = fcopy(c0, m * ldc);
        if (beta == 0.0f)
            for (size_t i = 0; i < m * ldc; i++) c[i] = NAN;  // beta 0 must not read C
        fr_gemm(ta, tb, m, n, k, a, lda, b, ldb, beta, c, ldc, scratch);
        float *packed = fbuf(m * n);
        int pad_ok = 1;
        for (size_t i = 0; i < m; i++) {
            memcpy(packed + i * n, c + i * ldc, n * sizeof(float));
            for (size_t j = n; j < ldc; j++)
                if (memcmp(&c[i * ldc + j], beta == 0.0f ? &(float){NAN} : &c0[i * ldc + j], sizeof(float)))
                    pad_ok = 0;
        }
        double e = worst(packed, ref, scale, m * n);
        CHECK(e <= TOL, "gemm %s ta=%d tb=%d m=%zu n=%zu k=%zu beta=%g: error %.3g", path_name(portable), ta, tb,
              m, n, k, beta, e);
        CHECK(pad_ok, "gemm %s m=%zu n=%zu k=%zu wrote outside C's columns", path_name(portable), m, n, k);
        results[portable] = packed;
        free(c);
    });
    if (results[0] && results[1]) {
        double e = worst_pair(results[0], results[1], scale, m * n);
        CHECK(e <= TOL, "gemm avx512 vs portable m=%zu n=%zu k=%zu: %.3g", m, n, k, e);
    }
    // Row independence: row i alone (m = 1) equals row i of the product.
    if (results[0] && m > 1) {
        size_t i = rng_int(0, m - 1);
        float *row = fbuf(n);
        for (size_t j = 0; j < n; j++) row[j] = beta == 0.0f ? NAN : c0[i * ldc + j];
        fr_gemm(ta, tb, 1, n, k, ta ? a + i : a + i * lda, lda, b, ldb, beta, row, n, scratch);
        CHECK(memcmp(row, results[0] + i * n, n * sizeof(float)) == 0, "gemm row %zu alone differs (m=%zu n=%zu k=%zu)",
              i, m, n, k);
        free(row);
    }
    free(results[0]);
    free(results[1]);
    free(a); free(b); free(c0); free(ref); free(scale); free(scratch);
}

static void test_gemm(void) {
    static const size_t fixed[][3] = {
        {1, 1, 1}, {1, 17, 3}, {17, 1, 5}, {3, 5, 1}, {8, 16, 8}, {9, 33, 7}, {15, 31, 300}, {64, 48, 513},
        {784, 784, 32}, {256, 256, 1024}, {1024, 256, 256}, {784, 32, 784}, {7, 300, 260}, {33, 600, 2},
    };
    for (size_t f = 0; f < sizeof fixed / sizeof fixed[0]; f++)
        for (int t = 0; t < 4; t++) test_gemm_case(t & 1, t >> 1, fixed[f][0], fixed[f][1], fixed[f][2], t == 3 ? 1.0f : 0.0f);
    for (int trial = 0; trial < 120; trial++) {
        size_t m = rng_int(1, 40), n = rng_int(1, 70), k = rng_int(1, 40);
        static const float betas[3] = {0.0f, 1.0f, 0.5f};
        test_gemm_case((int)rng_int(0, 1), (int)rng_int(0, 1), m, n, k, betas[rng_int(0, 2)]);
    }
}

// ---------------------------------------------------------------------------
// Convolution

typedef struct {
    fr_conv2d_geometry g;
    size_t n;
    int bias;
} conv_case;

// In-image input index for output (oy, ox) and kernel (ky, kx), or -1.
static ptrdiff_t conv_in(const fr_conv2d_geometry *g, size_t oy, size_t ox, size_t ky, size_t kx) {
    ptrdiff_t iy = (ptrdiff_t)(oy * g->stride_h + ky * g->dil_h) - (ptrdiff_t)g->pad_top;
    ptrdiff_t ix = (ptrdiff_t)(ox * g->stride_w + kx * g->dil_w) - (ptrdiff_t)g->pad_left;
    if (iy < 0 || ix < 0 || iy >= (ptrdiff_t)g->h || ix >= (ptrdiff_t)g->w) return -1;
    return iy * (ptrdiff_t)g->w + ix;
}

static void describe(const conv_case *c, char *buf, size_t size) {
    const fr_conv2d_geometry *g = &c->g;
    snprintf(buf, size, "n=%zu cin=%zu %zux%zu cout=%zu k=%zux%zu s=%zu,%zu pad=%zu,%zu dil=%zu,%zu groups=%zu out=%zux%zu%s",
             c->n, g->cin, g->h, g->w, g->cout, g->kh, g->kw, g->stride_h, g->stride_w, g->pad_top, g->pad_left,
             g->dil_h, g->dil_w, g->groups, g->oh, g->ow, c->bias ? " bias" : "");
}

// Double-precision references of a convolution, one loop over every
// in-image tap (output yi, input xi, weight wi) for all of them: what is
// non-NULL accumulates.
typedef struct {
    const float *x, *w, *gy;
    float (*round)(float);  // applied to w and x in y (bf16 emulation), or NULL
    double *y, *ys;         // bias (set here) + Σ w·x, and |bias| + Σ |w·x|
    double *gx, *gxs;       // += Σ w·gy and its |terms| (initialised by the caller)
    double *gw, *gws;       // += Σ gy·x and its |terms| (likewise)
} conv_ref;

static void conv_reference(const fr_conv2d_geometry *g, size_t n, const float *bias, const conv_ref *r) {
    const size_t cin_g = g->cin / g->groups, cout_g = g->cout / g->groups, khkw = g->kh * g->kw;
    const size_t hw = g->h * g->w, ohw = g->oh * g->ow;
    for (size_t s = 0; s < n; s++)
        for (size_t co = 0; co < g->cout; co++)
            for (size_t oy = 0; oy < g->oh; oy++)
                for (size_t ox = 0; ox < g->ow; ox++) {
                    const size_t yi = (s * g->cout + co) * ohw + oy * g->ow + ox;
                    if (r->y) r->y[yi] = bias ? bias[co] : 0.0, r->ys[yi] = fabs(r->y[yi]);
                    for (size_t ci = 0; ci < cin_g; ci++)
                        for (size_t ky = 0; ky < g->kh; ky++)
                            for (size_t kx = 0; kx < g->kw; kx++) {
                                ptrdiff_t at = conv_in(g, oy, ox, ky, kx);
                                if (at < 0) continue;
                                const size_t xi = (s * g->cin + co / cout_g * cin_g + ci) * hw + (size_t)at;
                                const size_t wi = (co * cin_g + ci) * khkw + ky * g->kw + kx;
                                if (r->y) {
                                    float wv = r->w[wi], xv = r->x[xi];
                                    if (r->round) wv = r->round(wv), xv = r->round(xv);
                                    double t = (double)wv * xv;
                                    r->y[yi] += t, r->ys[yi] += fabs(t);
                                }
                                if (r->gx) {
                                    double t = (double)r->w[wi] * r->gy[yi];
                                    r->gx[xi] += t, r->gxs[xi] += fabs(t);
                                }
                                if (r->gw) {
                                    double t = (double)r->gy[yi] * r->x[xi];
                                    r->gw[wi] += t, r->gws[wi] += fabs(t);
                                }
                            }
                }
}

// Three bands [0, a), [a, b), [b, end + 3) — output rows for Winograd
// (a, b even: whole 2 × 2 tiles), output positions otherwise — each by one
// call of the range forms into a fresh buffer, give the whole call's bits
// there and write nothing elsewhere. Random cuts.
static void check_bands(const fr_conv2d_geometry *g, size_t n, const float *x, const float *w, const float *bias,
                        const float *whole, float *scratch, int winograd, const char *what) {
    const size_t plane = g->oh * g->ow, ys = g->cout * plane;
    const size_t unit = winograd ? 2 : 1, end = winograd ? g->oh : plane;
    size_t a = rng_int(0, (end + unit - 1) / unit) * unit, b = rng_int(0, (end + unit - 1) / unit) * unit;
    if (a > b) { size_t t = a; a = b; b = t; }
    const size_t cuts[4] = {0, a, b, end + 3};
    float *y = fbuf(n * ys);
    for (int band = 0; band < 3; band++) {
        const size_t c0 = cuts[band], c1 = cuts[band + 1];
        for (size_t i = 0; i < n * ys; i++) y[i] = 4321.0f;
        if (winograd) fr_conv2d_forward_winograd_rows(g, x, w, bias, y, n, scratch, c0, c1);
        else fr_conv2d_forward_positions(g, x, w, bias, y, n, scratch, c0, c1);
        int same = 1, outside = 1;
        for (size_t i = 0; i < n * ys; i++) {
            const size_t at = winograd ? (i % plane) / g->ow : i % plane;
            if (at >= c0 && at < c1) same &= memcmp(&y[i], &whole[i], sizeof(float)) == 0;
            else outside &= y[i] == 4321.0f;
        }
        CHECK(same && outside, "conv%s %s [%zu, %zu): %s: %s", winograd ? " winograd" : "",
              winograd ? "rows" : "positions", c0, c1, same ? "wrote outside them" : "differ from the whole call", what);
    }
    free(y);
}

static void test_conv_case(const conv_case *cc) {
    const fr_conv2d_geometry *g = &cc->g;
    const size_t n = cc->n, cin_g = g->cin / g->groups;
    const size_t xs = g->cin * g->h * g->w, ys = g->cout * g->oh * g->ow, ws = g->cout * cin_g * g->kh * g->kw;
    char what[256];
    describe(cc, what, sizeof what);
    float *x = frand(n * xs), *w = frand(ws), *bias = cc->bias ? frand(g->cout) : NULL;
    float *gy = frand(n * ys), *gx0 = frand(n * xs), *gw0 = frand(ws);
    double *yref = calloc(n * ys, sizeof(double)), *yscale = calloc(n * ys, sizeof(double));
    double *gxref = calloc(n * xs, sizeof(double)), *gxscale = calloc(n * xs, sizeof(double));
    double *gwref = calloc(ws, sizeof(double)), *gwscale = calloc(ws, sizeof(double));
    for (size_t i = 0; i < n * xs; i++) { gxref[i] = gx0[i]; gxscale[i] = fabs(gx0[i]); }
    for (size_t i = 0; i < ws; i++) { gwref[i] = gw0[i]; gwscale[i] = fabs(gw0[i]); }
    conv_reference(g, n, bias, &(conv_ref){x, w, gy, NULL, yref, yscale, gxref, gxscale, gwref, gwscale});
    float *scratch = fbuf(fr_conv2d_scratch_floats(g));
    float *yout[2] = {NULL, NULL}, *gxout[2] = {NULL, NULL}, *gwout[2] = {NULL, NULL};
    BOTH_PATHS(portable, {
        float *y = fbuf(n * ys);
        for (size_t i = 0; i < n * ys; i++) y[i] = NAN;
        fr_conv2d_forward(g, x, w, bias, y, n, scratch);
        double e = worst(y, yref, yscale, n * ys);
        CHECK(e <= TOL, "conv forward %s %s: error %.3g", path_name(portable), what, e);
        if (!portable) {
            // Each sample alone gives bitwise the batch's output.
            float *one = fbuf(ys);
            for (size_t s = 0; s < n; s++) {
                fr_conv2d_forward(g, x + s * xs, w, bias, one, 1, scratch);
                CHECK(memcmp(one, y + s * ys, ys * sizeof(float)) == 0, "conv forward sample %zu alone differs: %s",
                      s, what);
            }
            free(one);
        }
        check_bands(g, n, x, w, bias, y, scratch, 0, what);
        yout[portable] = y;

        float *gx = fcopy(gx0, n * xs);
        fr_conv2d_backward_input(g, gy, w, gx, n, scratch);
        e = worst(gx, gxref, gxscale, n * xs);
        CHECK(e <= TOL, "conv backward input %s %s: error %.3g", path_name(portable), what, e);
        gxout[portable] = gx;

        float *gw = fcopy(gw0, ws);
        fr_conv2d_backward_weight(g, x, gy, gw, n, scratch);
        e = worst(gw, gwref, gwscale, ws);
        CHECK(e <= TOL, "conv backward weight %s %s: error %.3g", path_name(portable), what, e);
        gwout[portable] = gw;
    });
    if (yout[0] && yout[1]) {
        CHECK(worst_pair(yout[0], yout[1], yscale, n * ys) <= TOL, "conv forward avx512 vs portable: %s", what);
        CHECK(worst_pair(gxout[0], gxout[1], gxscale, n * xs) <= TOL, "conv backward input avx512 vs portable: %s", what);
        CHECK(worst_pair(gwout[0], gwout[1], gwscale, ws) <= TOL, "conv backward weight avx512 vs portable: %s", what);
    }
    for (int p = 0; p < 2; p++) { free(yout[p]); free(gxout[p]); free(gwout[p]); }
    free(x); free(w); free(bias); free(gy); free(gx0); free(gw0); free(scratch);
    free(yref); free(yscale); free(gxref); free(gxscale); free(gwref); free(gwscale);
}

// Winograd F(2×2, 3×3) against the double reference, within 4× the direct
// form's tolerance of Σ|w·x| (the transforms add at most 4 + 4 input and
// 3 + 3 output terms), on both paths; the direct form's own error printed
// beside it for the worst case; a sample alone gives the batch's bits; the
// packing, y and the scratch stay inside their sizes. The input gradient
// (accumulated into gx) likewise, against gx + Σ w·gy in double.
static double winograd_worst = 0.0, winograd_direct_worst = 0.0;
static void test_conv_winograd_case(const conv_case *cc) {
    const fr_conv2d_geometry *g = &cc->g;
    const size_t n = cc->n, xs = g->cin * g->h * g->w, ys = g->cout * g->oh * g->ow, ws = g->cout * g->cin * 9;
    char what[256];
    describe(cc, what, sizeof what);
    float *x = frand(n * xs), *w = frand(ws), *bias = cc->bias ? frand(g->cout) : NULL;
    double *ref = calloc(n * ys, sizeof(double)), *scale = calloc(n * ys, sizeof(double));
    conv_reference(g, n, bias, &(conv_ref){x, w, NULL, NULL, ref, scale, NULL, NULL, NULL, NULL});
    const size_t uc = fr_conv2d_winograd_packed_floats(g), sc = fr_conv2d_winograd_scratch_floats(g);
    float *u = fbuf(uc + 1), *scratch = fbuf(sc + 1), *y = fbuf(n * ys + 1), *one = fbuf(ys), *yd = fbuf(n * ys);
    u[uc] = 777.0f;
    fr_conv2d_winograd_pack(g, w, u);
    CHECK(u[uc] == 777.0f, "winograd packing wrote past its count: %s", what);
    float *ds = fbuf(fr_conv2d_scratch_floats(g));
    fr_conv2d_forward(g, x, w, bias, yd, n, ds);
    double direct = worst(yd, ref, scale, n * ys);
    BOTH_PATHS(portable, {
        for (size_t i = 0; i < n * ys; i++) y[i] = NAN;
        y[n * ys] = 12345.0f;
        scratch[sc] = 54321.0f;
        fr_conv2d_forward_winograd(g, x, u, bias, y, n, scratch);
        double e = worst(y, ref, scale, n * ys);
        CHECK(e <= 4 * TOL, "conv winograd %s %s: error %.3g (direct %.3g)", path_name(portable), what, e, direct);
        CHECK(y[n * ys] == 12345.0f && scratch[sc] == 54321.0f, "conv winograd %s wrote past y or its scratch: %s",
              path_name(portable), what);
        if (e > winograd_worst) winograd_worst = e, winograd_direct_worst = direct;
        for (size_t s = 0; s < n; s++) {
            fr_conv2d_forward_winograd(g, x + s * xs, u, bias, one, 1, scratch);
            CHECK(memcmp(one, y + s * ys, ys * sizeof(float)) == 0, "conv winograd %s sample %zu alone differs: %s",
                  path_name(portable), s, what);
        }
        check_bands(g, n, x, u, bias, y, scratch, 1, what);
    });
    if (fr_conv2d_winograd_input_grad_applies(g)) {
        float *gy = frand(n * ys), *gx0 = frand(n * xs), *gx = fbuf(n * xs + 1), *ut = fbuf(uc + 1);
        double *gref = calloc(n * xs, sizeof(double)), *gscale = calloc(n * xs, sizeof(double));
        for (size_t i = 0; i < n * xs; i++) gref[i] = gx0[i], gscale[i] = fabs(gx0[i]);
        conv_reference(g, n, NULL, &(conv_ref){NULL, w, gy, NULL, NULL, NULL, gref, gscale, NULL, NULL});
        ut[uc] = 777.0f;
        fr_conv2d_winograd_pack_input_grad(g, w, ut);
        CHECK(ut[uc] == 777.0f, "winograd input-gradient packing wrote past its count: %s", what);
        BOTH_PATHS(portable, {
            memcpy(gx, gx0, n * xs * sizeof(float));
            gx[n * xs] = 12345.0f;
            scratch[sc] = 54321.0f;
            fr_conv2d_backward_input_winograd(g, gy, ut, gx, n, scratch);
            double e = worst(gx, gref, gscale, n * xs);
            CHECK(e <= 4 * TOL, "conv winograd input gradient %s %s: error %.3g", path_name(portable), what, e);
            CHECK(gx[n * xs] == 12345.0f && scratch[sc] == 54321.0f,
                  "conv winograd input gradient %s wrote past gx or its scratch: %s", path_name(portable), what);
        });
        free(gy); free(gx0); free(gx); free(ut); free(gref); free(gscale);
    }
    free(x); free(w); free(bias); free(ref); free(scale); free(u); free(scratch); free(y); free(one); free(yd);
    free(ds);
}

// Output size for the given bottom/right padding (0 if the kernel does not fit).
static size_t conv_out(size_t in, size_t k, size_t stride, size_t pad_lo, size_t pad_hi, size_t dil) {
    size_t span = dil * (k - 1) + 1, padded = in + pad_lo + pad_hi;
    return padded < span ? 0 : (padded - span) / stride + 1;
}

static conv_case make_conv(size_t n, size_t cin, size_t cout, size_t groups, size_t h, size_t w, size_t kh, size_t kw,
                           size_t sh, size_t sw, size_t pt, size_t pb, size_t pl, size_t pr, size_t dh, size_t dw, int bias) {
    conv_case c;
    c.n = n;
    c.bias = bias;
    c.g = (fr_conv2d_geometry){cin, h, w, cout, kh, kw, sh, sw, pt, pl, dh, dw, groups,
                               conv_out(h, kh, sh, pt, pb, dh), conv_out(w, kw, sw, pl, pr, dw)};
    return c;
}

static void test_conv(void) {
    // Shapes of the MNIST U-Net and the engine's block edges.
    conv_case fixed[] = {
        make_conv(2, 32, 32, 1, 28, 28, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1),
        make_conv(1, 64, 64, 1, 14, 14, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1),
        make_conv(2, 32, 96, 1, 28, 28, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1),   // 1×1: x read in place
        make_conv(1, 64, 40, 1, 9, 11, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 0),   // K = 576: two k blocks
        make_conv(3, 8, 16, 1, 28, 28, 4, 4, 2, 2, 1, 1, 1, 1, 1, 1, 1),   // downsampling
        make_conv(2, 6, 6, 6, 13, 9, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1),     // depthwise
        make_conv(2, 4, 6, 2, 1, 40, 1, 3, 1, 1, 0, 0, 2, 1, 1, 2, 1),     // Conv1d, groups 2
        make_conv(1, 3, 5, 1, 20, 23, 1, 1, 2, 1, 0, 0, 1, 0, 1, 1, 1),    // 1×1 with stride/pad
        make_conv(1, 3, 9, 1, 7, 7, 3, 3, 1, 1, 0, 0, 0, 0, 1, 1, 0),      // valid conv
        make_conv(1, 2, 3, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1),      // 1×1 image
        make_conv(1, 1, 1, 1, 5, 5, 3, 3, 1, 1, 2, 2, 2, 2, 1, 1, 0),      // pads exceed the image
        make_conv(1, 3, 17, 1, 17, 300, 3, 3, 1, 1, 1, 0, 0, 2, 1, 1, 1),  // wide rows, many blocks
        make_conv(2, 6, 5, 1, 32, 32, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1),    // planes 4 KiB apart; 6 = 4 + 2 channels
        make_conv(1, 5, 4, 1, 16, 20, 7, 7, 1, 1, 3, 3, 3, 3, 1, 1, 1),    // 7×7: the masked-load path's limit
        make_conv(1, 3, 4, 1, 12, 13, 9, 9, 1, 1, 4, 4, 4, 4, 1, 1, 0),    // 9×9 at stride 1: the gather path
    };
    for (size_t f = 0; f < sizeof fixed / sizeof fixed[0]; f++) test_conv_case(&fixed[f]);
    static const size_t kernels[][2] = {{1, 1}, {3, 3}, {1, 3}, {3, 1}, {4, 4}, {2, 3}};
    int done = 0;
    while (done < 300) {
        size_t cin_g = rng_int(1, 5), cout_g = rng_int(1, 12), which = rng_int(0, 2);
        size_t groups = which == 0 ? 1 : (which == 1 ? 2 : rng_int(1, 6));
        if (which == 2) cout_g = rng_int(1, 2), cin_g = 1;  // depthwise (multiplier 1 or 2)
        size_t k = rng_int(0, 5);
        size_t h = rng_int(1, 19), w = rng_int(1, 23);
        if (rng_int(0, 4) == 0) h = 1;  // Conv1d
        size_t kh = kernels[k][0], kw = kernels[k][1];
        if (h == 1) kh = 1;
        conv_case c = make_conv(rng_int(1, 3), cin_g * groups, cout_g * groups, groups, h, w, kh, kw, rng_int(1, 2),
                                rng_int(1, 2), rng_int(0, 2), rng_int(0, 2), rng_int(0, 2), rng_int(0, 2),
                                rng_int(1, 2), rng_int(1, 2), (int)rng_int(0, 1));
        if (h == 1) c.g.pad_top = 0, c.g.stride_h = 1, c.g.oh = 1;
        if (c.g.oh == 0 || c.g.ow == 0) continue;
        test_conv_case(&c);
        done++;
    }
}

static void test_conv_winograd(void) {
    conv_case fixed[] = {
        make_conv(2, 32, 32, 1, 28, 28, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1),   // 14 tiles a row
        make_conv(3, 64, 64, 1, 14, 14, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1),   // 7: chunks straddle panels
        make_conv(5, 64, 128, 1, 7, 7, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 0),    // 4, odd outputs
        make_conv(2, 32, 32, 1, 32, 32, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1),   // 16: whole panels
        make_conv(1, 16, 17, 1, 9, 11, 3, 3, 1, 1, 0, 0, 0, 0, 1, 1, 1),    // valid: 7 × 9
        make_conv(2, 20, 16, 1, 6, 5, 3, 3, 1, 1, 2, 2, 2, 2, 1, 1, 1),     // pads 2: 8 × 7
        make_conv(1, 16, 24, 1, 10, 13, 3, 3, 1, 1, 1, 0, 0, 2, 1, 1, 1),   // asymmetric pads
        make_conv(1, 16, 16, 1, 5, 300, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 0),   // 150 tiles a row
        make_conv(3, 16, 16, 1, 1, 1, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1),     // 1×1 image
        make_conv(1, 96, 32, 1, 28, 28, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1),   // the U-Net's concat input
    };
    for (size_t f = 0; f < sizeof fixed / sizeof fixed[0]; f++) {
        CHECK(!have_avx512 || fr_conv2d_winograd_applies(&fixed[f].g), "winograd should apply: case %zu", f);
        test_conv_winograd_case(&fixed[f]);
    }
    for (int done = 0; done < 40;) {
        conv_case c = make_conv(rng_int(1, 3), rng_int(16, 40), rng_int(16, 40), 1, rng_int(1, 21), rng_int(1, 37), 3,
                                3, 1, 1, rng_int(0, 2), rng_int(0, 2), rng_int(0, 2), rng_int(0, 2), 1, 1,
                                (int)rng_int(0, 1));
        if (c.g.oh == 0 || c.g.ow == 0) continue;
        test_conv_winograd_case(&c);
        done++;
    }
    conv_case no[] = {
        make_conv(1, 32, 32, 1, 8, 8, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1, 1),  // stride 2
        make_conv(1, 32, 32, 2, 8, 8, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1),  // groups
        make_conv(1, 32, 32, 1, 8, 8, 3, 3, 1, 1, 2, 2, 2, 2, 2, 2, 1),  // dilation
        make_conv(1, 3, 32, 1, 8, 8, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1),   // the image's channels
        make_conv(1, 32, 1, 1, 8, 8, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1),   // an output conv
        make_conv(1, 32, 32, 1, 8, 8, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1),  // 1×1
    };
    for (size_t f = 0; f < sizeof no / sizeof no[0]; f++)
        CHECK(!fr_conv2d_winograd_applies(&no[f].g), "winograd should not apply: case %zu", f);
    conv_case wide_pads = make_conv(1, 16, 16, 1, 8, 8, 3, 3, 1, 1, 3, 3, 3, 3, 1, 1, 1);  // pads 3: 12 × 12
    CHECK(!have_avx512 || (fr_conv2d_winograd_applies(&wide_pads.g) &&
                           !fr_conv2d_winograd_input_grad_applies(&wide_pads.g)),
          "pads > 2: winograd forward only");
    test_conv_winograd_case(&wide_pads);
    printf("winograd: worst error %.3g of sum |w x| (the direct form's in that case: %.3g)\n", winograd_worst,
           winograd_direct_worst);
}

// ---------------------------------------------------------------------------
// Softmax and GroupNorm

// LayerNorm rows against a double reference (mean, biased variance, then
// (x - μ)/sqrt(var + eps)·γ + β), with and without γ/β, rows with a large
// common offset; the stats are checked too; in place gives the same bits.
static void test_layer_norm(void) {
    static const size_t shapes[][2] = {{1, 1}, {3, 5}, {4, 16}, {392, 64}, {2, 37}, {5, 256}};
    for (size_t t = 0; t < sizeof shapes / sizeof shapes[0]; t++) {
        size_t rows = shapes[t][0], m = shapes[t][1];
        const float eps = 1e-6f;
        float *x = frand(rows * m), *gamma = frand(m), *beta = frand(m);
        for (size_t i = 0; i < rows * m; i++) x[i] = 3.0f * x[i] + (t % 2 ? 20.0f : 0.0f);
        for (int affine = 0; affine < 2; affine++) {
            double *ref = malloc(rows * m * sizeof(double)), *scale = malloc(rows * m * sizeof(double));
            double *sref = malloc(2 * rows * sizeof(double)), *sscale = malloc(2 * rows * sizeof(double));
            for (size_t r = 0; r < rows; r++) {
                double mu = 0.0, var = 0.0;
                for (size_t i = 0; i < m; i++) mu += x[r * m + i];
                mu /= (double)m;
                for (size_t i = 0; i < m; i++) var += ((double)x[r * m + i] - mu) * ((double)x[r * m + i] - mu);
                var /= (double)m;
                double rstd = 1.0 / sqrt(var + eps);
                sref[2 * r] = mu, sref[2 * r + 1] = rstd;
                sscale[2 * r] = fmax(1.0, fabs(mu)), sscale[2 * r + 1] = rstd;
                for (size_t i = 0; i < m; i++) {
                    double v = ((double)x[r * m + i] - mu) * rstd;
                    ref[r * m + i] = affine ? v * gamma[i] + beta[i] : v;
                    // x - μ carries μ's rounding: relative to the row's offset.
                    scale[r * m + i] = fmax(1.0, fabs(mu) * rstd) * (affine ? fmax(1.0, fabs(gamma[i])) : 1.0);
                }
            }
            BOTH_PATHS(portable, {
                float *y = fbuf(rows * m), *stats = fbuf(2 * rows);
                fr_layer_norm_rows(x, affine ? gamma : NULL, affine ? beta : NULL, y, stats, rows, m, eps);
                double e = worst(y, ref, scale, rows * m), es = worst(stats, sref, sscale, 2 * rows);
                CHECK(e <= TOL && es <= TOL, "layer norm %s %zux%zu affine %d: error %.3g, stats %.3g",
                      path_name(portable), rows, m, affine, e, es);
                float *inplace = fcopy(x, rows * m);
                fr_layer_norm_rows(inplace, affine ? gamma : NULL, affine ? beta : NULL, inplace, stats, rows, m, eps);
                CHECK(memcmp(inplace, y, rows * m * sizeof(float)) == 0, "layer norm %s in place differs",
                      path_name(portable));
                free(inplace); free(y); free(stats);
            });
            free(ref); free(scale); free(sref); free(sscale);
        }
        free(x); free(gamma); free(beta);
    }
}

// fr_binary_rows against a scalar loop, bit for bit (one IEEE operation
// per element), for the four ops and the four unit/broadcast combinations,
// with row strides that skip and repeat rows; and in place (y = a).
static void test_binary_rows(void) {
    const size_t rows = 7, n = 37;
    float *a = frand(rows * n * 2), *b = frand(rows * n * 2), *y = fbuf(rows * n), *want = fbuf(rows * n);
    for (size_t i = 0; i < rows * n * 2; i++) b[i] += b[i] >= 0 ? 0.5f : -0.5f;  // no division by ~0
    for (int op = 0; op < 4; op++)
        for (int unit = 0; unit < 4; unit++) {
            const int au = unit & 1, bu = unit >> 1;
            const ptrdiff_t ar = au ? 2 * (ptrdiff_t)n : 1, br = bu ? (ptrdiff_t)n : 0;
            for (size_t r = 0; r < rows; r++)
                for (size_t i = 0; i < n; i++) {
                    float x = a[r * ar + (au ? i : 0)], z = b[r * br + (bu ? i : 0)];
                    want[r * n + i] = op == 0 ? x + z : op == 1 ? x - z : op == 2 ? x * z : x / z;
                }
            fr_binary_rows(op, a, ar, au, b, br, bu, y, rows, n);
            CHECK(memcmp(y, want, rows * n * sizeof(float)) == 0, "binary rows op %d a_unit %d b_unit %d", op, au, bu);
        }
    float *inplace = fcopy(a, rows * n);
    for (size_t i = 0; i < rows * n; i++) want[i] = a[i] * b[i];
    fr_binary_rows(2, inplace, (ptrdiff_t)n, 1, b, (ptrdiff_t)n, 1, inplace, rows, n);
    CHECK(memcmp(inplace, want, rows * n * sizeof(float)) == 0, "binary rows in place");
    free(a); free(b); free(y); free(want); free(inplace);
}

static void test_softmax(void) {
    static const size_t shapes[][2] = {{1, 1}, {3, 17}, {5, 16}, {2, 784}, {784, 784}, {7, 1000}, {1, 3}, {4, 333}};
    for (size_t t = 0; t < sizeof shapes / sizeof shapes[0]; t++) {
        size_t rows = shapes[t][0], cols = shapes[t][1];
        float *x = frand(rows * cols);
        // Spreads of 40 and, for the last shape, 400 (exp underflows; masked -inf entries).
        for (size_t i = 0; i < rows * cols; i++) x[i] *= t + 1 == sizeof shapes / sizeof shapes[0] ? 200.0f : 20.0f;
        if (t + 1 == sizeof shapes / sizeof shapes[0])
            for (size_t i = 0; i < rows * cols; i += 7) x[i] = -INFINITY;
        double *ref = malloc(rows * cols * sizeof(double)), *scale = malloc(rows * cols * sizeof(double));
        for (size_t r = 0; r < rows; r++) {
            double mx = -INFINITY, sum = 0.0;
            for (size_t i = 0; i < cols; i++) mx = fmax(mx, x[r * cols + i]);
            for (size_t i = 0; i < cols; i++) sum += exp((double)x[r * cols + i] - mx);
            for (size_t i = 0; i < cols; i++) {
                ref[r * cols + i] = exp((double)x[r * cols + i] - mx) / sum;
                scale[r * cols + i] = fmax(1e-6, ref[r * cols + i]);  // relative, floored far below 1
            }
        }
        BOTH_PATHS(portable, {
            float *y = fbuf(rows * cols);
            fr_softmax_rows(x, y, rows, cols);
            double e = worst(y, ref, scale, rows * cols);
            CHECK(e <= TOL, "softmax %s %zux%zu: relative error %.3g", path_name(portable), rows, cols, e);
            float *inplace = fcopy(x, rows * cols);
            fr_softmax_rows(inplace, inplace, rows, cols);
            CHECK(memcmp(inplace, y, rows * cols * sizeof(float)) == 0, "softmax %s in place differs", path_name(portable));
            free(inplace);
            free(y);
        });
        free(x); free(ref); free(scale);
    }
    // A NaN makes its row NaN (and only its row) on both paths.
    float x[2 * 20], y[2 * 20];
    for (int i = 0; i < 40; i++) x[i] = (float)i * 0.1f;
    x[5] = NAN;
    BOTH_PATHS(portable, {
        fr_softmax_rows(x, y, 2, 20);
        int row0 = 1, row1 = 1;
        for (int i = 0; i < 20; i++) row0 &= y[i] != y[i];
        for (int i = 20; i < 40; i++) row1 &= y[i] == y[i];
        CHECK(row0 && row1, "softmax %s: NaN not confined to its row", path_name(portable));
    });
}

static void test_group_norm_case(size_t n, size_t c, size_t spatial, size_t groups, int affine, int silu, float offset) {
    const size_t total = n * c * spatial, cg = c / groups;
    const float eps = 1e-5f;
    float *x = frand(total), *gamma = affine ? frand(c) : NULL, *beta = affine ? frand(c) : NULL;
    for (size_t i = 0; i < total; i++) x[i] += offset;
    double *ref = malloc(total * sizeof(double)), *pref = malloc(total * sizeof(double));
    double *sref = malloc(n * groups * 2 * sizeof(double)), *scale = malloc(total * sizeof(double));
    double *sscale = malloc(n * groups * 2 * sizeof(double));
    for (size_t s = 0; s < n; s++)
        for (size_t gi = 0; gi < groups; gi++) {
            size_t base = (s * c + gi * cg) * spatial, count = cg * spatial;
            double mean = 0.0, var = 0.0;
            for (size_t i = 0; i < count; i++) mean += x[base + i];
            mean /= (double)count;
            for (size_t i = 0; i < count; i++) var += ((double)x[base + i] - mean) * ((double)x[base + i] - mean);
            var /= (double)count;
            double rstd = 1.0 / sqrt(var + (double)eps);
            sref[(s * groups + gi) * 2] = mean;
            sref[(s * groups + gi) * 2 + 1] = rstd;
            sscale[(s * groups + gi) * 2] = fmax(1.0, fabs(mean));
            sscale[(s * groups + gi) * 2 + 1] = fmax(1.0, rstd);
            for (size_t i = 0; i < count; i++) {
                size_t ch = gi * cg + i / spatial;
                double v = ((double)x[base + i] - mean) * rstd * (gamma ? gamma[ch] : 1.0) + (beta ? beta[ch] : 0.0);
                pref[base + i] = v;
                ref[base + i] = silu ? v / (1.0 + exp(-v)) : v;
                scale[base + i] = fmax(1.0, fabs(v));
            }
        }
    float *outs[2] = {NULL, NULL};
    BOTH_PATHS(portable, {
        float *y = fbuf(total), *pre = fbuf(total), *stats = fbuf(n * groups * 2);
        fr_group_norm_forward(x, gamma, beta, y, stats, pre, n, c, spatial, groups, eps, silu);
        double ey = worst(y, ref, scale, total), ep = worst(pre, pref, scale, total);
        double es = worst(stats, sref, sscale, n * groups * 2);
        CHECK(ey <= TOL && ep <= TOL && es <= TOL,
              "group norm %s n=%zu c=%zu spatial=%zu groups=%zu affine=%d silu=%d offset=%g: y %.3g pre %.3g stats %.3g",
              path_name(portable), n, c, spatial, groups, affine, silu, offset, ey, ep, es);
        float *inplace = fcopy(x, total);
        fr_group_norm_forward(inplace, gamma, beta, inplace, NULL, NULL, n, c, spatial, groups, eps, silu);
        CHECK(memcmp(inplace, y, total * sizeof(float)) == 0, "group norm %s in place differs", path_name(portable));
        free(inplace); free(pre); free(stats);
        outs[portable] = y;
    });
    if (outs[0] && outs[1])
        CHECK(worst_pair(outs[0], outs[1], scale, total) <= TOL, "group norm avx512 vs portable c=%zu spatial=%zu", c, spatial);
    free(outs[0]); free(outs[1]);
    free(x); free(gamma); free(beta); free(ref); free(pref); free(sref); free(scale); free(sscale);
}

static void test_group_norm(void) {
    test_group_norm_case(2, 32, 784, 8, 1, 1, 0.0f);
    test_group_norm_case(1, 64, 196, 32, 1, 0, 0.0f);
    test_group_norm_case(3, 6, 7, 3, 0, 1, 0.0f);
    test_group_norm_case(1, 5, 1, 5, 1, 1, 0.0f);
    test_group_norm_case(1, 4, 65536, 2, 1, 0, 1000.0f);  // large spatial size, large mean
    test_group_norm_case(2, 16, 33, 4, 0, 0, -300.0f);
}


// ---------------------------------------------------------------------------
// bfloat16 linear layers (fr_gemm_bf16)
//
// Against (a) a scalar reference that rounds x and W to bf16 (nearest even,
// written here from the bit layout) and adds, per pair of k, the odd then
// the even product with one rounding each, as vdpbf16ps does: error
// <= 1e-5 of Σ|terms| (the tight tolerance of the other GEMMs; vendors may
// round a pair's two products together); (b) the float32 product in double:
// error <= 2^-7 of Σ|terms| (two operands rounded to 8 significant bits),
// and on the hardware path above 1e-6 somewhere (bf16 really ran).

static uint16_t ref_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    if ((u & 0x7f800000u) == 0) return (uint16_t)((u >> 16) & 0x8000u);
    uint32_t lsb = (u >> 16) & 1u;
    return (uint16_t)((u + 0x7fffu + lsb) >> 16);
}

static float ref_float(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

// f rounded to bf16 (nearest even) and back.
static float ref_round_bf16(float f) { return ref_float(ref_bf16(f)); }

static void test_bf16_rounding(void) {
    // 1 + 2^-8 lies halfway between 1 and 1 + 2^-7: ties to even gives 1.
    CHECK(fr_float_to_bf16(1.0f + 0x1p-8f) == 0x3f80, "bf16(1 + 2^-8) = %#x", fr_float_to_bf16(1.0f + 0x1p-8f));
    // 1 + 3·2^-8: halfway between 1 + 2^-7 (odd) and 1 + 2^-6 (even).
    CHECK(fr_float_to_bf16(1.0f + 0x3p-8f) == 0x3f82, "bf16(1 + 3·2^-8) = %#x", fr_float_to_bf16(1.0f + 0x3p-8f));
    CHECK(fr_float_to_bf16(1.0f + 0x1p-8f + 0x1p-20f) == 0x3f81, "bf16 just above a tie rounds up");
    CHECK(fr_float_to_bf16(-2.0f) == 0xc000, "bf16(-2) = %#x", fr_float_to_bf16(-2.0f));
    CHECK(fr_float_to_bf16(INFINITY) == 0x7f80, "bf16(inf)");
    CHECK(fr_float_to_bf16(0x1p-140f) == 0, "bf16 of a denormal is zero");
    CHECK(isnan(fr_bf16_to_float(fr_float_to_bf16(NAN))), "bf16(NaN) is NaN");
    CHECK(fr_float_to_bf16(3.4e38f) == 0x7f80, "bf16 of a float above the largest bf16 rounds to inf");
}

// Σ over pairs, odd product first, one rounding per addition.
static void ref_gemm_bf16(const float *x, const float *w, const float *bias, size_t m, size_t out, size_t in,
                          int in_out, float *y) {
    for (size_t r = 0; r < m; r++)
        for (size_t j = 0; j < out; j++) {
            float s = bias ? bias[j] : 0.0f;
            for (size_t k = 0; k < in; k += 2) {
                float a0 = ref_float(ref_bf16(x[r * in + k]));
                float w0 = ref_float(ref_bf16(in_out ? w[k * out + j] : w[j * in + k]));
                if (k + 1 < in) {
                    float a1 = ref_float(ref_bf16(x[r * in + k + 1]));
                    float w1 = ref_float(ref_bf16(in_out ? w[(k + 1) * out + j] : w[j * in + k + 1]));
                    s = fmaf(a1, w1, s);
                }
                s = fmaf(a0, w0, s);
            }
            y[r * out + j] = s;
        }
}

static void test_gemm_bf16_case(size_t m, size_t out, size_t in, int in_out, int with_bias) {
    float *x = frand(m * in), *w = frand(out * in), *bias = with_bias ? frand(out) : NULL;
    uint16_t *wp = NULL;
    if (posix_memalign((void **)&wp, 64, fr_bf16_packed_count(out, in) * sizeof(uint16_t))) exit(2);
    fr_pack_weights_bf16(w, in_out, wp, out, in);
    void *scratch = malloc(fr_gemm_bf16_scratch_bytes(in));
    float *y = fbuf(m * out + 1), *emul = fbuf(m * out), *row = fbuf(out + 1);
    double *ref = malloc(m * out * sizeof(double)), *scale = malloc(m * out * sizeof(double));
    ref_gemm_bf16(x, w, bias, m, out, in, in_out, emul);
    for (size_t r = 0; r < m; r++)
        for (size_t j = 0; j < out; j++) {
            double s = bias ? bias[j] : 0.0, a = bias ? fabs(bias[j]) : 0.0;
            for (size_t k = 0; k < in; k++) {
                double t = (double)x[r * in + k] * (in_out ? w[k * out + j] : w[j * in + k]);
                s += t;
                a += fabs(t);
            }
            ref[r * out + j] = s;
            scale[r * out + j] = a;
        }
    double *emul_d = malloc(m * out * sizeof(double));
    for (size_t i = 0; i < m * out; i++) emul_d[i] = emul[i];
    for (int portable = fr_bf16_hardware() ? 0 : 1; portable < 2; portable++) {
        fr_bf16_force_unavailable(portable);
        y[m * out] = 12345.0f;
        fr_gemm_bf16(x, wp, bias, y, m, out, in, scratch, FR_IDENTITY, 0, 0);
        const char *path = portable ? "portable" : "avx512bf16";
        double e = worst(y, emul_d, scale, m * out);
        CHECK(e <= TOL, "gemm_bf16 %s m=%zu out=%zu in=%zu: error %.3g against the bf16 reference", path, m, out, in, e);
        double f = worst(y, ref, scale, m * out);
        CHECK(f <= 1.0 / 128, "gemm_bf16 %s m=%zu out=%zu in=%zu: error %.3g against float32", path, m, out, in, f);
        if (!portable && in >= 64 && m * out >= 64)
            CHECK(f > 1e-6, "gemm_bf16 m=%zu out=%zu in=%zu: error %.3g against float32 is too small for bf16", m,
                  out, in, f);
        CHECK(y[m * out] == 12345.0f, "gemm_bf16 %s wrote past y", path);
        // The fused SiLU: exactly the float32 pass on the portable path; on
        // the hardware path its own register-level SiLU, within 2e-6 of
        // v·σ(v) in double (relative; 2e-12 absolute below |v·σ(v)| = 1e-6).
        float *fused = fbuf(m * out);
        fr_gemm_bf16(x, wp, bias, fused, m, out, in, scratch, FR_SILU, 0, 0);
        if (portable) {
            fr_unary_forward(FR_SILU, 0, 0, y, y, m * out);
            CHECK(memcmp(fused, y, m * out * sizeof(float)) == 0,
                  "gemm_bf16 portable fused SiLU differs (m=%zu out=%zu in=%zu)", m, out, in);
        } else {
            double e = 0;
            for (size_t i = 0; i < m * out; i++) {
                double v = y[i], s = v / (1 + exp(-v));
                double d = fabs(fused[i] - s) / fmax(fabs(s), 1e-6);
                e = d > e ? d : e;
            }
            CHECK(e <= 2e-6, "gemm_bf16 avx512bf16 fused SiLU off by %.3g (m=%zu out=%zu in=%zu)", e, m, out, in);
        }
        free(fused);
        fr_gemm_bf16(x, wp, bias, y, m, out, in, scratch, FR_IDENTITY, 0, 0);
        // A row alone gives the same bits as inside the batch.
        size_t r = m / 2;
        row[out] = -1.0f;
        fr_gemm_bf16(x + r * in, wp, bias, row, 1, out, in, scratch, FR_IDENTITY, 0, 0);
        CHECK(memcmp(row, y + r * out, out * sizeof(float)) == 0 && row[out] == -1.0f,
              "gemm_bf16 %s row %zu alone differs (m=%zu out=%zu in=%zu)", path, r, m, out, in);
    }
    fr_bf16_force_unavailable(0);
    free(x); free(w); free(bias); free(wp); free(scratch); free(y); free(emul); free(row); free(ref); free(scale);
    free(emul_d);
}

// The identity (exact in bf16) returns bf16(x): the hardware conversion of
// activations rounds to nearest even like the reference, ties included.
static void test_gemm_bf16_rounds_activations(void) {
    enum { N = 40, M = 7 };
    float w[N * N], x[M * N], y[M * N];
    for (size_t i = 0; i < N * N; i++) w[i] = i % (N + 1) == 0 ? 1.0f : 0.0f;
    for (size_t i = 0; i < M * N; i++) x[i] = rng_float() * 100.0f;
    x[0] = 1.0f + 0x1p-8f;
    x[1] = 1.0f + 0x3p-8f;
    x[2] = -(1.0f + 0x1p-8f + 0x1p-20f);
    uint16_t wp[16 * 3 * N];
    fr_pack_weights_bf16(w, 0, wp, N, N);
    void *scratch = malloc(fr_gemm_bf16_scratch_bytes(N));
    for (int portable = fr_bf16_hardware() ? 0 : 1; portable < 2; portable++) {
        fr_bf16_force_unavailable(portable);
        fr_gemm_bf16(x, wp, NULL, y, M, N, N, scratch, FR_IDENTITY, 0, 0);
        size_t bad = 0;
        for (size_t i = 0; i < M * N; i++) bad += ref_bf16(x[i]) != ref_bf16(y[i]) || y[i] != ref_float(ref_bf16(x[i]));
        CHECK(bad == 0, "gemm_bf16 %s: identity weights give bf16(x) except at %zu of %d", portable ? "portable" : "avx512bf16",
              bad, M * N);
    }
    fr_bf16_force_unavailable(0);
    free(scratch);
}

// The hardware path's SiLU over the whole float range: identity weights
// pass bf16-exact values through, so y = SiLU(x) exactly in the reference.
// Error against double: ≤ 2e-6 relative, or 2e-12 absolute where
// |s| < 1e-6 (large negative x: the reduction's rounding grows there).
// Specials come in through the bias (an infinite or NaN x would make its
// whole row NaN by ∞·0): columns 0, 1, 2 hold +∞, −∞, NaN, and SiLU gives
// +∞, NaN (−∞·0, as in float32), NaN.
static void test_gemm_bf16_silu_range(void) {
    if (!fr_bf16_hardware()) return;
    enum { N = 32, M = 64 };
    float w[N * N], x[M * N], y[M * N], bias[N] = {INFINITY, -INFINITY, NAN};
    for (size_t i = 0; i < N * N; i++) w[i] = i % (N + 1) == 0 ? 1.0f : 0.0f;
    for (size_t i = 0; i < M * N; i++) x[i] = -120.0f + 240.0f * (float)i / (M * N);
    x[3] = 0.0f; x[4] = -0.0f; x[5] = 0x1p-100f; x[6] = -0x1p-100f; x[7] = 3.0e38f; x[8] = -3.0e38f;
    for (size_t i = 0; i < 64; i++) x[40 + i] = ldexpf(i % 2 ? -1.0f : 1.0f, (int)i - 31);  // ±2^-31 … 2^32
    for (size_t i = 0; i < M * N; i++) x[i] = ref_float(ref_bf16(x[i]));
    uint16_t wp[16 * 2 * N];
    fr_pack_weights_bf16(w, 0, wp, N, N);
    void *scratch = malloc(fr_gemm_bf16_scratch_bytes(N));
    fr_gemm_bf16(x, wp, bias, y, M, N, N, scratch, FR_SILU, 0, 0);
    double worst_rel = 0;
    for (size_t r = 0; r < M; r++) {
        CHECK(y[r * N] == INFINITY, "bf16 SiLU(+inf) = %g", y[r * N]);
        CHECK(isnan(y[r * N + 1]) && isnan(y[r * N + 2]), "bf16 SiLU(-inf), SiLU(NaN) = %g, %g", y[r * N + 1],
              y[r * N + 2]);
        for (size_t j = 3; j < N; j++) {
            double v = x[r * N + j], s = v / (1 + exp(-v)), got = y[r * N + j];
            double e = fabs(got - s) / fmax(fabs(s), 1e-6);  // absolute below |s| = 1e-6
            worst_rel = e > worst_rel ? e : worst_rel;
        }
    }
    // The standalone form (float32 layers of a bf16 pass) is the same function.
    float z[M * N];
    fr_gemm_bf16(x, wp, bias, z, M, N, N, scratch, FR_IDENTITY, 0, 0);
    fr_silu_bf16_path(z, M * N - 3);  // a tail shorter than 16 lanes
    CHECK(memcmp(z, y, (M * N - 3) * sizeof(float)) == 0, "fr_silu_bf16_path differs from the fused SiLU");
    CHECK(worst_rel <= 2e-6, "bf16 SiLU error %.3g (relative, 1e-12 absolute floor) over [-120, 120] and ±2^k", worst_rel);
    free(scratch);
}

// bfloat16 convolution (fr_conv2d_forward_bf16) against (a) the sum in
// double of the products of bf16-rounded weights and inputs (error ≤ TOL of
// Σ|products|: float32 accumulation only), (b) the float32 convolution in
// double (≤ 1/128 of Σ|w·x|: two roundings to 8 bits), on the hardware and
// portable paths; a sample alone gives the batch's bits; the kernel stays
// inside y and the scratch it asked for.
static void test_conv_bf16_case(const conv_case *cc) {
    const fr_conv2d_geometry *g = &cc->g;
    const size_t n = cc->n, cin_g = g->cin / g->groups;
    const size_t xs = g->cin * g->h * g->w, ys = g->cout * g->oh * g->ow, ws = g->cout * cin_g * g->kh * g->kw;
    char what[256];
    describe(cc, what, sizeof what);
    float *x = frand(n * xs), *w = frand(ws), *bias = cc->bias ? frand(g->cout) : NULL;
    double *emul = calloc(n * ys, sizeof(double)), *escale = calloc(n * ys, sizeof(double));
    double *ref = calloc(n * ys, sizeof(double)), *scale = calloc(n * ys, sizeof(double));
    conv_reference(g, n, bias, &(conv_ref){x, w, NULL, ref_round_bf16, emul, escale, NULL, NULL, NULL, NULL});
    conv_reference(g, n, bias, &(conv_ref){x, w, NULL, NULL, ref, scale, NULL, NULL, NULL, NULL});
    uint16_t *wp = malloc((fr_conv2d_bf16_packed_count(g) + 1) * sizeof(uint16_t));
    wp[fr_conv2d_bf16_packed_count(g)] = 0xabcd;
    fr_conv2d_pack_bf16(g, w, wp);
    CHECK(wp[fr_conv2d_bf16_packed_count(g)] == 0xabcd, "conv bf16 packing wrote past its count: %s", what);
    size_t sb = fr_conv2d_bf16_scratch_bytes(g);
    unsigned char *scratch = malloc(sb + 1);
    float *y = fbuf(n * ys + 1), *one = fbuf(ys + 1);
    for (int portable = fr_bf16_hardware() ? 0 : 1; portable < 2; portable++) {
        fr_bf16_force_unavailable(portable);
        const char *path = portable ? "portable" : "avx512bf16";
        for (size_t i = 0; i < n * ys; i++) y[i] = NAN;
        y[n * ys] = 12345.0f;
        scratch[sb] = 0x5a;
        fr_conv2d_forward_bf16(g, x, wp, bias, y, n, scratch);
        double e = worst(y, emul, escale, n * ys);
        CHECK(e <= TOL, "conv bf16 %s %s: error %.3g against the bf16 products", path, what, e);
        double f = worst(y, ref, scale, n * ys);
        CHECK(f <= 1.0 / 128, "conv bf16 %s %s: error %.3g against float32", path, what, f);
        CHECK(y[n * ys] == 12345.0f && scratch[sb] == 0x5a, "conv bf16 %s wrote past y or its scratch: %s", path, what);
        for (size_t s = 0; s < n; s++) {
            fr_conv2d_forward_bf16(g, x + s * xs, wp, bias, one, 1, scratch);
            CHECK(memcmp(one, y + s * ys, ys * sizeof(float)) == 0, "conv bf16 %s sample %zu alone differs: %s", path, s,
                  what);
        }
    }
    fr_bf16_force_unavailable(0);
    free(x); free(w); free(bias); free(emul); free(escale); free(ref); free(scale); free(wp); free(scratch); free(y);
    free(one);
}

static void test_conv_bf16(void) {
    conv_case fixed[] = {
        make_conv(2, 32, 32, 1, 28, 28, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1),  // the MNIST U-Net's convolutions
        make_conv(1, 64, 64, 1, 7, 7, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1),    // 7×7: four runs per panel
        make_conv(2, 32, 96, 1, 28, 28, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1),  // 1×1
        make_conv(1, 3, 40, 1, 9, 11, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 0),    // K = 27: odd, a pad row
        make_conv(3, 8, 16, 1, 28, 28, 4, 4, 2, 2, 1, 1, 1, 1, 1, 1, 1),   // stride 2: the gather path
        make_conv(2, 6, 6, 6, 13, 9, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1),     // depthwise: K = 9
        make_conv(2, 4, 6, 2, 1, 40, 1, 3, 1, 1, 0, 0, 2, 1, 1, 2, 1),     // Conv1d, groups 2, dilation
        make_conv(1, 1, 1, 1, 5, 5, 3, 3, 1, 1, 2, 2, 2, 2, 1, 1, 0),      // pads exceed the image
        make_conv(1, 3, 17, 1, 17, 300, 3, 3, 1, 1, 1, 0, 0, 2, 1, 1, 1),  // wide rows, many blocks
        make_conv(1, 5, 7, 1, 3, 2, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1),      // ow = 2: more than 4 runs
    };
    for (size_t f = 0; f < sizeof fixed / sizeof fixed[0]; f++) test_conv_bf16_case(&fixed[f]);
    static const size_t kernels[][2] = {{1, 1}, {3, 3}, {1, 3}, {3, 1}, {4, 4}, {2, 3}};
    for (int done = 0; done < 150;) {
        size_t groups = rng_int(1, 3), cin_g = rng_int(1, 7), cout_g = rng_int(1, 13), k = rng_int(0, 5);
        size_t h = rng_int(1, 19), w = rng_int(1, 23);
        size_t kh = h == 1 ? 1 : kernels[k][0], kw = kernels[k][1];
        conv_case c = make_conv(rng_int(1, 3), cin_g * groups, cout_g * groups, groups, h, w, kh, kw, rng_int(1, 2),
                                rng_int(1, 2), rng_int(0, 2), rng_int(0, 2), rng_int(0, 2), rng_int(0, 2),
                                rng_int(1, 2), rng_int(1, 2), (int)rng_int(0, 1));
        if (h == 1) c.g.pad_top = 0, c.g.stride_h = 1, c.g.oh = 1;
        if (c.g.oh == 0 || c.g.ow == 0) continue;
        test_conv_bf16_case(&c);
        done++;
    }
}

static void test_gemm_bf16(void) {
    test_bf16_rounding();
    test_gemm_bf16_silu_range();
    test_gemm_bf16_rounds_activations();
    static const size_t ms[] = {1, 5, 6, 7, 13, 47, 48, 49, 97};
    static const size_t outs[] = {1, 2, 15, 16, 17, 33, 64, 65, 100};
    static const size_t ins[] = {1, 2, 3, 31, 32, 33, 64, 255, 257};
    for (size_t i = 0; i < 40; i++)
        test_gemm_bf16_case(ms[rng_int(0, 8)], outs[rng_int(0, 8)], ins[rng_int(0, 8)], (int)rng_int(0, 1),
                            (int)rng_int(0, 1));
    test_gemm_bf16_case(256, 512, 512, 0, 1);   // the MLP shapes
    test_gemm_bf16_case(100, 1024, 1025, 1, 1); // odd k, MatMul layout
    test_gemm_bf16_case(3, 2, 512, 0, 1);       // an output layer
}

int main(void) {
    __builtin_cpu_init();
    have_avx512 = __builtin_cpu_supports("avx512f") && fr_dense_avx512_active();
    printf("AVX-512F path: %s\n", have_avx512 ? "tested" : "not available (portable path only)");
    test_gemm();
    printf("gemm done (%d passed, %d failed)\n", passed, failed);
    test_conv();
    test_conv_winograd();
    printf("conv done (%d passed, %d failed)\n", passed, failed);
    test_binary_rows();
    test_softmax();
    test_layer_norm();
    test_group_norm();
    printf("bf16 kernel: %s\n", fr_bf16_hardware() ? "AVX512_BF16 and portable paths tested" : "portable path only");
    test_gemm_bf16();
    test_conv_bf16();
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
