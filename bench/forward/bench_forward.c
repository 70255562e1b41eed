/* bench/forward: velocity of the 2→256×3→2 SiLU MLP through the C ABI at
 * several batch sizes, next to this machine's sgemm rate (2048³, OpenBLAS,
 * one thread) measured in the same process.
 *
 * Usage: bench_forward [threads]   (default 1; FlowRuntime's own pool)
 * Output: Markdown table rows on stdout. */
#define _POSIX_C_SOURCE 200112L
#include "flowrt.h"
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "../bench_util.h"

/* Best-of-`reps` time (seconds) of `iters` calls. */
#define BEST_OF(reps, iters, call, out)                                      \
    do {                                                                     \
        double best_ = 1e30;                                                 \
        for (int r_ = 0; r_ < (reps); r_++) {                                \
            double t0_ = now();                                              \
            for (long i_ = 0; i_ < (iters); i_++) { call; }                  \
            double dt_ = (now() - t0_) / (iters);                            \
            if (dt_ < best_) best_ = dt_;                                    \
        }                                                                    \
        (out) = best_;                                                       \
    } while (0)

int main(int argc, char **argv) {
    (void)argc; (void)argv;
    const int n = 2048;
    float *a = malloc(sizeof(float) * n * n), *b = malloc(sizeof(float) * n * n), *c = malloc(sizeof(float) * n * n);
    for (long i = 0; i < (long)n * n; i++) { a[i] = (float)(i % 13) * 0.1f; b[i] = (float)(i % 7) * 0.2f; }
    openblas_set_num_threads(1);
    double tg;
    BEST_OF(3, 2, cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1, a, n, b, n, 0, c, n), tg);
    double sgemm = 2.0 * n * n * n / tg / 1e9;
    printf("sgemm 2048^3 (OpenBLAS %s, 1 thread): %.1f GFLOP/s\n", openblas_get_corename(), sgemm);

    flowrt_mlp_params p = flowrt_mlp_default_params();
    flowrt_model *m = NULL;
    if (flowrt_model_create_mlp(&p, &m) != FLOWRT_OK) { printf("%s\n", flowrt_last_error_message()); return 1; }
    const double flops = 2.0 * (3 * 256 + 256 * 256 * 2 + 256 * 2);
    int batches[4] = {1, 64, 1024, 16384};
    printf("| batch | µs per call | GFLOP/s | %% of sgemm |\n|---:|---:|---:|---:|\n");
    for (int k = 0; k < 4; k++) {
        int bs = batches[k];
        double *t = malloc(sizeof(double) * bs);
        float *x = malloc(sizeof(float) * bs * 2), *v = malloc(sizeof(float) * bs * 2);
        for (int i = 0; i < bs; i++) { t[i] = (i % 100) / 100.0; x[2 * i] = 0.3f; x[2 * i + 1] = -0.7f; }
        long iters = bs == 1 ? 20000 : (bs == 64 ? 2000 : (bs == 1024 ? 100 : 8));
        double dt;
        flowrt_model_velocity(m, bs, t, x, v);
        BEST_OF(5, iters, flowrt_model_velocity(m, bs, t, x, v), dt);
        double gf = flops * bs / dt / 1e9;
        printf("| %d | %.2f | %.1f | %.0f%% |\n", bs, dt * 1e6, gf, 100 * gf / sgemm);
        free(t); free(x); free(v);
    }
    flowrt_model_free(m);
    return 0;
}
