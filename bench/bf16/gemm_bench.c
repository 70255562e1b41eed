// fr_gemm_bf16 against fr_gemm_packed (float32) at MLP layer shapes, side by
// side in one process: for each shape the two kernels alternate, best of
// `reps` rounds each, and the ratio is of the best times.
//   clang -O2 bench/bf16/gemm_bench.c Sources/CKernels/*.c -ISources/CKernels/include -lm -o gemm_bench
#define _POSIX_C_SOURCE 200112L
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "ckernels.h"

#include "../bench_util.h"

static void *aligned(size_t bytes) {
    void *p = NULL;
    if (posix_memalign(&p, 64, bytes ? bytes : 64)) exit(2);
    return p;
}

int main(int argc, char **argv) {
    int reps = argc > 1 ? atoi(argv[1]) : 7;
    static const size_t shapes[][3] = {{256, 256, 256}, {256, 512, 512}, {1024, 512, 512}, {4096, 512, 512},
                                       {256, 1024, 1024}, {1024, 1024, 1024}, {1024, 512, 3}, {1024, 2, 512}};
    printf("bf16 hardware: %s\n", fr_bf16_supported() ? "yes" : "no (portable emulation: not a speed figure)");
    printf("%6s %6s %6s  %10s %10s  %6s\n", "m", "out", "in", "f32 GF/s", "bf16 GF/s", "ratio");
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        size_t m = shapes[s][0], out = shapes[s][1], in = shapes[s][2];
        float *x = aligned(m * in * 4), *w = aligned(out * in * 4), *b = aligned(out * 4), *y = aligned(m * out * 4);
        for (size_t i = 0; i < m * in; i++) x[i] = (float)((i * 2654435761u) % 1000) / 500.0f - 1.0f;
        for (size_t i = 0; i < out * in; i++) w[i] = (float)((i * 40503u) % 1000) / 5000.0f - 0.1f;
        for (size_t i = 0; i < out; i++) b[i] = 0.01f * (float)i;
        float *wp = aligned(fr_packed_count(out, in) * 4);
        uint16_t *wb = aligned(fr_bf16_packed_count(out, in) * 2);
        void *scratch = aligned(fr_gemm_bf16_scratch_bytes(in));
        fr_pack_weights(w, 0, wp, out, in);
        fr_pack_weights_bf16(w, 0, wb, out, in);
        double flops = 2.0 * m * out * in, best32 = 1e9, best16 = 1e9;
        int inner = (int)(2e8 / flops) + 1;
        for (int r = 0; r < reps; r++) {
            double t0 = now();
            for (int i = 0; i < inner; i++) fr_gemm_packed(x, wp, b, y, m, out, in);
            double t1 = now();
            for (int i = 0; i < inner; i++) fr_gemm_bf16(x, wb, b, y, m, out, in, scratch, FR_IDENTITY, 0, 0);
            double t2 = now();
            if ((t1 - t0) / inner < best32) best32 = (t1 - t0) / inner;
            if ((t2 - t1) / inner < best16) best16 = (t2 - t1) / inner;
        }
        printf("%6zu %6zu %6zu  %10.1f %10.1f  %6.2f\n", m, out, in, flops / best32 * 1e-9, flops / best16 * 1e-9,
               best32 / best16);
        free(x); free(w); free(b); free(y); free(wp); free(wb); free(scratch);
    }
    return 0;
}
