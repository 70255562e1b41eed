/* C tests of host-supplied interpolant schedules (FLOWRT_INTERPOLANT_CUSTOM
 * with a flowrt_schedule_fn) in trainers and flows: a callback computing
 * the trig schedule with the library's formulas trains bit-identically to
 * FLOWRT_INTERPOLANT_TRIG and gives the same scores and SDE samples (both
 * call the same libm sin/cos; training rounds the coefficients to float, and
 * a relative change of 1e-7 in one of them already breaks the equality); bad
 * callbacks are rejected at create; failures at run time become
 * FLOWRT_NON_FINITE with a message and leave the weights alone; old-size
 * params structs still work; a saved custom flow records "custom" and
 * loads without its schedule. Ends with "N passed, N failed". */
#define _POSIX_C_SOURCE 200809L
#include "check.h"

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define N 400
#define D 2

static const double HALF_PI = 0.5 * 3.14159265358979323846;

/* Calls of trig_schedule; it runs on trainer worker threads, hence atomic. */
static long trig_calls = 0;

/* α = cos(πt/2), β = sin(πt/2) with exactly the library's operations
 * (TrigSchedule.swift), so the coefficients agree bit for bit. */
static int trig_schedule(void *user, double t, double c[4]) {
    double s, co;
    (void)user;
    __atomic_fetch_add(&trig_calls, 1, __ATOMIC_RELAXED);
    if (t == 1) { c[0] = 0; c[1] = 1; c[2] = -HALF_PI; c[3] = 0; return 0; }
    s = sin(HALF_PI * t);
    co = cos(HALF_PI * t);
    c[0] = co; c[1] = s; c[2] = -HALF_PI * s; c[3] = HALF_PI * co;
    return 0;
}

/* α = 1 − t, β = 0.9 t: β(1) = 0.9 violates the boundary conditions. */
static int short_schedule(void *user, double t, double c[4]) {
    (void)user;
    c[0] = 1 - t; c[1] = 0.9 * t; c[2] = -1; c[3] = 0.9;
    return 0;
}

/* The linear schedule until *(int *)user is set, then failure (mode 1:
 * return 7; mode 2: return 0 but leave β' unwritten; mode 3: write +∞). */
static int failing_schedule(void *user, double t, double c[4]) {
    int mode = *(const volatile int *)user;
    if (mode == 1) return 7;
    c[0] = 1 - t; c[1] = t; c[2] = -1;
    if (mode == 2) return 0;
    c[3] = mode == 3 ? INFINITY : 1;
    return 0;
}

/* Velocities of a model at a few fixed points, for bitwise comparisons. */
static void probe(const flowrt_model *m, float v[8]) {
    static const double t[4] = {0.1, 0.35, 0.6, 0.95};
    static const float x[8] = {0.3f, -1.2f, 1.5f, 0.4f, -0.7f, -0.2f, 2.0f, 1.1f};
    CHECK_STATUS(flowrt_model_velocity(m, 4, t, x, v), FLOWRT_OK);
}

/* The probe velocities of a trainer's current EMA snapshot. */
static void probe_trainer(const flowrt_trainer *t, float v[8]) {
    flowrt_model *m = NULL;
    CHECK_STATUS(flowrt_trainer_model(t, &m), FLOWRT_OK);
    if (m) probe(m, v);
    flowrt_model_free(m);
}

static int same(const float *a, const float *b, size_t n) { return memcmp(a, b, n * sizeof *a) == 0; }

/* max |a − b|: an ONNX round trip keeps velocities within 1e-5, not bitwise. */
static double max_diff(const float *a, const float *b, size_t n) {
    double m = 0;
    size_t i;
    for (i = 0; i < n; i++) m = fabs((double)a[i] - b[i]) > m ? fabs((double)a[i] - b[i]) : m;
    return m;
}

/* Trains `steps` steps with `params` from `init` and returns the EMA
 * snapshot's probe velocities and the final minibatch loss. */
static void train(const flowrt_model *init, const float *data, const flowrt_trainer_params *params, int steps,
                  float v[8], double *loss) {
    flowrt_trainer *t = NULL;
    CHECK_STATUS(flowrt_trainer_create(init, data, N, D, params, &t), FLOWRT_OK);
    CHECK_STATUS(flowrt_trainer_fit(t, (uint64_t)steps, NULL, NULL), FLOWRT_OK);
    CHECK_STATUS(flowrt_trainer_loss(t, loss, NULL, NULL, NULL), FLOWRT_OK);
    probe_trainer(t, v);
    flowrt_trainer_free(t);
}

int main(void) {
    static float data[N * D];
    flowrt_mlp_params mp = flowrt_mlp_default_params();
    flowrt_model *init = NULL;
    flowrt_trainer_params tp = flowrt_trainer_default_params(), bad;
    flowrt_trainer *t = NULL;
    flowrt_flow_params fp = flowrt_flow_default_params(), fbad;
    flowrt_flow *trig = NULL, *custom = NULL, *f = NULL;
    float v_trig[8], v_custom[8], v_before[8], v_after[8];
    double loss_trig = 0, loss_custom = 0, loss = 0;
    int i, mode = 0;

    for (i = 0; i < N * D; i++) data[i] = (float)(2.0 * sin(0.37 * i) + (i % 2 ? 0.5 : -0.5));
    mp.dim = D; mp.width = 32; mp.depth = 2; mp.seed = 3;
    CHECK_STATUS(flowrt_model_create_mlp(&mp, &init), FLOWRT_OK);

    /* Defaults and the header's promises about the appended fields. */
    CHECK(tp.schedule_fn == NULL && tp.schedule_user_data == NULL, "trainer schedule_fn defaults to NULL");
    CHECK(fp.schedule_fn == NULL && fp.schedule_user_data == NULL, "flow schedule_fn defaults to NULL");
    CHECK(FLOWRT_INTERPOLANT_CUSTOM == 2, "CUSTOM = 2");

    /* 1. A trig callback trains bit-identically to FLOWRT_INTERPOLANT_TRIG
     * (same seed, two worker threads calling the callback). */
    tp.batch_size = 64; tp.seed = 11; tp.threads = 2; tp.learning_rate = 3e-3; tp.ema_decay = 0.9;
    train(init, data, &tp, 12, v_trig, &loss_trig);
    tp.interpolant = FLOWRT_INTERPOLANT_CUSTOM;
    tp.schedule_fn = trig_schedule;
    train(init, data, &tp, 12, v_custom, &loss_custom);
    CHECK(trig_calls >= 12 * 64, "the callback was used (%ld calls)", trig_calls);
    CHECK(loss_trig == loss_custom, "same loss: %.17g vs %.17g", loss_trig, loss_custom);
    CHECK(same(v_trig, v_custom, 8), "same weights: v[0] %.9g vs %.9g", v_trig[0], v_custom[0]);

    /* 2. Rejected at create: boundary violation, CUSTOM without a function,
     * a function with another interpolant. */
    bad = tp; bad.schedule_fn = short_schedule;
    CHECK_STATUS(flowrt_trainer_create(init, data, N, D, &bad, &t), FLOWRT_INVALID_ARGUMENT);
    CHECK(strstr(flowrt_last_error_message(), "schedule_fn") && strstr(flowrt_last_error_message(), "β(1)=0.9"),
          "boundary message: %s", flowrt_last_error_message());
    bad = tp; bad.schedule_fn = NULL;
    CHECK_STATUS(flowrt_trainer_create(init, data, N, D, &bad, &t), FLOWRT_INVALID_ARGUMENT);
    CHECK(strstr(flowrt_last_error_message(), "schedule_fn") != NULL, "NULL message: %s", flowrt_last_error_message());
    bad = tp; bad.interpolant = FLOWRT_INTERPOLANT_LINEAR;
    CHECK_STATUS(flowrt_trainer_create(init, data, N, D, &bad, &t), FLOWRT_INVALID_ARGUMENT);
    CHECK(strstr(flowrt_last_error_message(), "FLOWRT_INTERPOLANT_CUSTOM") != NULL, "stray fn message: %s",
          flowrt_last_error_message());
    bad = tp; bad.schedule_fn = failing_schedule; bad.schedule_user_data = &mode; mode = 1;
    CHECK_STATUS(flowrt_trainer_create(init, data, N, D, &bad, &t), FLOWRT_INVALID_ARGUMENT); /* α(0) = NaN */
    CHECK(t == NULL, "no trainer after failures");
    fbad = fp; fbad.interpolant = FLOWRT_INTERPOLANT_CUSTOM;
    CHECK_STATUS(flowrt_flow_create(init, &fbad, &f), FLOWRT_INVALID_ARGUMENT);
    fbad.schedule_fn = short_schedule;
    CHECK_STATUS(flowrt_flow_create(init, &fbad, &f), FLOWRT_INVALID_ARGUMENT);
    fbad = fp; fbad.schedule_fn = trig_schedule; /* interpolant TRIG */
    CHECK_STATUS(flowrt_flow_create(init, &fbad, &f), FLOWRT_INVALID_ARGUMENT);
    CHECK(f == NULL, "no flow after failures");

    /* 3. Failures mid-training: NON_FINITE naming the schedule and t, the
     * step not applied, the trainer still usable. */
    bad = tp; bad.schedule_fn = failing_schedule; bad.schedule_user_data = &mode; mode = 0;
    CHECK_STATUS(flowrt_trainer_create(init, data, N, D, &bad, &t), FLOWRT_OK);
    CHECK_STATUS(flowrt_trainer_step(t, &loss), FLOWRT_OK);
    probe_trainer(t, v_before);
    for (mode = 1; mode <= 3; mode++) {
        CHECK_STATUS(flowrt_trainer_step(t, &loss), FLOWRT_NON_FINITE);
        CHECK(strstr(flowrt_last_error_message(), "schedule 'custom' is not finite at t = ") != NULL,
              "mode %d message: %s", mode, flowrt_last_error_message());
        CHECK_STATUS(flowrt_trainer_fit(t, 3, NULL, NULL), FLOWRT_NON_FINITE);
    }
    CHECK(strstr(flowrt_last_error_message(), "β' = inf") != NULL, "values named: %s", flowrt_last_error_message());
    CHECK(flowrt_trainer_step_count(t) == 1, "failed steps are not counted (%llu)",
          (unsigned long long)flowrt_trainer_step_count(t));
    probe_trainer(t, v_after);
    CHECK(same(v_before, v_after, 8), "failed steps leave the weights unchanged");
    mode = 0;
    CHECK_STATUS(flowrt_trainer_fit(t, 2, NULL, NULL), FLOWRT_OK);
    CHECK(flowrt_trainer_step_count(t) == 3, "usable after a failure");
    flowrt_trainer_free(t);
    t = NULL;

    /* 4. Old-size structs (a program built before schedule_fn existed):
     * accepted, and the bytes past struct_size are neither read nor written. */
    {
        flowrt_trainer_params old;
        flowrt_flow_params oldf;
        size_t tsize = offsetof(flowrt_trainer_params, time_beta_b) + sizeof(double);
        size_t fsize = offsetof(flowrt_flow_params, base) + sizeof(int32_t);
        CHECK(fsize == 12, "old flowrt_flow_params size %zu", fsize);
        memset(&old, 0xAB, sizeof old);
        old.struct_size = (uint32_t)tsize;
        CHECK_STATUS(flowrt_trainer_params_init(&old), FLOWRT_OK);
        CHECK(old.struct_size == tsize && old.batch_size == 1024, "old trainer params filled");
        CHECK(((const unsigned char *)&old)[tsize] == 0xAB && ((const unsigned char *)&old)[sizeof old - 1] == 0xAB,
              "init wrote past an old struct_size");
        old.batch_size = 64; /* schedule_fn holds 0xABAB…: garbage that must be ignored */
        CHECK_STATUS(flowrt_trainer_create(init, data, N, D, &old, &t), FLOWRT_OK);
        CHECK_STATUS(flowrt_trainer_step(t, NULL), FLOWRT_OK);
        flowrt_trainer_free(t);
        t = NULL;
        old.struct_size = (uint32_t)tsize - 1;
        CHECK_STATUS(flowrt_trainer_create(init, data, N, D, &old, &t), FLOWRT_INVALID_ARGUMENT);
        /* A size between two versions would cut schedule_fn in half. */
        old.struct_size = (uint32_t)(offsetof(flowrt_trainer_params, schedule_fn) + 4);
        CHECK_STATUS(flowrt_trainer_create(init, data, N, D, &old, &t), FLOWRT_INVALID_ARGUMENT);
        CHECK_STATUS(flowrt_trainer_params_init(&old), FLOWRT_INVALID_ARGUMENT);

        memset(&oldf, 0xAB, sizeof oldf);
        oldf.struct_size = (uint32_t)fsize;
        CHECK_STATUS(flowrt_flow_params_init(&oldf), FLOWRT_OK);
        CHECK(oldf.interpolant == FLOWRT_INTERPOLANT_TRIG && ((const unsigned char *)&oldf)[fsize] == 0xAB,
              "old flow params filled, nothing past them");
        CHECK_STATUS(flowrt_flow_create(init, &oldf, &f), FLOWRT_OK);
        flowrt_flow_free(f);
        f = NULL;
        oldf.struct_size = (uint32_t)(offsetof(flowrt_flow_params, schedule_fn) + 4);
        CHECK_STATUS(flowrt_flow_create(init, &oldf, &f), FLOWRT_INVALID_ARGUMENT);
        CHECK(strstr(flowrt_last_error_message(), "struct_size") != NULL, "message names struct_size: %s", flowrt_last_error_message());
    }

    /* 5. Flows: the trig callback gives the TRIG flow's scores and SDE
     * samples bit for bit; a failing callback is NON_FINITE there too;
     * sampling never calls the schedule. */
    CHECK_STATUS(flowrt_flow_create(init, &fp, &trig), FLOWRT_OK);
    fbad = fp; fbad.interpolant = FLOWRT_INTERPOLANT_CUSTOM; fbad.schedule_fn = trig_schedule;
    CHECK_STATUS(flowrt_flow_create(init, &fbad, &custom), FLOWRT_OK);
    {
        double ts[4] = {0.05, 0.3, 0.5, 0.9};
        float x[8] = {0.3f, -1.2f, 1.5f, 0.4f, -0.7f, -0.2f, 2.0f, 1.1f}, s1[8], s2[8];
        float a[16 * D], b[16 * D];
        flowrt_sde_params sde = flowrt_sde_default_params();
        long before;
        sde.steps = 20;
        CHECK_STATUS(flowrt_flow_score(trig, 4, ts, x, s1), FLOWRT_OK);
        CHECK_STATUS(flowrt_flow_score(custom, 4, ts, x, s2), FLOWRT_OK);
        CHECK(same(s1, s2, 8), "same scores");
        CHECK_STATUS(flowrt_flow_sample_sde(trig, &sde, 5, 0, 16, a), FLOWRT_OK);
        CHECK_STATUS(flowrt_flow_sample_sde(custom, &sde, 5, 0, 16, b), FLOWRT_OK);
        CHECK(same(a, b, 16 * D), "same SDE samples");
        before = trig_calls;
        CHECK_STATUS(flowrt_flow_sample(custom, 16, 5, NULL, a, NULL, NULL), FLOWRT_OK);
        CHECK(trig_calls == before, "sampling does not call the schedule");

        fbad.schedule_fn = failing_schedule; fbad.schedule_user_data = &mode; mode = 0;
        CHECK_STATUS(flowrt_flow_create(init, &fbad, &f), FLOWRT_OK);
        mode = 1;
        CHECK_STATUS(flowrt_flow_score(f, 4, ts, x, s1), FLOWRT_NON_FINITE);
        CHECK(strstr(flowrt_last_error_message(), "host callback") != NULL, "score message: %s",
              flowrt_last_error_message());
        CHECK_STATUS(flowrt_flow_sample_sde(f, &sde, 5, 0, 16, a), FLOWRT_NON_FINITE);
        mode = 0;
        CHECK_STATUS(flowrt_flow_score(f, 4, ts, x, s1), FLOWRT_OK);
        flowrt_flow_free(f);
        f = NULL;
    }

    /* 6. Save and load: "custom" is recorded; the loaded flow samples as
     * the original, refuses the score with UNSUPPORTED, saves "custom"
     * again; rebuilt with the callback it scores as the original. */
    {
        char path[96], path2[96];
        char *value = NULL;
        flowrt_model *m = NULL, *back = NULL;
        flowrt_flow *loaded = NULL, *rebuilt = NULL;
        double ts[2] = {0.2, 0.7};
        float x[4] = {0.5f, -0.5f, 1.0f, 0.25f}, s1[4], s2[4];
        float a[8 * D], b[8 * D];
        snprintf(path, sizeof path, "/tmp/flowrt-test-schedule-%d.onnx", (int)getpid());
        snprintf(path2, sizeof path2, "/tmp/flowrt-test-schedule-%d-2.onnx", (int)getpid());
        CHECK_STATUS(flowrt_flow_save_onnx(custom, path), FLOWRT_OK);
        CHECK_STATUS(flowrt_flow_model(custom, &m), FLOWRT_OK);
        CHECK_STATUS(flowrt_model_metadata(m, "flowrt.interpolant", &value), FLOWRT_OK);
        CHECK(value && strcmp(value, "custom") == 0, "recorded interpolant %s", value ? value : "(null)");
        flowrt_buffer_free(value);
        value = NULL;
        flowrt_model_free(m);

        CHECK_STATUS(flowrt_flow_load_onnx(path, NULL, &loaded), FLOWRT_OK);
        CHECK_STATUS(flowrt_flow_sample(custom, 8, 9, NULL, a, NULL, NULL), FLOWRT_OK);
        CHECK_STATUS(flowrt_flow_sample(loaded, 8, 9, NULL, b, NULL, NULL), FLOWRT_OK);
        CHECK(max_diff(a, b, 8 * D) < 1e-4, "the loaded flow samples as the original (%g)", max_diff(a, b, 8 * D));
        CHECK_STATUS(flowrt_flow_score(loaded, 2, ts, x, s1), FLOWRT_UNSUPPORTED);
        CHECK(strstr(flowrt_last_error_message(), "FLOWRT_INTERPOLANT_CUSTOM") != NULL, "load message: %s",
              flowrt_last_error_message());
        CHECK_STATUS(flowrt_flow_sample_sde(loaded, NULL, 1, 0, 8, a), FLOWRT_UNSUPPORTED);
        CHECK_STATUS(flowrt_flow_save_onnx(loaded, path2), FLOWRT_OK);
        CHECK_STATUS(flowrt_model_load_onnx(path2, NULL, &back), FLOWRT_OK);
        CHECK_STATUS(flowrt_model_metadata(back, "flowrt.interpolant", &value), FLOWRT_OK);
        CHECK(value && strcmp(value, "custom") == 0, "re-saved interpolant %s", value ? value : "(null)");
        flowrt_buffer_free(value);

        fbad.schedule_fn = trig_schedule; fbad.schedule_user_data = NULL;
        CHECK_STATUS(flowrt_flow_create(back, &fbad, &rebuilt), FLOWRT_OK);
        CHECK_STATUS(flowrt_flow_score(custom, 2, ts, x, s1), FLOWRT_OK);
        CHECK_STATUS(flowrt_flow_score(rebuilt, 2, ts, x, s2), FLOWRT_OK);
        CHECK(max_diff(s1, s2, 4) < 1e-4, "the rebuilt flow scores as the original (%g)", max_diff(s1, s2, 4));
        flowrt_flow_free(rebuilt);
        flowrt_flow_free(loaded);
        flowrt_model_free(back);
        remove(path);
        remove(path2);
    }

    flowrt_flow_free(trig);
    flowrt_flow_free(custom);
    flowrt_model_free(init);
    printf("%d passed, %d failed\n", passed, failed);
    return failed != 0;
}
