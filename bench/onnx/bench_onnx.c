/* bench/onnx: velocity throughput of an ONNX file imported by FlowRuntime
 * (flowrt_model_load_onnx), one thread, through the C ABI.
 *
 * Usage: bench_onnx <file.onnx>
 * Output: Markdown rows | FlowRuntime (imported) | batch | µs per call | GFLOP/s |
 * FLOPs per sample are the imported graph's linear layers (2·in·out each),
 * counted from the file's shapes by the caller (argument 2). */
#define _POSIX_C_SOURCE 200112L
#include "flowrt.h"
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "../bench_util.h"

int main(int argc, char **argv) {
    if (argc < 3) { fprintf(stderr, "usage: bench_onnx file.onnx flops_per_sample\n"); return 2; }
    flowrt_model *m = NULL;
    if (flowrt_model_load_onnx(argv[1], NULL, &m) != FLOWRT_OK) {
        fprintf(stderr, "%s\n", flowrt_last_error_message());
        return 1;
    }
    const double flops = atof(argv[2]);
    const size_t d = flowrt_model_dim(m);
    const int batches[] = {1, 16, 256, 1024, 4096};
    for (int k = 0; k < 5; k++) {
        int bs = batches[k];
        double *t = malloc(sizeof(double) * bs);
        float *x = malloc(sizeof(float) * bs * d), *v = malloc(sizeof(float) * bs * d);
        for (int i = 0; i < bs; i++) {
            t[i] = (i % 100) / 100.0;
            for (size_t j = 0; j < d; j++) x[i * d + j] = 0.3f - 0.1f * (float)((i + j) % 7);
        }
        long iters = 1 + (long)(4e8 / (flops * bs + 2e5));  /* ~0.1-0.3 s per repetition */
        flowrt_model_velocity(m, bs, t, x, v);
        double best = 1e30;
        for (int r = 0; r < 5; r++) {
            double t0 = now();
            for (long i = 0; i < iters; i++) flowrt_model_velocity(m, bs, t, x, v);
            double dt = (now() - t0) / iters;
            if (dt < best) best = dt;
        }
        printf("| FlowRuntime (imported, C call) | %d | %.2f | %.1f |\n", bs, best * 1e6, flops * bs / best / 1e9);
        free(t); free(x); free(v);
    }
    flowrt_model_free(m);
    return 0;
}
