/* C tests of conditional flows (DESIGN.md §5 "Conditioning"): a conditional
 * MLP trained on Gaussian-linear simulation pairs (θ ~ N(0, 0.1 I),
 * x | θ ~ N(θ, 0.1 I), posterior θ | x ~ N(x / 2, 0.05 I)) gives posterior
 * samples near the closed form; results do not depend on the batch
 * (contexts included); log-densities from sampling and from log_prob agree;
 * encode and transport invert each other; the plain calls refuse a
 * conditional flow and name the _conditional call; bad contexts and
 * guidance without labels are clear errors; old-size trainer params work.
 * An optional argument scales the training steps down (valgrind: 50).
 * Ends with "N passed, N failed". */
#define _POSIX_C_SOURCE 200809L
#include "check.h"

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define D 2
#define M 2
#define NDATA 4000

/* Box–Muller normals from a small LCG: the test's own simulator. */
static uint64_t lcg = 12345;
static double uniform01(void) {
    lcg = lcg * 6364136223846793005ULL + 1442695040888963407ULL;
    return ((lcg >> 11) + 0.5) / 9007199254740992.0;
}
static double normal(void) {
    double u = uniform01(), v = uniform01();
    return sqrt(-2 * log(u)) * cos(6.283185307179586 * v);
}

static flowrt_model *conditional_mlp(size_t context_dim) {
    flowrt_mlp_params p = flowrt_mlp_default_params();
    flowrt_model *m = NULL;
    p.dim = D; p.width = 32; p.depth = 2; p.seed = 3;
    CHECK_STATUS(flowrt_model_create_mlp_conditional(&p, context_dim, &m), FLOWRT_OK);
    return m;
}

int main(int argc, char **argv) {
    long steps = argc > 1 ? atol(argv[1]) : 600;
    float *theta = malloc(sizeof(float) * NDATA * D), *obs = malloc(sizeof(float) * NDATA * M);
    flowrt_model *model = conditional_mlp(M), *trained = NULL, *plain_model = conditional_mlp(0);
    flowrt_trainer *trainer = NULL;
    flowrt_flow *flow = NULL, *plain = NULL;
    flowrt_trainer_params tp = flowrt_trainer_default_params();
    flowrt_solver_params sp = flowrt_solver_default_params();
    size_t i;

    for (i = 0; i < NDATA * D; i++) {
        double th = sqrt(0.1) * normal();
        theta[i] = (float)th;
        obs[i] = (float)(th + sqrt(0.1) * normal());
    }
    CHECK(flowrt_model_context_dim(model) == M, "context_dim %zu", flowrt_model_context_dim(model));
    CHECK(flowrt_model_context_dim(plain_model) == 0, "context_dim 0 gives the plain MLP");

    /* The plain trainer refuses a conditional model and names the call. */
    CHECK_STATUS(flowrt_trainer_create(model, theta, NDATA, D, NULL, &trainer), FLOWRT_INVALID_ARGUMENT);
    CHECK(strstr(flowrt_last_error_message(), "flowrt_trainer_create_conditional") != NULL, "%s", flowrt_last_error_message());
    CHECK_STATUS(flowrt_trainer_create_conditional(model, theta, obs, NDATA, D, 3, NULL, &trainer), FLOWRT_SHAPE_MISMATCH);
    CHECK_STATUS(flowrt_trainer_create_conditional(model, theta, NULL, NDATA, D, M, NULL, &trainer), FLOWRT_INVALID_ARGUMENT);
    tp.label_dropout = 0.1;
    CHECK_STATUS(flowrt_trainer_create_conditional(model, theta, obs, NDATA, D, M, &tp, &trainer), FLOWRT_INVALID_ARGUMENT);
    obs[5] = NAN;
    CHECK_STATUS(flowrt_trainer_create_conditional(model, theta, obs, NDATA, D, M, NULL, &trainer), FLOWRT_NON_FINITE);
    obs[5] = 0.1f;

    /* An old-size params struct (before label_dropout) is accepted. */
    tp = flowrt_trainer_default_params();
    tp.struct_size = (uint32_t)offsetof(flowrt_trainer_params, label_dropout);
    tp.batch_size = 256; tp.learning_rate = 3e-3; tp.ema_decay = 0.99; tp.seed = 5;
    CHECK_STATUS(flowrt_trainer_create_conditional(model, theta, obs, NDATA, D, M, &tp, &trainer), FLOWRT_OK);
    CHECK_STATUS(flowrt_trainer_fit(trainer, (uint64_t)steps, NULL, NULL), FLOWRT_OK);
    CHECK_STATUS(flowrt_trainer_model(trainer, &trained), FLOWRT_OK);
    CHECK_STATUS(flowrt_flow_create(trained, NULL, &flow), FLOWRT_OK);
    CHECK(flowrt_flow_context_dim(flow) == M, "flow context_dim");
    CHECK(flowrt_flow_num_classes(flow) == 0, "no classes");

    {
        /* Posterior samples for one observation (context_rows = 1). */
        enum { NS = 2000 };
        const float xo[M] = {0.3f, -0.2f};
        float *post = malloc(sizeof(float) * NS * D);
        double mean[D] = {0, 0};
        flowrt_solver_stats st;
        memset(&st, 0, sizeof st);
        st.struct_size = sizeof st;
        CHECK_STATUS(flowrt_flow_sample_conditional(flow, 0, NS, 1, xo, 1, 0, &sp, post, NULL, &st), FLOWRT_OK);
        for (i = 0; i < NS; i++) { mean[0] += post[2 * i]; mean[1] += post[2 * i + 1]; }
        mean[0] /= NS; mean[1] /= NS;
        printf("posterior mean for x_obs = (0.3, -0.2) after %ld steps: (%.4f, %.4f), exact (0.15, -0.10)\n",
               steps, mean[0], mean[1]);
        if (steps >= 600) {
            CHECK(fabs(mean[0] - 0.15) < 0.05 && fabs(mean[1] + 0.10) < 0.05, "posterior mean (%g, %g)", mean[0], mean[1]);
        }
        free(post);
    }
    {
        /* One context per point: each point's result is that of its own
         * one-point call (bit for bit), log-densities agree with log_prob,
         * and encode inverts the sampling transport. */
        enum { NB = 8 };
        float ctx[NB * M], x[NB * D], one[D], z[NB * D], back[NB * D];
        double lp[NB], lp1, lq[NB];
        for (i = 0; i < NB * M; i++) ctx[i] = (float)(0.4 * normal());
        CHECK_STATUS(flowrt_flow_sample_conditional(flow, 0, NB, 9, ctx, NB, 0, &sp, x, lp, NULL), FLOWRT_OK);
        for (i = 0; i < NB; i += 3) {
            CHECK_STATUS(flowrt_flow_sample_conditional(flow, i, 1, 9, ctx + i * M, 1, 0, &sp, one, &lp1, NULL), FLOWRT_OK);
            CHECK(memcmp(one, x + i * D, sizeof one) == 0 && lp1 == lp[i], "point %zu differs from its batch row", i);
        }
        CHECK_STATUS(flowrt_flow_log_prob_conditional(flow, NB, x, ctx, 1, &sp, lq, NULL, NULL), FLOWRT_OK);
        for (i = 0; i < NB; i++) CHECK(fabs(lq[i] - lp[i]) < 2e-3, "log p %zu: %g vs %g", i, lq[i], lp[i]);
        CHECK_STATUS(flowrt_flow_encode_conditional(flow, NB, x, ctx, &sp, z, NULL), FLOWRT_OK);
        CHECK_STATUS(flowrt_flow_transport_conditional(flow, NB, z, ctx, 0, 1, &sp, back, NULL), FLOWRT_OK);
        for (i = 0; i < NB * D; i++) CHECK(fabs(back[i] - x[i]) < 1e-3, "round trip %zu: %g vs %g", i, back[i], x[i]);

        /* Misuse: the plain calls name the conditional one; bad contexts. */
        CHECK_STATUS(flowrt_flow_sample(flow, NB, 9, &sp, x, NULL, NULL), FLOWRT_INVALID_ARGUMENT);
        CHECK(strstr(flowrt_last_error_message(), "flowrt_flow_sample_conditional") != NULL, "%s", flowrt_last_error_message());
        CHECK_STATUS(flowrt_flow_log_prob(flow, NB, x, 1, &sp, lq, NULL, NULL), FLOWRT_INVALID_ARGUMENT);
        CHECK(strstr(flowrt_last_error_message(), "flowrt_flow_log_prob_conditional") != NULL, "%s", flowrt_last_error_message());
        CHECK_STATUS(flowrt_flow_encode(flow, NB, x, &sp, z, NULL), FLOWRT_INVALID_ARGUMENT);
        CHECK_STATUS(flowrt_flow_sample_conditional(flow, 0, NB, 9, NULL, NB, 0, &sp, x, NULL, NULL), FLOWRT_INVALID_ARGUMENT);
        CHECK_STATUS(flowrt_flow_sample_conditional(flow, 0, NB, 9, ctx, 3, 0, &sp, x, NULL, NULL), FLOWRT_INVALID_ARGUMENT);
        CHECK_STATUS(flowrt_flow_sample_conditional(flow, 0, NB, 9, ctx, NB, 2.0, &sp, x, NULL, NULL), FLOWRT_UNSUPPORTED);
        ctx[3] = INFINITY;
        CHECK_STATUS(flowrt_flow_log_prob_conditional(flow, NB, x, ctx, 1, &sp, lq, NULL, NULL), FLOWRT_NON_FINITE);

        /* An unconditional flow: the conditional calls with NULL context
         * equal the plain ones; a context is refused. */
        CHECK_STATUS(flowrt_flow_create(plain_model, NULL, &plain), FLOWRT_OK);
        CHECK_STATUS(flowrt_flow_sample(plain, NB, 4, &sp, x, NULL, NULL), FLOWRT_OK);
        CHECK_STATUS(flowrt_flow_sample_conditional(plain, 0, NB, 4, NULL, 0, 0, &sp, back, NULL, NULL), FLOWRT_OK);
        CHECK(memcmp(x, back, sizeof x) == 0, "unconditional sample_conditional equals sample");
        CHECK_STATUS(flowrt_flow_sample_conditional(plain, 0, NB, 4, ctx, NB, 0, &sp, back, NULL, NULL), FLOWRT_INVALID_ARGUMENT);
    }

    {
        /* A label MLP: guidance samples other points, refuses
         * log-densities, and rejects labels that are not classes. */
        flowrt_mlp_params p = flowrt_mlp_default_params();
        flowrt_model *labels = NULL;
        flowrt_flow *lf = NULL;
        float y[4] = {0, 1, 2, 1}, xs[4], xg[4], bad = 3;
        double lps[4];
        flowrt_solver_stats a, b;
        memset(&a, 0, sizeof a); a.struct_size = sizeof a;
        memset(&b, 0, sizeof b); b.struct_size = sizeof b;
        p.dim = 1; p.width = 16; p.depth = 2;
        CHECK_STATUS(flowrt_model_create_mlp_labels(&p, 0, 8, &labels), FLOWRT_INVALID_ARGUMENT);
        CHECK_STATUS(flowrt_model_create_mlp_labels(&p, 3, 8, &labels), FLOWRT_OK);
        CHECK(flowrt_model_context_dim(labels) == 1 && flowrt_model_num_classes(labels) == 3, "label model dims");
        CHECK_STATUS(flowrt_flow_create(labels, NULL, &lf), FLOWRT_OK);
        CHECK(flowrt_flow_num_classes(lf) == 3, "flow classes");
        sp.fixed_steps = 10; sp.method = FLOWRT_SOLVER_RK4;
        CHECK_STATUS(flowrt_flow_sample_conditional(lf, 0, 4, 1, y, 4, 0, &sp, xs, lps, &a), FLOWRT_OK);
        memcpy(xg, xs, sizeof xs);
        CHECK_STATUS(flowrt_flow_sample_conditional(lf, 0, 4, 1, y, 4, 1.5, &sp, xs, NULL, &b), FLOWRT_OK);
        /* Same solver steps (each guided evaluation runs the network twice),
         * other velocities. */
        CHECK(b.evaluations == a.evaluations && memcmp(xg, xs, sizeof xs) != 0, "guided samples differ");
        CHECK_STATUS(flowrt_flow_sample_conditional(lf, 0, 4, 1, y, 4, 1.5, &sp, xs, lps, NULL), FLOWRT_INVALID_ARGUMENT);
        CHECK(strstr(flowrt_last_error_message(), "guidance") != NULL, "%s", flowrt_last_error_message());
        CHECK_STATUS(flowrt_flow_sample_conditional(lf, 0, 4, 1, &bad, 1, 0, &sp, xs, NULL, NULL), FLOWRT_INVALID_ARGUMENT);
        flowrt_flow_free(lf);
        flowrt_model_free(labels);
    }

    flowrt_flow_free(plain);
    flowrt_flow_free(flow);
    flowrt_model_free(trained);
    flowrt_trainer_free(trainer);
    flowrt_model_free(model);
    flowrt_model_free(plain_model);
    free(theta);
    free(obs);
    printf("%d passed, %d failed\n", passed, failed);
    return failed == 0 ? 0 : 1;
}
