/* C tests of the flows section of flowrt.h: sampling, transport, encoding,
 * log-densities, solver params, statistics, progress and every error code.
 * Prints one line per failure and ends with "N passed, N failed". */
#include "check.h"

#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


#define N 64
#define D 2

static int cancel_after_first(void *user, uint64_t done, uint64_t total, double value) {
    int *calls = (int *)user;
    (void)done; (void)total; (void)value;
    (*calls)++;
    return 1;
}

static int count_calls(void *user, uint64_t done, uint64_t total, double value) {
    int *calls = (int *)user;
    (*calls)++;
    return (done > total || value < 0 || value > 1.0000001) ? 1 : 0;
}

int main(void) {
    flowrt_mlp_params mp = flowrt_mlp_default_params();
    flowrt_model *model = NULL;
    flowrt_flow *flow = NULL;
    flowrt_flow_params fp = flowrt_flow_default_params();
    flowrt_solver_params sp = flowrt_solver_default_params();
    flowrt_solver_stats st;
    float x[N * D], y[N * D], z[N * D];
    double lp[N], lp2[N], se[N];
    int i, calls = 0;
    double worst = 0;

    mp.dim = D; mp.width = 32; mp.depth = 2; mp.seed = 7;
    CHECK_STATUS(flowrt_model_create_mlp(&mp, &model), FLOWRT_OK);
    CHECK(fp.struct_size == sizeof fp && fp.interpolant == FLOWRT_INTERPOLANT_TRIG, "flow defaults");
    CHECK(sp.struct_size == sizeof sp && sp.method == FLOWRT_SOLVER_DOPRI5 && sp.rtol == 1e-5 &&
          sp.fixed_steps == 0 && sp.max_steps == 10000 && sp.progress == NULL, "solver defaults");

    CHECK_STATUS(flowrt_flow_create(NULL, &fp, &flow), FLOWRT_INVALID_ARGUMENT);
    CHECK(flow == NULL, "out stays NULL");
    fp.interpolant = 99;
    CHECK_STATUS(flowrt_flow_create(model, &fp, &flow), FLOWRT_INVALID_ARGUMENT);
    fp = flowrt_flow_default_params();
    CHECK_STATUS(flowrt_flow_create(model, NULL, &flow), FLOWRT_OK);
    flowrt_model_free(model); /* the flow keeps its own reference */
    CHECK(flowrt_flow_dim(flow) == D, "dim");
    CHECK(flowrt_flow_dim(NULL) == 0, "dim of NULL");

    /* Sample with exact log-densities, then evaluate them again backward. */
    sp.rtol = sp.atol = 1e-6;
    memset(&st, 0, sizeof st);
    st.struct_size = sizeof st;
    CHECK_STATUS(flowrt_flow_sample(flow, N, 42, &sp, x, lp, &st), FLOWRT_OK);
    CHECK(st.samples == N && st.steps > 0 && st.evaluations >= 6 * st.steps, "stats %llu %llu %llu",
          (unsigned long long)st.samples, (unsigned long long)st.steps, (unsigned long long)st.evaluations);
    CHECK_STATUS(flowrt_flow_log_prob(flow, N, x, 1.0, &sp, lp2, se, NULL), FLOWRT_OK);
    for (i = 0; i < N; i++) { double e = fabs(lp[i] - lp2[i]); if (e > worst) worst = e; }
    CHECK(worst < 1e-3, "forward and backward log-densities differ by %g", worst);
    CHECK(se[0] == 0, "exact divergence has zero standard error");

    /* Same seed, same samples, without log-densities; any split of the batch. */
    CHECK_STATUS(flowrt_flow_sample(flow, N, 42, &sp, y, NULL, NULL), FLOWRT_OK);
    worst = 0;
    for (i = 0; i < N * D; i++) { double e = fabs(x[i] - y[i]); if (e > worst) worst = e; }
    CHECK(worst < 1e-4, "samples with and without log_prob differ by %g", worst);

    /* Encode then transport back to data. */
    CHECK_STATUS(flowrt_flow_encode(flow, N, x, &sp, z, NULL), FLOWRT_OK);
    CHECK_STATUS(flowrt_flow_transport(flow, N, z, 0.0, 1.0, &sp, y, NULL), FLOWRT_OK);
    worst = 0;
    for (i = 0; i < N * D; i++) { double e = fabs(x[i] - y[i]); if (e > worst) worst = e; }
    CHECK(worst < 1e-3, "encode/transport round trip error %g", worst);

    /* Hutchinson with 16 probes: close to exact, with a standard error. */
    sp.divergence = FLOWRT_DIVERGENCE_HUTCHINSON;
    sp.probes = 16;
    sp.seed = 3;
    CHECK_STATUS(flowrt_flow_log_prob(flow, N, x, 1.0, &sp, lp2, se, NULL), FLOWRT_OK);
    worst = 0;
    for (i = 0; i < N; i++) { double e = fabs(lp[i] - lp2[i]) / (se[i] + 1e-9); if (e > worst) worst = e; }
    CHECK(se[0] > 0 && worst < 5, "hutchinson: worst |error| / se = %g, se[0] = %g", worst, se[0]);
    sp = flowrt_solver_default_params();

    /* Fixed-step methods. */
    sp.method = FLOWRT_SOLVER_RK4;
    CHECK_STATUS(flowrt_flow_sample(flow, N, 1, &sp, y, NULL, NULL), FLOWRT_INVALID_ARGUMENT);
    sp.fixed_steps = 50;
    memset(&st, 0, sizeof st);
    st.struct_size = sizeof st;
    CHECK_STATUS(flowrt_flow_sample(flow, N, 1, &sp, y, NULL, &st), FLOWRT_OK);
    CHECK(st.steps == 50 * N && st.evaluations == 200 * N, "rk4: %llu steps", (unsigned long long)st.steps);
    sp = flowrt_solver_default_params();

    /* Progress: called, and cancellation. */
    sp.progress = count_calls;
    sp.progress_user_data = &calls;
    CHECK_STATUS(flowrt_flow_sample(flow, N, 1, &sp, y, NULL, NULL), FLOWRT_OK);
    CHECK(calls >= 1, "progress called %d times", calls);
    calls = 0;
    sp.progress = cancel_after_first;
    CHECK_STATUS(flowrt_flow_sample(flow, N, 1, &sp, y, NULL, NULL), FLOWRT_CANCELLED);
    CHECK(calls == 1, "cancel stops at the first report (%d calls)", calls);
    sp = flowrt_solver_default_params();

    /* Incomplete runs are reported with statistics. */
    sp.max_steps = 2;
    sp.rtol = sp.atol = 1e-9;
    memset(&st, 0, sizeof st);
    st.struct_size = sizeof st;
    CHECK_STATUS(flowrt_flow_sample(flow, N, 1, &sp, y, NULL, &st), FLOWRT_SOLVER_INCOMPLETE);
    CHECK(st.max_steps_samples == N, "max_steps_samples = %llu", (unsigned long long)st.max_steps_samples);
    CHECK(strstr(flowrt_last_error_message(), "max") != NULL, "message: %s", flowrt_last_error_message());
    sp = flowrt_solver_default_params();

    /* A step-size underflow is reported as such (issue 16): dx/dt = x² + 1
     * (Tests/SolverData/blow_up.onnx) blows up at t* = π/2 − atan x0, so
     * x0 = 1 and 2 stop there (π/4, 0.4636) while x0 = 0 and −0.5 reach
     * t = 1 at tan(1) and tan(1 + atan(−0.5)). More max_steps change nothing. */
    {
        flowrt_flow *blow = NULL;
        CHECK_STATUS(flowrt_flow_load_onnx("Tests/SolverData/blow_up.onnx", NULL, &blow), FLOWRT_OK);
        float x0[4] = {0, 1, -0.5f, 2}, x1[4];
        for (uint32_t max_steps = 10000; blow && max_steps <= 1000000; max_steps *= 100) {
            sp.max_steps = max_steps;
            sp.rtol = sp.atol = 1e-6;
            memset(&st, 0, sizeof st);
            st.struct_size = sizeof st;
            CHECK_STATUS(flowrt_flow_transport(blow, 4, x0, 0, 1, &sp, x1, &st), FLOWRT_STEP_UNDERFLOW);
            CHECK(st.step_underflow_samples == 2 && st.max_steps_samples == 0 && st.non_finite_samples == 0,
                  "underflow %llu, max steps %llu, non-finite %llu", (unsigned long long)st.step_underflow_samples,
                  (unsigned long long)st.max_steps_samples, (unsigned long long)st.non_finite_samples);
            CHECK(fabs(x1[0] - tan(1.0)) < 1e-4 && fabs(x1[2] - tan(1 + atan(-0.5))) < 1e-4, "finished samples %g %g",
                  x1[0], x1[2]);
            CHECK(isfinite(x1[1]) && x1[1] > 1e6 && isfinite(x1[3]), "underflowed samples keep a finite state");
            const char *m = flowrt_last_error_message();
            CHECK(strstr(m, "underflowed") && strstr(m, "sample 1 at t = 0.78539") && strstr(m, "with step") &&
                  !strstr(m, "raise max_steps"), "message: %s", m);
            CHECK(st.steps + st.rejections < 4000, "stopped long before max_steps (%llu steps)",
                  (unsigned long long)(st.steps + st.rejections));
        }
        CHECK(strcmp(flowrt_status_string(FLOWRT_STEP_UNDERFLOW), "step size underflow") == 0, "status string");
        /* log_prob runs backward: from x = −2 at t = 1 the field blows up (to −∞) at
         * t = 1 − π/2 − atan(−2) ≈ 0.5364 on the way to t = 0. */
        float xb[2] = {-2, 0.5f};
        double lp[2];
        CHECK_STATUS(flowrt_flow_log_prob(blow, 2, xb, 1, &sp, lp, NULL, &st), FLOWRT_STEP_UNDERFLOW);
        CHECK(strstr(flowrt_last_error_message(), "sample 0 at t = 0.536") != NULL, "message: %s", flowrt_last_error_message());
        CHECK(st.step_underflow_samples == 1, "log_prob underflows %llu", (unsigned long long)st.step_underflow_samples);
        /* A fixed-step run never underflows (its steps do not shrink). */
        sp.fixed_steps = 20;
        CHECK_STATUS(flowrt_flow_transport(blow, 1, x0, 0, 0.5, &sp, x1, NULL), FLOWRT_OK);
        flowrt_flow_free(blow);
        sp = flowrt_solver_default_params();
    }

    /* A caller with an older, shorter stats struct: only its bytes are written. */
    {
        struct { uint32_t struct_size; uint64_t samples; uint64_t guard; } old = { 16, 0, 12345 };
        CHECK_STATUS(flowrt_flow_sample(flow, 4, 1, &sp, y, NULL, (flowrt_solver_stats *)&old), FLOWRT_OK);
        CHECK(old.samples == 4 && old.guard == 12345, "partial stats write");
    }

    /* A caller compiled before max_step was appended: its struct_size is accepted. */
    sp.struct_size = (uint32_t)offsetof(flowrt_solver_params, max_step);
    CHECK_STATUS(flowrt_flow_sample(flow, 4, 1, &sp, y, NULL, NULL), FLOWRT_OK);
    sp = flowrt_solver_default_params();
    sp.max_step = -1;
    CHECK_STATUS(flowrt_flow_sample(flow, 4, 1, &sp, y, NULL, NULL), FLOWRT_INVALID_ARGUMENT);
    sp = flowrt_solver_default_params();
    sp.max_step = 0.05;
    memset(&st, 0, sizeof st);
    st.struct_size = sizeof st;
    CHECK_STATUS(flowrt_flow_sample(flow, 4, 1, &sp, y, NULL, &st), FLOWRT_OK);
    CHECK(st.steps >= 4 * 20, "max_step 0.05 gives >= 20 steps per sample (%llu)", (unsigned long long)st.steps);
    sp = flowrt_solver_default_params();

    /* Errors. */
    CHECK_STATUS(flowrt_flow_sample(NULL, N, 1, &sp, y, NULL, NULL), FLOWRT_INVALID_ARGUMENT);
    CHECK_STATUS(flowrt_flow_sample(flow, 0, 1, &sp, y, NULL, NULL), FLOWRT_OK); /* an empty batch */
    CHECK_STATUS(flowrt_flow_sample(flow, N, 1, &sp, NULL, NULL, NULL), FLOWRT_INVALID_ARGUMENT);
    sp.struct_size = 3;
    CHECK_STATUS(flowrt_flow_sample(flow, N, 1, &sp, y, NULL, NULL), FLOWRT_INVALID_ARGUMENT);
    sp = flowrt_solver_default_params();
    sp.rtol = -1;
    CHECK_STATUS(flowrt_flow_sample(flow, N, 1, &sp, y, NULL, NULL), FLOWRT_INVALID_ARGUMENT);
    sp = flowrt_solver_default_params();
    sp.divergence = FLOWRT_DIVERGENCE_HUTCHINSON;
    sp.probes = 0;
    CHECK_STATUS(flowrt_flow_log_prob(flow, N, x, 1.0, &sp, lp, NULL, NULL), FLOWRT_INVALID_ARGUMENT);
    sp = flowrt_solver_default_params();
    CHECK_STATUS(flowrt_flow_log_prob(flow, N, x, 1.5, &sp, lp, NULL, NULL), FLOWRT_INVALID_ARGUMENT);
    CHECK_STATUS(flowrt_flow_transport(flow, N, x, 0.0, 2.0, &sp, y, NULL), FLOWRT_INVALID_ARGUMENT);
    CHECK_STATUS(flowrt_flow_transport(flow, N, x, NAN, 1.0, &sp, y, NULL), FLOWRT_INVALID_ARGUMENT);
    x[5] = NAN;
    CHECK_STATUS(flowrt_flow_log_prob(flow, N, x, 1.0, &sp, lp, NULL, NULL), FLOWRT_NON_FINITE);
    CHECK(strstr(flowrt_last_error_message(), "x[5]") != NULL, "names the element: %s", flowrt_last_error_message());
    CHECK_STATUS(flowrt_flow_encode(flow, N, x, &sp, y, NULL), FLOWRT_NON_FINITE);

    /* Precision (issue 17): float32 default, bf16 requests reported, bad values named. */
    {
        int req = -1, eff = -1, bf16 = flowrt_bf16_available();
        flowrt_model *wide = NULL;
        flowrt_flow *wf = NULL;
        float a[N * D], b[N * D];
        CHECK(bf16 == 0 || bf16 == 1, "flowrt_bf16_available = %d", bf16);
        mp.width = 64; /* >= 32 inputs: its hidden layers can run in bf16 */
        CHECK_STATUS(flowrt_model_create_mlp(&mp, &wide), FLOWRT_OK);
        CHECK_STATUS(flowrt_flow_create(wide, NULL, &wf), FLOWRT_OK);
        CHECK_STATUS(flowrt_model_get_precision(wide, FLOWRT_PRECISION_FOR_VELOCITY, &req, &eff), FLOWRT_OK);
        CHECK(req == FLOWRT_PRECISION_FLOAT32 && eff == FLOWRT_PRECISION_FLOAT32, "default %d %d", req, eff);
        sp.method = FLOWRT_SOLVER_RK4;
        sp.fixed_steps = 10;
        memset(&st, 0, sizeof st);
        st.struct_size = sizeof st;
        st.precision = -1;
        CHECK_STATUS(flowrt_flow_sample(wf, N, 5, &sp, a, NULL, &st), FLOWRT_OK);
        CHECK(st.precision == FLOWRT_PRECISION_FLOAT32, "float32 run reports %d", st.precision);
        /* Set on the model, seen by the flow made from it. */
        CHECK_STATUS(flowrt_model_set_precision(wide, FLOWRT_PRECISION_FOR_VELOCITY, FLOWRT_PRECISION_BF16), FLOWRT_OK);
        CHECK_STATUS(flowrt_flow_get_precision(wf, FLOWRT_PRECISION_FOR_VELOCITY, &req, &eff), FLOWRT_OK);
        CHECK(req == FLOWRT_PRECISION_BF16 && eff == (bf16 ? FLOWRT_PRECISION_BF16 : FLOWRT_PRECISION_FLOAT32),
              "bf16 requested: %d %d", req, eff);
        CHECK_STATUS(flowrt_flow_get_precision(wf, FLOWRT_PRECISION_FOR_LIKELIHOOD, &req, &eff), FLOWRT_OK);
        CHECK(req == FLOWRT_PRECISION_FLOAT32 && eff == FLOWRT_PRECISION_FLOAT32, "likelihood stays float32");
        CHECK_STATUS(flowrt_flow_sample(wf, N, 5, &sp, b, NULL, &st), FLOWRT_OK);
        CHECK(st.precision == (bf16 ? FLOWRT_PRECISION_BF16 : FLOWRT_PRECISION_FLOAT32), "bf16 run reports %d",
              st.precision);
        worst = 0;
        for (i = 0; i < N * D; i++) { double e = fabs(a[i] - b[i]); if (e > worst) worst = e; }
        CHECK(bf16 ? (worst > 0 && worst < 0.05) : worst == 0, "bf16 vs float32 samples: %g", worst);
        CHECK_STATUS(flowrt_flow_sample(wf, N, 5, &sp, b, lp, &st), FLOWRT_OK);
        CHECK(st.precision == FLOWRT_PRECISION_FLOAT32, "sampling with log_prob runs the likelihood's float32");
        /* Back to float32 through the flow: bit for bit the first samples. */
        CHECK_STATUS(flowrt_flow_set_precision(wf, FLOWRT_PRECISION_FOR_VELOCITY, FLOWRT_PRECISION_FLOAT32), FLOWRT_OK);
        CHECK_STATUS(flowrt_flow_sample(wf, N, 5, &sp, b, NULL, NULL), FLOWRT_OK);
        CHECK(memcmp(a, b, sizeof a) == 0, "float32 after bf16 differs");
        /* Bad values: named errors, setting unchanged. */
        CHECK_STATUS(flowrt_model_set_precision(wide, FLOWRT_PRECISION_FOR_VELOCITY, 2), FLOWRT_INVALID_ARGUMENT);
        CHECK(strstr(flowrt_last_error_message(), "precision = 2") != NULL, "message: %s", flowrt_last_error_message());
        CHECK_STATUS(flowrt_model_set_precision(wide, 9, FLOWRT_PRECISION_BF16), FLOWRT_INVALID_ARGUMENT);
        CHECK(strstr(flowrt_last_error_message(), "use = 9") != NULL, "message: %s", flowrt_last_error_message());
        CHECK_STATUS(flowrt_model_set_precision(NULL, 0, 0), FLOWRT_INVALID_ARGUMENT);
        CHECK_STATUS(flowrt_flow_set_precision(NULL, 0, 0), FLOWRT_INVALID_ARGUMENT);
        CHECK_STATUS(flowrt_model_get_precision(NULL, 0, &req, &eff), FLOWRT_INVALID_ARGUMENT);
        CHECK_STATUS(flowrt_model_get_precision(wide, 0, NULL, NULL), FLOWRT_OK);
        CHECK_STATUS(flowrt_model_get_precision(wide, FLOWRT_PRECISION_FOR_VELOCITY, &req, NULL), FLOWRT_OK);
        CHECK(req == FLOWRT_PRECISION_FLOAT32, "unchanged after bad calls: %d", req);
        flowrt_flow_free(wf);
        flowrt_model_free(wide);
        sp = flowrt_solver_default_params();
    }

    flowrt_flow_free(flow);
    flowrt_flow_free(NULL);
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
