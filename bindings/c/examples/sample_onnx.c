/* Load a flow saved as ONNX (by FlowRuntime, or a velocity network exported
 * from PyTorch) and draw samples with their log-densities.
 *
 * usage: sample_onnx FLOW.onnx [N] [SEED]        prints "x1 x2 ... log_prob" rows */
#include <flowrt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv) {
    flowrt_flow *flow = NULL;
    float *x = NULL;
    double *log_prob = NULL;
    size_t n, d, i, j;
    unsigned long long seed;
    flowrt_solver_params sp = flowrt_solver_default_params();
    flowrt_solver_stats stats;

    if (argc < 2) {
        fprintf(stderr, "usage: %s FLOW.onnx [N] [SEED]\n", argv[0]);
        return 2;
    }
    n = argc > 2 ? (size_t)strtoul(argv[2], NULL, 10) : 10;
    seed = argc > 3 ? strtoull(argv[3], NULL, 10) : 0;
    if (flowrt_flow_load_onnx(argv[1], NULL, &flow) != FLOWRT_OK) goto fail;
    d = flowrt_flow_dim(flow);
    x = malloc(sizeof(float) * n * d);
    log_prob = malloc(sizeof(double) * n);
    if (!x || !log_prob) { fprintf(stderr, "out of memory\n"); goto done; }
    memset(&stats, 0, sizeof stats);
    stats.struct_size = sizeof stats;
    if (flowrt_flow_sample(flow, n, seed, &sp, x, log_prob, &stats) != FLOWRT_OK) goto fail;
    for (i = 0; i < n; i++) {
        for (j = 0; j < d; j++) printf("%.6f ", x[i * d + j]);
        printf("%.6f\n", log_prob[i]);
    }
    fprintf(stderr, "%zu samples, %.1f network evaluations each\n", n, (double)stats.evaluations / (double)n);
    goto done;
fail:
    fprintf(stderr, "error: %s\n", flowrt_last_error_message());
done:
    free(x);
    free(log_prob);
    flowrt_flow_free(flow);
    return log_prob ? 0 : 1;
}
