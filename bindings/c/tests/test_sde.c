/* C tests of the "densities" and "flows, score and SDE" sections: host densities through
 * callbacks (against the same closed form computed here), flows over a
 * host or diagonal-normal base, the score (trig closed form), the SDE
 * sampler (split/thread reproducibility, ε = 0 is the ODE), trainers from
 * densities with OT coupling, and errors. Under valgrind and ASan this
 * also checks handle lifetimes and callback buffers.
 * Ends with "N passed, N failed". */
#include "check.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static const double MU[2] = {0.5, -1.0}, SD[2] = {1.5, 0.7};

/* A counter hash → uniform in (0, 1): sample i depends on (seed, index) only. */
static double uniform(uint64_t seed, uint64_t index, unsigned k) {
    uint64_t z = seed * 0x9E3779B97F4A7C15ull + index * 0xBF58476D1CE4E5B9ull + k * 0x94D049BB133111EBull + 1;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return ((double)(z >> 11) + 0.5) / 9007199254740992.0;
}

static int host_sample(void *user, uint64_t seed, uint64_t first, size_t n, size_t dim, float *out) {
    size_t i, j;
    int *fail = user;
    if (*fail) return 1;
    for (i = 0; i < n; i++) {
        double u1 = uniform(seed, first + i, 0), u2 = uniform(seed, first + i, 1);
        double r = sqrt(-2 * log(u1)), a = 6.283185307179586 * u2;
        double z[2];
        z[0] = r * cos(a); z[1] = r * sin(a);
        for (j = 0; j < dim; j++) out[i * dim + j] = (float)(MU[j] + SD[j] * z[j]);
    }
    return 0;
}

static double closed_form_log_prob(const float *x) {
    double s = -log(SD[0]) - log(SD[1]) - log(2 * 3.141592653589793);
    int j;
    for (j = 0; j < 2; j++) { double z = (x[j] - MU[j]) / SD[j]; s -= 0.5 * z * z; }
    return s;
}

static int host_log_prob(void *user, size_t n, size_t dim, const float *x, double *out) {
    size_t i;
    (void)user;
    for (i = 0; i < n; i++) out[i] = closed_form_log_prob(x + i * dim);
    return 0;
}

static double zero_diffusion(void *user, double t) { (void)user; (void)t; return 0; }

int main(void) {
    enum { N = 16 };
    flowrt_mlp_params mp = flowrt_mlp_default_params();
    flowrt_model *model = NULL;
    flowrt_flow *flow = NULL, *hosted = NULL, *diag = NULL;
    flowrt_density *host = NULL, *normal = NULL, *empirical = NULL;
    float x[N * 2], y[N * 2], s[N * 2], v[N * 2];
    double t[N], lp[N], lp2[N];
    int fail = 0, i, j;

    mp.dim = 2; mp.depth = 2; mp.width = 16; mp.seed = 3;
    CHECK_STATUS(flowrt_model_create_mlp(&mp, &model), FLOWRT_OK);
    CHECK_STATUS(flowrt_flow_create(model, NULL, &flow), FLOWRT_OK);

    /* Score: trig closed form s = −x + (2/π) tan(πt/2) v; t = 1 refused. */
    for (i = 0; i < N; i++) {
        t[i] = 0.9 * i / (N - 1);
        x[2 * i] = (float)(uniform(1, i, 0) * 4 - 2); x[2 * i + 1] = (float)(uniform(1, i, 1) * 4 - 2);
    }
    CHECK_STATUS(flowrt_flow_score(flow, N, t, x, s), FLOWRT_OK);
    CHECK_STATUS(flowrt_model_velocity(model, N, t, x, v), FLOWRT_OK);
    {
        double worst = 0;
        for (i = 0; i < N; i++) for (j = 0; j < 2; j++) {
            double e = -x[2 * i + j] + 2 / 3.141592653589793 * tan(3.141592653589793 * t[i] / 2) * v[2 * i + j];
            double d = fabs(s[2 * i + j] - e) / (1 + fabs(e));
            if (d > worst) worst = d;
        }
        CHECK(worst < 1e-5, "score vs trig closed form: %g", worst);
    }
    t[0] = 1;
    CHECK_STATUS(flowrt_flow_score(flow, 1, t, x, s), FLOWRT_INVALID_ARGUMENT);
    CHECK(strstr(flowrt_last_error_message(), "singular") != NULL, "message: %s", flowrt_last_error_message());
    CHECK_STATUS(flowrt_flow_score(flow, 1, NULL, x, s), FLOWRT_INVALID_ARGUMENT);

    /* SDE: a split run equals the whole; ε ≡ 0 (callback) equals ε0 = 0. */
    {
        flowrt_sde_params sp = flowrt_sde_default_params();
        float whole[N * 2], part[N * 2];
        sp.steps = 20; sp.threads = 1;
        CHECK_STATUS(flowrt_flow_sample_sde(flow, &sp, 5, 0, N, whole), FLOWRT_OK);
        sp.threads = 2;
        CHECK_STATUS(flowrt_flow_sample_sde(flow, &sp, 5, 0, 6, part), FLOWRT_OK);
        CHECK_STATUS(flowrt_flow_sample_sde(flow, &sp, 5, 6, N - 6, part + 12), FLOWRT_OK);
        {   /* bit-identical for any thread count; across splits equal to the
             * network's GEMM rounding (the batch size changes the blocking) */
            double worst = 0;
            for (i = 0; i < 2 * N; i++) if (fabs(whole[i] - part[i]) > worst) worst = fabs(whole[i] - part[i]);
            CHECK(worst < 1e-4, "split SDE run differs by %g", worst);
        }
        sp.threads = 2;
        CHECK_STATUS(flowrt_flow_sample_sde(flow, &sp, 5, 0, N, part), FLOWRT_OK);
        sp.threads = 1;
        CHECK_STATUS(flowrt_flow_sample_sde(flow, &sp, 5, 0, N, y), FLOWRT_OK);
        CHECK(memcmp(y, part, sizeof y) == 0, "threads change the SDE samples");
        sp.diffusion = zero_diffusion;
        CHECK_STATUS(flowrt_flow_sample_sde(flow, &sp, 5, 0, N, whole), FLOWRT_OK);
        sp.diffusion = NULL; sp.epsilon = 0;
        CHECK_STATUS(flowrt_flow_sample_sde(flow, &sp, 5, 0, N, part), FLOWRT_OK);
        CHECK(memcmp(whole, part, sizeof whole) == 0, "ε callback 0 vs ε0 = 0");
        sp.epsilon = -1;
        CHECK_STATUS(flowrt_flow_sample_sde(flow, &sp, 5, 0, N, part), FLOWRT_INVALID_ARGUMENT);
        sp.epsilon = 1; sp.steps = 0;
        CHECK_STATUS(flowrt_flow_sample_sde(flow, &sp, 5, 0, N, part), FLOWRT_INVALID_ARGUMENT);
        CHECK_STATUS(flowrt_flow_sample_sde(NULL, NULL, 5, 0, N, part), FLOWRT_INVALID_ARGUMENT);
    }

    /* Host density: the callbacks' own values come back; a failing sampler
     * is reported as non-finite. */
    CHECK_STATUS(flowrt_density_create_callbacks(2, host_sample, host_log_prob, &fail, &host), FLOWRT_OK);
    CHECK(flowrt_density_dim(host) == 2 && flowrt_density_has_log_prob(host) == 1, "dim / has_log_prob");
    CHECK_STATUS(flowrt_density_sample(host, 9, 3, N, x), FLOWRT_OK);
    host_sample(&fail, 9, 3, N, 2, y);
    CHECK(memcmp(x, y, sizeof x) == 0, "host samples come back unchanged");
    CHECK_STATUS(flowrt_density_log_prob(host, N, x, lp), FLOWRT_OK);
    for (i = 0; i < N; i++) CHECK(fabs(lp[i] - closed_form_log_prob(x + 2 * i)) < 1e-12, "log_prob %d", i);
    fail = 1;
    CHECK_STATUS(flowrt_density_sample(host, 9, 3, N, x), FLOWRT_NON_FINITE);
    fail = 0;

    /* A flow over the host base: t = 0 gives the host's log-density, and the
     * sampled log-densities agree with the backward likelihood. */
    CHECK_STATUS(flowrt_flow_create_with_base(model, NULL, host, &hosted), FLOWRT_OK);
    flowrt_density_free(host); /* the flow keeps its own reference */
    {
        flowrt_solver_params so = flowrt_solver_default_params();
        so.rtol = so.atol = 1e-7;
        CHECK_STATUS(flowrt_flow_sample(hosted, N, 4, &so, x, lp, NULL), FLOWRT_OK);
        CHECK_STATUS(flowrt_flow_log_prob(hosted, N, x, 1.0, &so, lp2, NULL, NULL), FLOWRT_OK);
        for (i = 0; i < N; i++) CHECK(fabs(lp[i] - lp2[i]) < 1e-4, "forward %g vs backward %g", lp[i], lp2[i]);
        CHECK_STATUS(flowrt_flow_log_prob(hosted, N, x, 0.0, &so, lp2, NULL, NULL), FLOWRT_OK);
        for (i = 0; i < N; i++) CHECK(fabs(lp2[i] - closed_form_log_prob(x + 2 * i)) < 1e-9, "t = 0");
    }
    t[0] = 0.5;
    CHECK_STATUS(flowrt_flow_score(hosted, 1, t, x, s), FLOWRT_UNSUPPORTED);

    /* Diagonal normal base: the score at t = 0 is −(x − μ)/σ². */
    CHECK_STATUS(flowrt_density_create_diagonal_normal(2, MU, SD, &normal), FLOWRT_OK);
    CHECK_STATUS(flowrt_flow_create_with_base(model, NULL, normal, &diag), FLOWRT_OK);
    for (i = 0; i < N; i++) t[i] = 0;
    CHECK_STATUS(flowrt_flow_score(diag, N, t, x, s), FLOWRT_OK);
    for (i = 0; i < N; i++) for (j = 0; j < 2; j++) {
        double e = -(x[2 * i + j] - MU[j]) / (SD[j] * SD[j]);
        CHECK(fabs(s[2 * i + j] - e) < 1e-5 * (1 + fabs(e)), "diagonal score");
    }

    /* Data-to-data trainer from two densities, with OT coupling. */
    CHECK_STATUS(flowrt_density_create_empirical(N, 2, x, &empirical), FLOWRT_OK);
    CHECK(flowrt_density_has_log_prob(empirical) == 0, "empirical is sample-only");
    CHECK_STATUS(flowrt_density_log_prob(empirical, N, x, lp), FLOWRT_UNSUPPORTED);
    {
        flowrt_flow *none = diag;
        CHECK_STATUS(flowrt_flow_create_with_base(model, NULL, empirical, &none), FLOWRT_UNSUPPORTED);
        CHECK(none == NULL, "out is NULL on failure");
    }
    {
        flowrt_trainer_params tp = flowrt_trainer_default_params();
        flowrt_trainer *trainer = NULL;
        flowrt_model *trained = NULL;
        double loss = 0;
        tp.batch_size = 64; tp.threads = 2;
        CHECK_STATUS(flowrt_trainer_create_from_densities(model, empirical, normal, 32, &tp, &trainer), FLOWRT_OK);
        CHECK_STATUS(flowrt_trainer_set_coupling(trainer, FLOWRT_COUPLING_EXACT_OT), FLOWRT_OK);
        CHECK_STATUS(flowrt_trainer_set_coupling(trainer, 7), FLOWRT_INVALID_ARGUMENT);
        CHECK_STATUS(flowrt_trainer_step(trainer, &loss), FLOWRT_OK);
        CHECK(isfinite(loss), "loss %g", loss);
        CHECK_STATUS(flowrt_trainer_model(trainer, &trained), FLOWRT_OK);
        flowrt_model_free(trained);
        flowrt_trainer_free(trainer);
        CHECK_STATUS(flowrt_trainer_create_from_densities(model, NULL, NULL, 0, NULL, &trainer), FLOWRT_INVALID_ARGUMENT);
    }
    CHECK_STATUS(flowrt_density_create_callbacks(2, NULL, NULL, NULL, &host), FLOWRT_INVALID_ARGUMENT);
    CHECK_STATUS(flowrt_density_create_diagonal_normal(2, MU, MU, &host), FLOWRT_INVALID_ARGUMENT); /* σ = −1 */
    flowrt_density_free(NULL);

    flowrt_density_free(empirical);
    flowrt_density_free(normal);
    flowrt_flow_free(diag);
    flowrt_flow_free(hosted);
    flowrt_flow_free(flow);
    flowrt_model_free(model);
    printf("%d passed, %d failed\n", passed, failed);
    return failed == 0 ? 0 : 1;
}
