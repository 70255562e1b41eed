/* Thread test: 8 threads call one shared model and one shared flow 1,000
 * times each (velocity, divergence, sampling with log-densities, and
 * log-likelihood, in turn); every result must equal the single-threaded one
 * bit for bit. Ends with "N passed, N failed". */
#define _POSIX_C_SOURCE 200809L
#include "flowrt.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { THREADS = 8, N = 16, D = 3 };
static int calls = 1000; /* argv[1] overrides (valgrind runs fewer) */

static flowrt_model *model;
static flowrt_flow *flow;
enum { S = 4 };
static float ref_samples[S * D];
static double ref_sample_lp[S], ref_lp[S];
static double t[N];
static float x[N * D], ref_v[N * D];
static double ref_div[N];

static void *worker(void *arg) {
    long mismatches = 0;
    float v[N * D];
    double div[N];
    int i;
    (void)arg;
    float xs[S * D];
    double lps[S];
    for (i = 0; i < calls; i++) {
        switch (i % 4) {
        case 0:
            if (flowrt_model_velocity(model, N, t, x, v) != FLOWRT_OK || memcmp(v, ref_v, sizeof v) != 0) mismatches++;
            break;
        case 1:
            if (flowrt_model_divergence(model, N, t, x, NULL, div) != FLOWRT_OK || memcmp(div, ref_div, sizeof div) != 0)
                mismatches++;
            break;
        case 2:
            if (flowrt_flow_sample(flow, S, 17, NULL, xs, lps, NULL) != FLOWRT_OK ||
                memcmp(xs, ref_samples, sizeof xs) != 0 || memcmp(lps, ref_sample_lp, sizeof lps) != 0)
                mismatches++;
            break;
        default:
            if (flowrt_flow_log_prob(flow, S, x, 1.0, NULL, lps, NULL, NULL) != FLOWRT_OK ||
                memcmp(lps, ref_lp, sizeof lps) != 0)
                mismatches++;
        }
    }
    return (void *)mismatches;
}

int main(int argc, char **argv) {
    int passed = 0, failed = 0, i;
    pthread_t th[THREADS];
    flowrt_mlp_params p = flowrt_mlp_default_params();
    if (argc > 1) calls = atoi(argv[1]);
    p.dim = D;
    p.width = 64;
    if (flowrt_model_create_mlp(&p, &model) != FLOWRT_OK) { printf("%s\n", flowrt_last_error_message()); return 2; }
    for (i = 0; i < N; i++) t[i] = i / (double)N;
    for (i = 0; i < N * D; i++) x[i] = (float)(i % 7) * 0.3f - 1.0f;
    flowrt_model_velocity(model, N, t, x, ref_v);
    flowrt_model_divergence(model, N, t, x, NULL, ref_div);
    if (flowrt_flow_create(model, NULL, &flow) != FLOWRT_OK ||
        flowrt_flow_sample(flow, S, 17, NULL, ref_samples, ref_sample_lp, NULL) != FLOWRT_OK ||
        flowrt_flow_log_prob(flow, S, x, 1.0, NULL, ref_lp, NULL, NULL) != FLOWRT_OK) {
        printf("%s\n", flowrt_last_error_message());
        return 2;
    }
    for (i = 0; i < THREADS; i++) pthread_create(&th[i], NULL, worker, NULL);
    for (i = 0; i < THREADS; i++) {
        void *r;
        pthread_join(th[i], &r);
        if ((long)r == 0) passed++;
        else { failed++; printf("FAIL thread %d: %ld results differ from the single-threaded ones\n", i, (long)r); }
    }
    flowrt_flow_free(flow);
    flowrt_model_free(model);
    printf("%d passed, %d failed\n", passed, failed);
    return failed == 0 ? 0 : 1;
}
