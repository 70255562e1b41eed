/* C tests of the issue 16 item 4 review's additions (docs/abi-review.md):
 * limits defined once (FLOWRT_MAX_THREADS, FLOWRT_MAX_PROBES), the
 * minibatch coupling inside flowrt_trainer_params (its fourth version),
 * the sampling calls in one argument order (first_index, n, seed), and the
 * SDE sampler with the ODE calls' progress callback and statistics. Prints
 * one line per failure and ends with "N passed, N failed". */
#define _POSIX_C_SOURCE 200809L
#include "flowrt.h"

#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

struct reports {
    int calls;
    uint64_t last_done, last_total;
    double last_value;
    int monotone;
    int cancel_at;
};

static int record(void *user, uint64_t done, uint64_t total, double value) {
    struct reports *r = user;
    if (r->calls > 0 && value < r->last_value) r->monotone = 0;
    r->calls++;
    r->last_done = done;
    r->last_total = total;
    r->last_value = value;
    return r->cancel_at > 0 && r->calls >= r->cancel_at;
}

int main(void) {
    flowrt_mlp_params mp = flowrt_mlp_default_params();
    mp.width = 16; mp.depth = 2; mp.seed = 4;
    flowrt_model *model = NULL;
    flowrt_flow *flow = NULL;
    CHECK_STATUS(flowrt_model_create_mlp(&mp, &model), FLOWRT_OK);
    CHECK_STATUS(flowrt_flow_create(model, NULL, &flow), FLOWRT_OK);
    enum { N = 40 };
    float x[N * 2], y[N * 2];
    double lp[N];

    /* 1. Limits defined once: the macros are what every call accepts. */
    flowrt_solver_params sp = flowrt_solver_default_params();
    sp.threads = FLOWRT_MAX_THREADS;
    CHECK_STATUS(flowrt_flow_sample(flow, 4, 1, &sp, x, NULL, NULL), FLOWRT_OK);
    sp.threads = FLOWRT_MAX_THREADS + 1;
    CHECK_STATUS(flowrt_flow_sample(flow, 4, 1, &sp, x, NULL, NULL), FLOWRT_INVALID_ARGUMENT);
    CHECK(strstr(flowrt_last_error_message(), "4096") != NULL, "message names the limit: %s", flowrt_last_error_message());
    sp = flowrt_solver_default_params();
    sp.divergence = FLOWRT_DIVERGENCE_HUTCHINSON;
    sp.probes = FLOWRT_MAX_PROBES;
    CHECK_STATUS(flowrt_flow_log_prob(flow, 1, x, 1, &sp, lp, NULL, NULL), FLOWRT_OK);
    sp.probes = FLOWRT_MAX_PROBES + 1;
    CHECK_STATUS(flowrt_flow_log_prob(flow, 1, x, 1, &sp, lp, NULL, NULL), FLOWRT_INVALID_ARGUMENT);
    sp = flowrt_solver_default_params();
    flowrt_sde_params qp = flowrt_sde_default_params();
    qp.steps = 10;
    qp.threads = FLOWRT_MAX_THREADS;
    CHECK_STATUS(flowrt_flow_sample_sde_range(flow, 0, 4, 1, &qp, x, NULL), FLOWRT_OK);
    qp.threads = FLOWRT_MAX_THREADS + 1;
    CHECK_STATUS(flowrt_flow_sample_sde_range(flow, 0, 4, 1, &qp, x, NULL), FLOWRT_INVALID_ARGUMENT);

    static float data[600 * 2];
    CHECK_STATUS(flowrt_dataset_sample("8gaussians", 600, 3, data), FLOWRT_OK);
    flowrt_trainer_params tp = flowrt_trainer_default_params();
    tp.batch_size = 128; tp.threads = FLOWRT_MAX_THREADS;
    flowrt_trainer *t1 = NULL, *t2 = NULL;
    CHECK_STATUS(flowrt_trainer_create(model, data, 600, 2, &tp, &t1), FLOWRT_OK);
    flowrt_trainer_free(t1);
    t1 = NULL;
    tp.threads = FLOWRT_MAX_THREADS + 1;
    CHECK_STATUS(flowrt_trainer_create(model, data, 600, 2, &tp, &t1), FLOWRT_INVALID_ARGUMENT);
    tp.threads = 2;

    /* 2. The coupling inside the trainer params: the same training as
     *    setting it after creation, bit for bit. */
    CHECK(tp.coupling == FLOWRT_COUPLING_INDEPENDENT, "default coupling");
    tp.coupling = FLOWRT_COUPLING_EXACT_OT;
    CHECK_STATUS(flowrt_trainer_create(model, data, 600, 2, &tp, &t1), FLOWRT_OK);
    tp.coupling = FLOWRT_COUPLING_INDEPENDENT;
    CHECK_STATUS(flowrt_trainer_create(model, data, 600, 2, &tp, &t2), FLOWRT_OK);
    CHECK_STATUS(flowrt_trainer_set_coupling(t2, FLOWRT_COUPLING_EXACT_OT), FLOWRT_OK);
    flowrt_trainer *t3 = NULL;
    CHECK_STATUS(flowrt_trainer_create(model, data, 600, 2, &tp, &t3), FLOWRT_OK);
    CHECK_STATUS(flowrt_trainer_fit(t1, 5, NULL, NULL), FLOWRT_OK);
    CHECK_STATUS(flowrt_trainer_fit(t2, 5, NULL, NULL), FLOWRT_OK);
    CHECK_STATUS(flowrt_trainer_fit(t3, 5, NULL, NULL), FLOWRT_OK);
    flowrt_model *m1 = NULL, *m2 = NULL, *m3 = NULL;
    CHECK_STATUS(flowrt_trainer_model(t1, &m1), FLOWRT_OK);
    CHECK_STATUS(flowrt_trainer_model(t2, &m2), FLOWRT_OK);
    CHECK_STATUS(flowrt_trainer_model(t3, &m3), FLOWRT_OK);
    double tt[N];
    float v1[N * 2], v2[N * 2], v3[N * 2];
    for (int i = 0; i < N; i++) { tt[i] = 0.5; x[2 * i] = (float)(0.1 * i - 2); x[2 * i + 1] = (float)(1 - 0.05 * i); }
    CHECK_STATUS(flowrt_model_velocity(m1, N, tt, x, v1), FLOWRT_OK);
    CHECK_STATUS(flowrt_model_velocity(m2, N, tt, x, v2), FLOWRT_OK);
    CHECK_STATUS(flowrt_model_velocity(m3, N, tt, x, v3), FLOWRT_OK);
    CHECK(memcmp(v1, v2, sizeof v1) == 0, "coupling in params = flowrt_trainer_set_coupling");
    CHECK(memcmp(v1, v3, sizeof v1) != 0, "and differs from independent pairs");
    flowrt_model_free(m1); flowrt_model_free(m2); flowrt_model_free(m3);
    flowrt_trainer_free(t1); flowrt_trainer_free(t2); flowrt_trainer_free(t3);
    t1 = NULL;
    tp.coupling = 9;
    CHECK_STATUS(flowrt_trainer_create(model, data, 600, 2, &tp, &t1), FLOWRT_INVALID_ARGUMENT);
    CHECK(strstr(flowrt_last_error_message(), "coupling") != NULL, "message: %s", flowrt_last_error_message());
    tp.coupling = FLOWRT_COUPLING_EXACT_OT;
    CHECK_STATUS(flowrt_trainer_create_path_length(model, data, 600, 2, &tp, NULL, &t1), FLOWRT_INVALID_ARGUMENT);
    tp.coupling = FLOWRT_COUPLING_INDEPENDENT;

    /* Every version of flowrt_trainer_params is accepted (0.1 first, 0.1,
     * 0.2, this one); a size in between is not. */
    size_t sizes[4] = {offsetof(flowrt_trainer_params, time_beta_b) + sizeof(double),
                       offsetof(flowrt_trainer_params, label_dropout), offsetof(flowrt_trainer_params, coupling),
                       sizeof(flowrt_trainer_params)};
    for (int i = 0; i < 4; i++) {
        flowrt_trainer_params old = tp;
        old.struct_size = (uint32_t)sizes[i];
        CHECK_STATUS(flowrt_trainer_create(model, data, 600, 2, &old, &t1), FLOWRT_OK);
        flowrt_trainer_free(t1);
        t1 = NULL;
        flowrt_trainer_params filled;
        memset(&filled, 0xAB, sizeof filled);
        filled.struct_size = (uint32_t)sizes[i];
        CHECK_STATUS(flowrt_trainer_params_init(&filled), FLOWRT_OK);
        CHECK(i == 3 ? filled.coupling == FLOWRT_COUPLING_INDEPENDENT : ((unsigned char *)&filled)[sizes[i]] == 0xAB,
              "version %d filled up to its size only", i);
    }
    tp.struct_size = (uint32_t)(sizes[2] + 4);
    CHECK_STATUS(flowrt_trainer_create(model, data, 600, 2, &tp, &t1), FLOWRT_INVALID_ARGUMENT);
    tp.struct_size = sizeof tp;

    /* 3. One argument order: (first_index, n, seed) gives the samples of
     *    the older orders. */
    float a[N * 2], b[N * 2];
    CHECK_STATUS(flowrt_dataset_sample("rings", N, 7, a), FLOWRT_OK);
    CHECK_STATUS(flowrt_dataset_sample_range("rings", 10, N - 10, 7, b), FLOWRT_OK);
    CHECK(memcmp(a + 20, b, sizeof(float) * 2 * (N - 10)) == 0, "dataset range = the tail of one call");
    CHECK_STATUS(flowrt_dataset_sample_range("rings", (uint64_t)1 << 63, 1, 7, b), FLOWRT_INVALID_ARGUMENT);
    CHECK_STATUS(flowrt_dataset_sample_range(NULL, 0, 1, 7, b), FLOWRT_INVALID_ARGUMENT);
    CHECK_STATUS(flowrt_dataset_sample_range("rings", 0, 0, 7, NULL), FLOWRT_OK);
    flowrt_density *normal = NULL;
    double mean[2] = {1, -1}, sd[2] = {0.5, 2};
    CHECK_STATUS(flowrt_density_create_diagonal_normal(2, mean, sd, &normal), FLOWRT_OK);
    CHECK_STATUS(flowrt_density_sample(normal, 5, 3, N, a), FLOWRT_OK);
    CHECK_STATUS(flowrt_density_sample_range(normal, 3, N, 5, b), FLOWRT_OK);
    CHECK(memcmp(a, b, sizeof a) == 0, "density range = flowrt_density_sample");
    CHECK_STATUS(flowrt_density_sample_range(NULL, 3, N, 5, b), FLOWRT_INVALID_ARGUMENT);
    flowrt_density_free(normal);

    /* 4. The SDE sampler with progress and statistics, in that order. */
    qp = flowrt_sde_default_params();
    qp.steps = 50;
    CHECK_STATUS(flowrt_flow_sample_sde(flow, &qp, 11, 5, N, a), FLOWRT_OK);
    struct reports r = {0, 0, 0, 0, 1, 0};
    qp.progress = record;
    qp.progress_user_data = &r;
    flowrt_solver_stats st;
    memset(&st, 0, sizeof st);
    st.struct_size = sizeof st;
    CHECK_STATUS(flowrt_flow_sample_sde_range(flow, 5, N, 11, &qp, b, &st), FLOWRT_OK);
    CHECK(memcmp(a, b, sizeof a) == 0, "sample_sde_range = sample_sde bit for bit");
    CHECK(r.calls >= 5 && r.monotone && r.last_done == N && r.last_total == N && r.last_value == 1,
          "progress: %d reports, last %llu of %llu at %g", r.calls, (unsigned long long)r.last_done,
          (unsigned long long)r.last_total, r.last_value);
    CHECK(st.samples == N && st.steps == (uint64_t)N * 50 && st.rejections == 0 && st.non_finite_samples == 0 &&
          st.max_steps_per_sample == 50 && st.evaluations == (uint64_t)N * (49 * 2 + 2),
          "stats: samples %llu steps %llu evaluations %llu", (unsigned long long)st.samples,
          (unsigned long long)st.steps, (unsigned long long)st.evaluations);
    r.calls = 0;
    r.cancel_at = 2;
    CHECK_STATUS(flowrt_flow_sample_sde_range(flow, 5, N, 11, &qp, b, NULL), FLOWRT_CANCELLED);
    CHECK(r.calls == 2, "cancelled at the second report (%d)", r.calls);
    r.calls = 0;
    CHECK_STATUS(flowrt_flow_sample_sde(flow, &qp, 11, 5, N, a), FLOWRT_CANCELLED);
    /* A 0.2.0 caller's struct (before progress) is accepted and never reports. */
    flowrt_sde_params old = qp;
    old.struct_size = (uint32_t)offsetof(flowrt_sde_params, progress);
    r.calls = 0;
    CHECK_STATUS(flowrt_flow_sample_sde_range(flow, 5, N, 11, &old, b, NULL), FLOWRT_OK);
    CHECK(r.calls == 0, "old struct: no progress");
    CHECK_STATUS(flowrt_flow_sample_sde_range(flow, 0, 0, 11, &qp, NULL, &st), FLOWRT_OK);
    CHECK(st.samples == 0 && st.steps == 0, "empty batch stats");
    CHECK_STATUS(flowrt_flow_sample_sde_range(NULL, 0, 1, 11, &qp, b, NULL), FLOWRT_INVALID_ARGUMENT);
    CHECK_STATUS(flowrt_flow_sample_sde_range(flow, 0, 1, 11, &qp, NULL, NULL), FLOWRT_INVALID_ARGUMENT);
    (void)y;

    flowrt_flow_free(flow);
    flowrt_model_free(model);
    printf("%d passed, %d failed\n", passed, failed);
    return failed != 0;
}
