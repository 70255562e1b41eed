/* C tests of path-length optimisation (issue 16 item 5): a trainer that
 * learns a Fourier interpolant, its state, the flow it trained, and that
 * flow saved as ONNX and loaded back. Prints one line per failure and ends
 * with "N passed, N failed". argv[1] (the valgrind run) gives fewer
 * optimiser steps and a shorter warmup, and skips the path-length
 * comparison, which needs the full run. */
#define _POSIX_C_SOURCE 200809L
#include "flowrt.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"

/* Target N(MU, SIGMA²) in 1-D, base N(0, 1). */
#define MU 2.0
#define SIGMA 0.7
#define PI 3.14159265358979323846

/* Kinetic energy ∫ E|v|² dt of the exact interpolant velocity between
 * N(0, 1) and N(MU, SIGMA²) for α = 1 − t + Σ a_k sin(kπt),
 * β = t + Σ b_k sin(kπt): the marginal is N(βμ, s²), s² = α² + β²σ², so
 * E|v|² = (β'μ)² + s'², s' = (αα' + ββ'σ²)/s (midpoint rule, 4000 points).
 * The closed form the Swift tests use, written again here. */
static double path_energy(const double *a, const double *b, size_t k) {
    double e = 0;
    for (int i = 0; i < 4000; i++) {
        double t = (i + 0.5) / 4000, al = 1 - t, be = t, dal = -1, dbe = 1;
        for (size_t j = 0; j < k; j++) {
            double w = (double)(j + 1) * PI;
            al += a[j] * sin(w * t); be += b[j] * sin(w * t);
            dal += a[j] * w * cos(w * t); dbe += b[j] * w * cos(w * t);
        }
        double s = sqrt(al * al + be * be * SIGMA * SIGMA);
        double ds = (al * dal + be * dbe * SIGMA * SIGMA) / s;
        e += dbe * MU * dbe * MU + ds * ds;
    }
    return e / 4000;
}

/* The trig path: α = cos(πt/2), β = sin(πt/2). */
static double trig_energy(void) {
    double e = 0;
    for (int i = 0; i < 4000; i++) {
        double t = (i + 0.5) / 4000, al = cos(PI * t / 2), be = sin(PI * t / 2);
        double dal = -PI / 2 * be, dbe = PI / 2 * al;
        double s = sqrt(al * al + be * be * SIGMA * SIGMA);
        double ds = (al * dal + be * dbe * SIGMA * SIGMA) / s;
        e += dbe * MU * dbe * MU + ds * ds;
    }
    return e / 4000;
}

static long progress_calls = 0;
static int count_progress(void *user, uint64_t done, uint64_t total, double value) {
    (void)user; (void)total;
    progress_calls++;
    CHECK(isfinite(value) && done == (uint64_t)progress_calls, "progress %llu %f", (unsigned long long)done, value);
    return 0;
}

int main(int argc, char **argv) {
    long steps = argc > 1 ? atol(argv[1]) : 200;
    int full = argc <= 1;
    enum { N = 4000 };
    static float data[N];
    /* N(MU, SIGMA²) by Box–Muller on a fixed LCG. */
    uint64_t state = 12345;
    for (int i = 0; i < N; i += 2) {
        double u[2];
        for (int j = 0; j < 2; j++) {
            state = state * 6364136223846793005ULL + 1442695040888963407ULL;
            u[j] = ((state >> 11) + 0.5) / 9007199254740992.0;
        }
        double r = sqrt(-2 * log(u[0]));
        data[i] = (float)(MU + SIGMA * r * cos(2 * PI * u[1]));
        data[i + 1] = (float)(MU + SIGMA * r * sin(2 * PI * u[1]));
    }
    flowrt_mlp_params mp = flowrt_mlp_default_params();
    mp.dim = 1; mp.width = 32; mp.depth = 2; mp.seed = 3;
    flowrt_model *init = NULL;
    CHECK_STATUS(flowrt_model_create_mlp(&mp, &init), FLOWRT_OK);
    flowrt_trainer_params tp = flowrt_trainer_default_params();
    tp.batch_size = 256; tp.learning_rate = 5e-3; tp.ema_decay = 0; tp.seed = 3; tp.threads = 2;
    tp.heldout_fraction = 0.05;

    /* Defaults, and every refusal. */
    flowrt_path_params pp = flowrt_path_default_params();
    CHECK(pp.struct_size == sizeof pp && pp.terms == 4 && pp.learning_rate == 0.001 && pp.warmup_steps == 300 &&
          pp.network_steps == 8 && pp.batch_size == 0 && pp.coefficient_bound == 2, "path defaults");
    CHECK_STATUS(flowrt_path_params_init(NULL), FLOWRT_INVALID_ARGUMENT);
    flowrt_trainer *t = NULL;
    flowrt_path_params bad = pp;
    bad.terms = 0;
    CHECK_STATUS(flowrt_trainer_create_path_length(init, data, N, 1, &tp, &bad, &t), FLOWRT_INVALID_ARGUMENT);
    CHECK(strstr(flowrt_last_error_message(), "terms") != NULL, "message names terms: %s", flowrt_last_error_message());
    bad = pp; bad.learning_rate = NAN;
    CHECK_STATUS(flowrt_trainer_create_path_length(init, data, N, 1, &tp, &bad, &t), FLOWRT_NON_FINITE);
    bad = pp; bad.learning_rate = -1;
    CHECK_STATUS(flowrt_trainer_create_path_length(init, data, N, 1, &tp, &bad, &t), FLOWRT_INVALID_ARGUMENT);
    bad = pp; bad.network_steps = 0;
    CHECK_STATUS(flowrt_trainer_create_path_length(init, data, N, 1, &tp, &bad, &t), FLOWRT_INVALID_ARGUMENT);
    bad = pp; bad.coefficient_bound = INFINITY;
    CHECK_STATUS(flowrt_trainer_create_path_length(init, data, N, 1, &tp, &bad, &t), FLOWRT_NON_FINITE);
    bad = pp; bad.struct_size = 5;
    CHECK_STATUS(flowrt_trainer_create_path_length(init, data, N, 1, &tp, &bad, &t), FLOWRT_INVALID_ARGUMENT);
    CHECK_STATUS(flowrt_trainer_create_path_length(NULL, data, N, 1, &tp, &pp, &t), FLOWRT_INVALID_ARGUMENT);
    CHECK_STATUS(flowrt_trainer_create_path_length(init, NULL, N, 1, &tp, &pp, &t), FLOWRT_INVALID_ARGUMENT);
    CHECK_STATUS(flowrt_trainer_create_path_length(init, data, N, 2, &tp, &pp, &t), FLOWRT_SHAPE_MISMATCH);
    CHECK_STATUS(flowrt_trainer_create_path_length(init, data, N, 1, &tp, &pp, NULL), FLOWRT_INVALID_ARGUMENT);
    data[7] = NAN;
    CHECK_STATUS(flowrt_trainer_create_path_length(init, data, N, 1, &tp, &pp, &t), FLOWRT_NON_FINITE);
    data[7] = (float)MU;
    CHECK(t == NULL, "no trainer after failures");

    /* A run: warmup 100, then 4 network updates per schedule update. */
    long warmup = full ? 100 : 10;
    pp.terms = 2; pp.learning_rate = 0.003; pp.warmup_steps = (uint64_t)warmup; pp.network_steps = 4; pp.batch_size = 2048;
    CHECK_STATUS(flowrt_trainer_create_path_length(init, data, N, 1, &tp, &pp, &t), FLOWRT_OK);
    size_t k = 99;
    double alpha[4], beta[4], energy = 0;
    CHECK_STATUS(flowrt_trainer_path_state(t, NULL, NULL, 0, &k, &energy), FLOWRT_INVALID_ARGUMENT);
    CHECK(k == 2, "terms reported with capacity 0: %zu", k);
    CHECK_STATUS(flowrt_trainer_path_state(t, alpha, beta, 4, &k, &energy), FLOWRT_OK);
    CHECK(k == 2 && alpha[0] == 0 && beta[1] == 0 && isnan(energy), "linear start, no estimate in the warmup");
    CHECK_STATUS(flowrt_trainer_path_state(t, alpha, beta, 4, NULL, NULL), FLOWRT_INVALID_ARGUMENT);
    CHECK_STATUS(flowrt_trainer_path_state(NULL, alpha, beta, 4, &k, NULL), FLOWRT_INVALID_ARGUMENT);
    double loss = NAN;
    CHECK_STATUS(flowrt_trainer_step(t, &loss), FLOWRT_OK);
    CHECK(isfinite(loss) && flowrt_trainer_step_count(t) == 1, "one warmup step: loss %f", loss);
    CHECK_STATUS(flowrt_trainer_step(t, NULL), FLOWRT_OK);
    CHECK(flowrt_trainer_step_count(t) == 2, "a step without a loss pointer steps too");
    CHECK_STATUS(flowrt_trainer_fit(t, (uint64_t)(warmup - 2 + steps), count_progress, NULL), FLOWRT_OK);
    CHECK(progress_calls == warmup - 2 + steps, "%ld progress calls", progress_calls);
    CHECK(flowrt_trainer_step_count(t) == (uint64_t)(warmup + 4 * steps), "network updates %llu",
          (unsigned long long)flowrt_trainer_step_count(t));
    CHECK_STATUS(flowrt_trainer_path_state(t, alpha, beta, 4, &k, &energy), FLOWRT_OK);
    CHECK(isfinite(energy) && energy > 0, "kinetic energy estimate %f", energy);
    CHECK(alpha[0] != 0 || beta[0] != 0, "the schedule moved");
    if (full) {
        double learned = path_energy(alpha, beta, k), linear = path_energy(alpha, beta, 0), trig = trig_energy();
        printf("path energy: learned %.4f (a = %.4f %.4f, b = %.4f %.4f), linear %.4f, trig %.4f, W2² %.4f, estimate %.4f\n",
               learned, alpha[0], alpha[1], beta[0], beta[1], linear, trig, MU * MU + (SIGMA - 1) * (SIGMA - 1), energy);
        CHECK(learned < linear && learned < trig, "learned path %f shorter than linear %f and trig %f", learned, linear, trig);
        CHECK(fabs(energy - learned) < 0.25 * learned, "estimate %f near the learned path's energy %f", energy, learned);
    }
    CHECK_STATUS(flowrt_trainer_save_checkpoint(t, "unused.ckpt"), FLOWRT_UNSUPPORTED);
    CHECK_STATUS(flowrt_trainer_set_coupling(t, FLOWRT_COUPLING_EXACT_OT), FLOWRT_UNSUPPORTED);

    /* The trained flow, saved and loaded back. */
    flowrt_flow *flow = NULL, *loaded = NULL, *plain = NULL;
    CHECK_STATUS(flowrt_trainer_flow(NULL, &flow), FLOWRT_INVALID_ARGUMENT);
    CHECK_STATUS(flowrt_trainer_flow(t, NULL), FLOWRT_INVALID_ARGUMENT);
    CHECK_STATUS(flowrt_trainer_flow(t, &flow), FLOWRT_OK);
    double fa[4], fb[4];
    size_t fk = 0;
    CHECK_STATUS(flowrt_flow_fourier_coefficients(flow, fa, fb, 4, &fk), FLOWRT_OK);
    CHECK(fk == 2 && fa[0] == alpha[0] && fa[1] == alpha[1] && fb[0] == beta[0] && fb[1] == beta[1], "flow's coefficients");
    char path[64];
    snprintf(path, sizeof path, "path_length_%d.onnx", (int)getpid());
    CHECK_STATUS(flowrt_flow_save_onnx(flow, path), FLOWRT_OK);
    CHECK_STATUS(flowrt_flow_load_onnx(path, NULL, &loaded), FLOWRT_OK);
    double la[4], lb[4];
    size_t lk = 0;
    CHECK_STATUS(flowrt_flow_fourier_coefficients(loaded, la, lb, 1, &lk), FLOWRT_INVALID_ARGUMENT);
    CHECK(lk == 2, "terms set on a short capacity");
    CHECK_STATUS(flowrt_flow_fourier_coefficients(loaded, la, lb, 4, &lk), FLOWRT_OK);
    CHECK(lk == 2 && la[0] == alpha[0] && la[1] == alpha[1] && lb[0] == beta[0] && lb[1] == beta[1],
          "coefficients round-trip bit for bit");
    enum { M = 50 };
    float x[M];
    double lp0[M], lp1[M];
    for (int i = 0; i < M; i++) x[i] = (float)(-1 + 4.0 * i / (M - 1));
    CHECK_STATUS(flowrt_flow_log_prob(flow, M, x, 1, NULL, lp0, NULL, NULL), FLOWRT_OK);
    CHECK_STATUS(flowrt_flow_log_prob(loaded, M, x, 1, NULL, lp1, NULL, NULL), FLOWRT_OK);
    double worst = 0;
    for (int i = 0; i < M; i++) worst = fmax(worst, fabs(lp0[i] - lp1[i]));
    CHECK(worst < 1e-5, "reloaded log-densities differ by %g", worst);
    float s0[M], s1[M];
    CHECK_STATUS(flowrt_flow_sample(flow, M, 7, NULL, s0, NULL, NULL), FLOWRT_OK);
    CHECK_STATUS(flowrt_flow_sample(loaded, M, 7, NULL, s1, NULL, NULL), FLOWRT_OK);
    CHECK(memcmp(s0, s1, sizeof s0) == 0, "reloaded samples identical");
    double tt[M];
    float sc0[M], sc1[M];
    for (int i = 0; i < M; i++) tt[i] = 0.3;
    CHECK_STATUS(flowrt_flow_score(flow, M, tt, x, sc0), FLOWRT_OK);
    CHECK_STATUS(flowrt_flow_score(loaded, M, tt, x, sc1), FLOWRT_OK);
    CHECK(memcmp(sc0, sc1, sizeof sc0) == 0, "the score uses the reloaded schedule");

    /* A flow without a Fourier schedule reports K = 0; NULLs are refused. */
    flowrt_flow_params fp = flowrt_flow_default_params();
    CHECK_STATUS(flowrt_flow_create(init, &fp, &plain), FLOWRT_OK);
    CHECK_STATUS(flowrt_flow_fourier_coefficients(plain, NULL, NULL, 0, &lk), FLOWRT_OK);
    CHECK(lk == 0, "trig flow has no Fourier terms");
    CHECK_STATUS(flowrt_flow_fourier_coefficients(NULL, NULL, NULL, 0, &lk), FLOWRT_INVALID_ARGUMENT);
    CHECK_STATUS(flowrt_flow_fourier_coefficients(plain, NULL, NULL, 0, NULL), FLOWRT_INVALID_ARGUMENT);
    CHECK_STATUS(flowrt_trainer_path_state(NULL, NULL, NULL, 0, &lk, NULL), FLOWRT_INVALID_ARGUMENT);

    /* Malformed coefficients in a file: the value of flowrt.fourier.alpha
     * (after its key, the value's tag 0x12 and length byte) gets a letter. */
    FILE *f = fopen(path, "rb");
    CHECK(f != NULL, "reopen %s", path);
    if (f) {
        static unsigned char bytes[1 << 20];
        size_t size = fread(bytes, 1, sizeof bytes, f);
        fclose(f);
        const char *key = "flowrt.fourier.alpha";
        unsigned char *hit = NULL;
        for (size_t i = 0; i + strlen(key) + 3 < size && !hit; i++)
            if (memcmp(bytes + i, key, strlen(key)) == 0) hit = bytes + i + strlen(key);
        CHECK(hit != NULL && hit[0] == 0x12, "found the coefficients in the file");
        if (hit && hit[0] == 0x12) {
            hit[2] = 'x';
            f = fopen(path, "wb");
            fwrite(bytes, 1, size, f);
            fclose(f);
            flowrt_flow *broken = NULL;
            CHECK_STATUS(flowrt_flow_load_onnx(path, NULL, &broken), FLOWRT_INVALID_MODEL);
            CHECK(broken == NULL && strstr(flowrt_last_error_message(), "flowrt.fourier.alpha") != NULL &&
                  strstr(flowrt_last_error_message(), "not a number") != NULL, "named error: %s", flowrt_last_error_message());
        }
    }
    unlink(path);

    /* An ordinary trainer's flow: its interpolant, and no path state. */
    flowrt_trainer *ordinary = NULL;
    flowrt_flow *ordinary_flow = NULL;
    tp.interpolant = FLOWRT_INTERPOLANT_LINEAR;
    CHECK_STATUS(flowrt_trainer_create(init, data, N, 1, &tp, &ordinary), FLOWRT_OK);
    CHECK_STATUS(flowrt_trainer_step(ordinary, NULL), FLOWRT_OK);
    CHECK_STATUS(flowrt_trainer_path_state(ordinary, alpha, beta, 4, &k, NULL), FLOWRT_INVALID_ARGUMENT);
    CHECK_STATUS(flowrt_trainer_flow(ordinary, &ordinary_flow), FLOWRT_OK);
    CHECK_STATUS(flowrt_flow_fourier_coefficients(ordinary_flow, NULL, NULL, 0, &lk), FLOWRT_OK);
    CHECK(lk == 0, "linear trainer's flow");
    flowrt_model *m = NULL;
    char *name = NULL;
    CHECK_STATUS(flowrt_flow_model(ordinary_flow, &m), FLOWRT_OK);
    CHECK_STATUS(flowrt_model_metadata(m, "flowrt.interpolant", &name), FLOWRT_OK);
    CHECK(name && strcmp(name, "linear") == 0, "interpolant %s", name ? name : "(null)");
    flowrt_buffer_free(name);
    flowrt_model_free(m);

    flowrt_flow_free(ordinary_flow);
    flowrt_trainer_free(ordinary);
    flowrt_flow_free(plain);
    flowrt_flow_free(loaded);
    flowrt_flow_free(flow);
    flowrt_trainer_free(t);
    flowrt_model_free(init);
    printf("%d passed, %d failed\n", passed, failed);
    return failed != 0;
}
