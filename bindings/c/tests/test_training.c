/* C tests of the training section of flowrt.h: every flowrt_trainer_*
 * function with valid and invalid arguments. Prints one line per failure and
 * ends with "N passed, N failed". */
#define _POSIX_C_SOURCE 200809L
#include "flowrt.h"

#include <math.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "check.h"

static int calls = 0;
static uint64_t last_done = 0, last_total = 0;
static int stop_at_12(void *user, uint64_t done, uint64_t total, double loss) {
    (void)user;
    calls++;
    last_done = done;
    last_total = total;
    CHECK(isfinite(loss), "progress loss %f", loss);
    return done >= 12;
}

int main(void) {
    enum { N = 600, D = 2 };
    static float data[N * D];
    for (int i = 0; i < N * D; i++) data[i] = (float)(2.0 * sin(0.37 * i));
    flowrt_mlp_params mp = flowrt_mlp_default_params();
    mp.width = 32;
    mp.depth = 2;
    flowrt_model *init = NULL;
    CHECK_STATUS(flowrt_model_create_mlp(&mp, &init), FLOWRT_OK);

    flowrt_trainer_params tp = flowrt_trainer_default_params();
    CHECK(tp.struct_size == sizeof(flowrt_trainer_params), "struct_size");
    CHECK(tp.batch_size == 1024 && tp.learning_rate == 1e-3 && tp.ema_decay == 0.999, "defaults");
    tp.batch_size = 64;
    flowrt_trainer *t = NULL;

    /* Invalid arguments. */
    CHECK_STATUS(flowrt_trainer_create(NULL, data, N, D, &tp, &t), FLOWRT_INVALID_ARGUMENT);
    CHECK_STATUS(flowrt_trainer_create(init, NULL, N, D, &tp, &t), FLOWRT_INVALID_ARGUMENT);
    CHECK_STATUS(flowrt_trainer_create(init, data, 0, D, &tp, &t), FLOWRT_INVALID_ARGUMENT);
    CHECK_STATUS(flowrt_trainer_create(init, data, N, 3, &tp, &t), FLOWRT_SHAPE_MISMATCH);
    CHECK_STATUS(flowrt_trainer_create(init, data, N, D, &tp, NULL), FLOWRT_INVALID_ARGUMENT);
    flowrt_trainer_params bad = tp;
    bad.lr_schedule = FLOWRT_LR_COSINE; /* total_steps missing */
    CHECK_STATUS(flowrt_trainer_create(init, data, N, D, &bad, &t), FLOWRT_INVALID_ARGUMENT);
    CHECK(strstr(flowrt_last_error_message(), "total_steps") != NULL, "message names total_steps");
    bad = tp; bad.optimizer = 7;
    CHECK_STATUS(flowrt_trainer_create(init, data, N, D, &bad, &t), FLOWRT_INVALID_ARGUMENT);
    bad = tp; bad.ema_decay = 1.0;
    CHECK_STATUS(flowrt_trainer_create(init, data, N, D, &bad, &t), FLOWRT_INVALID_ARGUMENT);
    bad = tp; bad.struct_size = 3;
    CHECK_STATUS(flowrt_trainer_create(init, data, N, D, &bad, &t), FLOWRT_INVALID_ARGUMENT);
    data[5] = NAN;
    CHECK_STATUS(flowrt_trainer_create(init, data, N, D, &tp, &t), FLOWRT_NON_FINITE);
    data[5] = 0.5f;
    CHECK(t == NULL, "no trainer after failures");

    /* A run: step, fit with a cancelling callback, losses, snapshot. */
    tp.lr_schedule = FLOWRT_LR_COSINE;
    tp.total_steps = 40;
    tp.warmup_steps = 3;
    tp.grad_clip = 1.0;
    tp.optimizer = FLOWRT_OPTIMIZER_ADAMW;
    tp.weight_decay = 0.01;
    tp.threads = 2;
    CHECK_STATUS(flowrt_trainer_create(init, data, N, D, &tp, &t), FLOWRT_OK);
    double a = 0, b = 0, c = 0, d = 0;
    CHECK_STATUS(flowrt_trainer_loss(t, &a, &b, &c, &d), FLOWRT_OK);
    CHECK(isnan(a) && isnan(b), "no losses before a step");
    double loss = NAN;
    CHECK_STATUS(flowrt_trainer_step(t, &loss), FLOWRT_OK);
    CHECK(isfinite(loss), "step loss %f", loss);
    CHECK_STATUS(flowrt_trainer_step(t, NULL), FLOWRT_OK);
    CHECK_STATUS(flowrt_trainer_fit(t, 30, stop_at_12, NULL), FLOWRT_CANCELLED);
    CHECK(calls == 12 && last_done == 12 && last_total == 30, "callback %d calls, done %llu of %llu", calls,
          (unsigned long long)last_done, (unsigned long long)last_total);
    CHECK(flowrt_trainer_step_count(t) == 14, "step count %llu", (unsigned long long)flowrt_trainer_step_count(t));
    CHECK_STATUS(flowrt_trainer_loss(t, &a, &b, &c, &d), FLOWRT_OK);
    CHECK(isfinite(a) && isfinite(b) && isfinite(c) && isfinite(d), "losses %f %f %f %f", a, b, c, d);
    CHECK(c > a && d > b, "regression form exceeds G by E|dI/dt|^2");
    CHECK_STATUS(flowrt_trainer_loss(t, NULL, NULL, NULL, NULL), FLOWRT_OK);

    flowrt_model *snap = NULL;
    CHECK_STATUS(flowrt_trainer_model(t, &snap), FLOWRT_OK);
    CHECK(flowrt_model_dim(snap) == D, "snapshot dim");
    double tt[1] = {0.5};
    float x[2] = {0.1f, 0.2f}, v1[2], v2[2];
    CHECK_STATUS(flowrt_model_velocity(snap, 1, tt, x, v1), FLOWRT_OK);
    CHECK_STATUS(flowrt_trainer_fit(t, 5, NULL, NULL), FLOWRT_OK);
    CHECK_STATUS(flowrt_model_velocity(snap, 1, tt, x, v2), FLOWRT_OK);
    CHECK(v1[0] == v2[0] && v1[1] == v2[1], "a snapshot does not change while training continues");

    /* Checkpoint round trip: resume gives the uninterrupted weights. */
    char path[128];
    snprintf(path, sizeof path, "/tmp/flowrt-test-training-%d.ckpt", (int)getpid());
    flowrt_trainer *u = NULL;
    CHECK_STATUS(flowrt_trainer_create(init, data, N, D, &tp, &u), FLOWRT_OK);
    CHECK_STATUS(flowrt_trainer_fit(u, 10, NULL, NULL), FLOWRT_OK);
    CHECK_STATUS(flowrt_trainer_save_checkpoint(u, path), FLOWRT_OK);
    CHECK_STATUS(flowrt_trainer_fit(u, 10, NULL, NULL), FLOWRT_OK);
    flowrt_trainer *r = NULL;
    CHECK_STATUS(flowrt_trainer_create(init, data, N, D, &tp, &r), FLOWRT_OK);
    CHECK_STATUS(flowrt_trainer_load_checkpoint(r, path), FLOWRT_OK);
    CHECK(flowrt_trainer_step_count(r) == 10, "restored step count");
    CHECK_STATUS(flowrt_trainer_fit(r, 10, NULL, NULL), FLOWRT_OK);
    flowrt_model *mu = NULL, *mr = NULL;
    CHECK_STATUS(flowrt_trainer_model(u, &mu), FLOWRT_OK);
    CHECK_STATUS(flowrt_trainer_model(r, &mr), FLOWRT_OK);
    CHECK_STATUS(flowrt_model_velocity(mu, 1, tt, x, v1), FLOWRT_OK);
    CHECK_STATUS(flowrt_model_velocity(mr, 1, tt, x, v2), FLOWRT_OK);
    CHECK(v1[0] == v2[0] && v1[1] == v2[1], "resumed run is bit-identical (%g %g vs %g %g)", v1[0], v1[1], v2[0], v2[1]);
    CHECK_STATUS(flowrt_trainer_load_checkpoint(r, "/nonexistent/x.ckpt"), FLOWRT_IO_ERROR);
    CHECK_STATUS(flowrt_trainer_load_checkpoint(r, NULL), FLOWRT_INVALID_ARGUMENT);
    CHECK_STATUS(flowrt_trainer_save_checkpoint(NULL, path), FLOWRT_INVALID_ARGUMENT);
    FILE *f = fopen(path, "r+b");
    if (f) { fseek(f, 200, SEEK_SET); fputc(0x5A, f); fclose(f); }
    CHECK_STATUS(flowrt_trainer_load_checkpoint(r, path), FLOWRT_INVALID_MODEL);
    CHECK(flowrt_trainer_step_count(r) == 20, "a failed load changes nothing");
    remove(path);

    CHECK_STATUS(flowrt_trainer_step(NULL, NULL), FLOWRT_INVALID_ARGUMENT);
    CHECK_STATUS(flowrt_trainer_fit(NULL, 1, NULL, NULL), FLOWRT_INVALID_ARGUMENT);
    flowrt_model *none = (flowrt_model *)1;
    CHECK_STATUS(flowrt_trainer_model(NULL, &none), FLOWRT_INVALID_ARGUMENT);
    CHECK(none == NULL, "out is NULL after a failure");
    CHECK(flowrt_trainer_step_count(NULL) == 0, "NULL step count");

    flowrt_trainer_free(t);
    flowrt_trainer_free(u);
    flowrt_trainer_free(r);
    flowrt_trainer_free(NULL);
    CHECK_STATUS(flowrt_model_velocity(snap, 1, tt, x, v1), FLOWRT_OK); /* outlives its trainer */
    flowrt_model_free(snap);
    flowrt_model_free(mu);
    flowrt_model_free(mr);
    flowrt_model_free(init);
    printf("%d passed, %d failed\n", passed, failed);
    return failed != 0;
}
