/* Sample a (untrained) MLP flow with log-densities: the example of docs/c-api.md. */
#include <flowrt.h>
#include <stdio.h>
#include <string.h>

int main(void) {
    flowrt_mlp_params mp = flowrt_mlp_default_params();
    mp.dim = 2;
    flowrt_model *model = NULL;
    flowrt_flow *flow = NULL;
    if (flowrt_model_create_mlp(&mp, &model) != FLOWRT_OK) goto fail;
    if (flowrt_flow_create(model, NULL, &flow) != FLOWRT_OK) goto fail;
    flowrt_model_free(model); /* the flow holds its own reference */
    model = NULL;

    enum { N = 5 };
    float x[N * 2];
    double log_prob[N];
    flowrt_solver_params sp = flowrt_solver_default_params();
    sp.rtol = sp.atol = 1e-6;
    flowrt_solver_stats stats;
    memset(&stats, 0, sizeof stats);
    stats.struct_size = sizeof stats;
    if (flowrt_flow_sample(flow, N, 42, &sp, x, log_prob, &stats) != FLOWRT_OK) goto fail;
    for (int i = 0; i < N; i++)
        printf("x = (%+.4f, %+.4f)  log p = %.4f\n", x[2 * i], x[2 * i + 1], log_prob[i]);
    printf("%.1f network evaluations per sample\n", (double)stats.evaluations / N);
    flowrt_flow_free(flow);
    return 0;
fail:
    fprintf(stderr, "error: %s\n", flowrt_last_error_message());
    flowrt_flow_free(flow);
    flowrt_model_free(model);
    return 1;
}
