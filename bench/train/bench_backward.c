// Single-core speed of a dense layer's backward GEMMs on the shapes of the
// training benchmark (256 → 256, chunks of `rows` samples): OpenBLAS
// cblas_sgemm (what LinearOp.vjp called) against fr_linear_backward's two
// products (gemm_backward.c), each accumulating (beta = 1).
//
// Build and run from the repository root:
//   clang -std=c99 -O2 bench/train/bench_backward.c Sources/CKernels/*.c -ISources/CKernels/include \
//     $(pkg-config --cflags --libs openblas) -lm -o /tmp/bench_backward
//   env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE /tmp/bench_backward [out in]
//
// Best of 40 rounds of ≥ 2 ms each, the variants interleaved in every round (shared machine: short rounds are likelier
// to find the core to themselves). GFLOP/s counts 2 flops per multiply-add.
#define _POSIX_C_SOURCE 200112L
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ckernels.h"
#include "../bench_util.h"

void openblas_set_num_threads(int);

typedef void (*work_fn)(void *);

// best[i]: the best per-call seconds of fs[i] over 40 rounds, the functions
// interleaved within each round so that all see the same load.
static void best_seconds(int count, const work_fn *fs, void *ctx, double *best) {
    for (int i = 0; i < count; i++) best[i] = 1e30;
    for (int round = 0; round < 40; round++) {
        for (int i = 0; i < count; i++) {
            int reps = 0;
            double t0 = now(), t;
            do { fs[i](ctx); reps++; t = now(); } while (t - t0 < 2e-3);
            double per = (t - t0) / reps;
            if (per < best[i]) best[i] = per;
        }
    }
}

typedef struct {
    size_t rows, out, in;
    float *gz, *x, *w, *wp, *gx, *gw, *scratch;
} layer;

static void blas_gx(void *p) {
    layer *l = p;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)l->rows, (int)l->in, (int)l->out, 1.0f, l->gz,
                (int)l->out, l->w, (int)l->in, 1.0f, l->gx, (int)l->in);
}
static void blas_gw(void *p) {
    layer *l = p;
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)l->out, (int)l->in, (int)l->rows, 1.0f, l->gz,
                (int)l->out, l->x, (int)l->in, 1.0f, l->gw, (int)l->in);
}
static void ours_gx(void *p) {
    layer *l = p;
    fr_linear_backward(l->gz, l->x, l->wp, l->gx, NULL, l->rows, l->out, l->in, 0, l->scratch);
}
static void ours_gx_unpacked(void *p) {
    layer *l = p;
    fr_gemm(0, 0, l->rows, l->in, l->out, l->gz, l->out, l->w, l->in, 1.0f, l->gx, l->in, l->scratch);
}
static void ours_gw(void *p) {
    layer *l = p;
    fr_linear_backward(l->gz, l->x, l->wp, NULL, l->gw, l->rows, l->out, l->in, 0, l->scratch);
}
static void ours_pack(void *p) {
    layer *l = p;
    fr_linear_backward_pack(l->w, 0, l->out, l->in, l->wp);
}

int main(int argc, char **argv) {
    openblas_set_num_threads(1);
    size_t out = argc > 2 ? (size_t)atoi(argv[1]) : 256, in = argc > 2 ? (size_t)atoi(argv[2]) : 256;
    printf("layer %zu -> %zu, one thread; GFLOP/s (best of 40 rounds)\n\n", in, out);
    printf("| rows | g_x OpenBLAS | g_x ours (prepacked W) | g_x ours (fr_gemm, packs W) | g_W OpenBLAS | g_W ours | W pack µs |\n");
    printf("|---:|---:|---:|---:|---:|---:|---:|\n");
    size_t rows_list[] = {64, 128, 256, 512, 1024};
    for (size_t r = 0; r < sizeof rows_list / sizeof rows_list[0]; r++) {
        layer l = {rows_list[r], out, in, 0};
        l.gz = fbuf(l.rows * out); l.x = fbuf(l.rows * in); l.w = fbuf(out * in);
        l.wp = fbuf(fr_linear_backward_packed_floats(out, in));
        l.gx = fbuf(l.rows * in); l.gw = fbuf(out * in);
        l.scratch = fbuf(fr_linear_backward_scratch_floats(l.rows, out, in) + fr_gemm_scratch_floats(l.rows, in, out));
        fr_linear_backward_pack(l.w, 0, out, in, l.wp);
        double flops = 2.0 * (double)l.rows * (double)out * (double)in;
        const work_fn fs[6] = {blas_gx, ours_gx, ours_gx_unpacked, blas_gw, ours_gw, ours_pack};
        double t[6];
        best_seconds(6, fs, &l, t);
        printf("| %zu | %.1f | %.1f | %.1f | %.1f | %.1f | %.1f |\n", l.rows, flops / t[0] * 1e-9, flops / t[1] * 1e-9,
               flops / t[2] * 1e-9, flops / t[3] * 1e-9, flops / t[4] * 1e-9, t[5] * 1e6);
        free(l.gz); free(l.x); free(l.w); free(l.wp); free(l.gx); free(l.gw); free(l.scratch);
    }
    return 0;
}
