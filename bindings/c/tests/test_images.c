/* C tests of the native U-Net image velocity (issue 14):
 * flowrt_unet_params defaults (init and the header's static inline),
 * flowrt_model_create_unet building the same network as the Swift
 * VelocityUNet builder (reference velocities recorded from it, also checked
 * by Tests/FlowRuntimeTests/UNetReferenceTests.swift and
 * bindings/python/tests/test_unet.py), determinism per seed, the ONNX
 * export reloaded with the same output, class-conditional models, and
 * rejected configurations. Ends with "N passed, N failed". */
#define _POSIX_C_SOURCE 200809L
#include "check.h"

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define H 8
#define W 8
#define D (H * W)
#define N 2

/* The reference network: 1×8×8, 8 model channels, levels {1, 2},
 * attention at 4×4, 2 heads, 4 groups, seed 7. */
static flowrt_unet_params small_params(void) {
    flowrt_unet_params p = flowrt_unet_default_params();
    p.channels = 1; p.height = H; p.width = W; p.model_channels = 8;
    p.channel_mult[0] = 1; p.channel_mult[1] = 2; p.channel_mult_count = 2;
    p.attention[0] = 4; p.attention_count = 1;
    p.heads = 2; p.groups = 4; p.seed = 7;
    return p;
}

/* x[i] = sin(0.37 i) over the batch, t = {0.25, 0.75}. */
static void reference_input(double t[N], float x[N * D]) {
    int i;
    t[0] = 0.25; t[1] = 0.75;
    for (i = 0; i < N * D; i++) x[i] = (float)sin(0.37 * i);
}

/* Recorded from VelocityUNet (Swift) with the same configuration and input. */
#define REF_PARAMETERS 44969
static const double REF_SUM = -23.628059870;
static const double REF_ABS_SUM = 48.409095897;
static const double REF_V[4] = {-0.0625377595, 0.3249340951, 0.0183506627, -0.1670029312}; /* v[0], v[D-1], v[D], v[2D-1] */

static double max_abs_diff(const float *a, const float *b, size_t n) {
    double m = 0;
    size_t i;
    for (i = 0; i < n; i++) { double d = fabs((double)a[i] - (double)b[i]); if (d > m) m = d; }
    return m;
}

static void test_defaults(void) {
    flowrt_unet_params p = flowrt_unet_default_params(), q;
    flowrt_model *m = NULL;
    size_t shape[3] = {0, 0, 0}, rank = 0;
    CHECK(p.struct_size == sizeof p, "struct_size %u", p.struct_size);
    CHECK(p.channels == 1 && p.height == 28 && p.width == 28 && p.model_channels == 32,
          "defaults %u %u %u %u", p.channels, p.height, p.width, p.model_channels);
    CHECK(p.channel_mult_count == 3 && p.channel_mult[0] == 1 && p.channel_mult[1] == 2 && p.channel_mult[2] == 2 &&
          p.channel_mult[3] == 0, "channel_mult defaults");
    CHECK(p.attention_count == 1 && p.attention[0] == 14, "attention defaults");
    CHECK(p.res_blocks == 1 && p.heads == 1 && p.groups == 32 && p.num_classes == 0 && p.reserved == 0 && p.seed == 0,
          "other defaults");
    memset(&q, 0xAB, sizeof q);
    q.struct_size = sizeof q;
    CHECK_STATUS(flowrt_unet_params_init(&q), FLOWRT_OK);
    CHECK(memcmp(&p, &q, sizeof p) == 0, "init fills every field");
    CHECK_STATUS(flowrt_unet_params_init(NULL), FLOWRT_INVALID_ARGUMENT);
    CHECK_STATUS(flowrt_model_create_unet(&p, &m), FLOWRT_OK);
    CHECK(flowrt_model_dim(m) == 784, "default dim %zu", flowrt_model_dim(m));
    CHECK_STATUS(flowrt_model_shape(m, shape, 3, &rank), FLOWRT_OK);
    CHECK(rank == 3 && shape[0] == 1 && shape[1] == 28 && shape[2] == 28, "shape [%zu, %zu, %zu]", shape[0], shape[1], shape[2]);
    CHECK(flowrt_model_context_dim(m) == 0, "unconditional");
    flowrt_model_free(m);
}

static void test_reference_velocities(void) {
    flowrt_unet_params p = small_params();
    flowrt_model *m = NULL, *again = NULL, *other = NULL, *reloaded = NULL;
    double t[N], sum = 0, abs_sum = 0;
    float x[N * D], v[N * D], v2[N * D], v3[N * D];
    void *bytes = NULL;
    size_t size = 0, i;
    reference_input(t, x);
    CHECK_STATUS(flowrt_model_create_unet(&p, &m), FLOWRT_OK);
    if (!m) return;
    CHECK(flowrt_model_parameter_count(m) == REF_PARAMETERS, "parameters %zu, Swift builder %d",
          flowrt_model_parameter_count(m), REF_PARAMETERS);
    CHECK_STATUS(flowrt_model_velocity(m, N, t, x, v), FLOWRT_OK);
    for (i = 0; i < N * D; i++) { sum += v[i]; abs_sum += fabs(v[i]); }
    CHECK(fabs(sum - REF_SUM) < 1e-4 * (1 + fabs(REF_SUM)), "sum %.8f, Swift builder %.8f", sum, REF_SUM);
    CHECK(fabs(abs_sum - REF_ABS_SUM) < 1e-4 * REF_ABS_SUM, "abs sum %.8f, Swift builder %.8f", abs_sum, REF_ABS_SUM);
    CHECK(fabs(v[0] - REF_V[0]) < 1e-5 && fabs(v[D - 1] - REF_V[1]) < 1e-5 && fabs(v[D] - REF_V[2]) < 1e-5 &&
          fabs(v[2 * D - 1] - REF_V[3]) < 1e-5, "v %.7f %.7f %.7f %.7f, Swift builder %.7f %.7f %.7f %.7f",
          v[0], v[D - 1], v[D], v[2 * D - 1], REF_V[0], REF_V[1], REF_V[2], REF_V[3]);

    CHECK_STATUS(flowrt_model_create_unet(&p, &again), FLOWRT_OK);
    CHECK_STATUS(flowrt_model_velocity(again, N, t, x, v2), FLOWRT_OK);
    CHECK(memcmp(v, v2, sizeof v) == 0, "same seed, same velocities bit for bit");
    p.seed = 8;
    CHECK_STATUS(flowrt_model_create_unet(&p, &other), FLOWRT_OK);
    CHECK_STATUS(flowrt_model_velocity(other, N, t, x, v3), FLOWRT_OK);
    CHECK(max_abs_diff(v, v3, N * D) > 1e-3, "another seed, other weights");

    CHECK_STATUS(flowrt_model_export_onnx_buffer(m, &bytes, &size), FLOWRT_OK);
    CHECK_STATUS(flowrt_model_load_onnx_buffer(bytes, size, NULL, &reloaded), FLOWRT_OK);
    if (reloaded) {
        size_t shape[3] = {0, 0, 0}, rank = 0;
        CHECK_STATUS(flowrt_model_velocity(reloaded, N, t, x, v2), FLOWRT_OK);
        CHECK(max_abs_diff(v, v2, N * D) < 1e-5, "ONNX round trip differs by %g", max_abs_diff(v, v2, N * D));
        CHECK_STATUS(flowrt_model_shape(reloaded, shape, 3, &rank), FLOWRT_OK);
        CHECK(rank == 3 && shape[0] == 1 && shape[1] == H && shape[2] == W, "reloaded shape rank %zu", rank);
    }
    flowrt_buffer_free(bytes);
    flowrt_model_free(m);
    flowrt_model_free(again);
    flowrt_model_free(other);
    flowrt_model_free(reloaded);
}

static void test_conditional(void) {
    flowrt_unet_params p = small_params();
    flowrt_model *m = NULL;
    double t[N];
    float x[N * D], v0[N * D], v1[N * D], labels0[N] = {0, 0}, labels1[N] = {2, 2};
    reference_input(t, x);
    p.num_classes = 3;
    CHECK_STATUS(flowrt_model_create_unet(&p, &m), FLOWRT_OK);
    if (!m) return;
    CHECK(flowrt_model_context_dim(m) == 1 && flowrt_model_num_classes(m) == 3, "label-conditional: context %zu classes %zu",
          flowrt_model_context_dim(m), flowrt_model_num_classes(m));
    CHECK_STATUS(flowrt_model_velocity_conditional(m, N, t, x, labels0, v0), FLOWRT_OK);
    CHECK_STATUS(flowrt_model_velocity_conditional(m, N, t, x, labels1, v1), FLOWRT_OK);
    CHECK(max_abs_diff(v0, v1, N * D) > 1e-4, "the label changes the velocity");
    labels1[0] = 3;
    CHECK_STATUS(flowrt_model_velocity_conditional(m, N, t, x, labels1, v1), FLOWRT_INVALID_ARGUMENT);
    flowrt_model_free(m);
}

static void expect_rejected(flowrt_unet_params p, const char *what) {
    flowrt_model *m = (flowrt_model *)&p;  /* must be reset to NULL */
    flowrt_status s = flowrt_model_create_unet(&p, &m);
    CHECK(s == FLOWRT_INVALID_ARGUMENT && m == NULL, "%s: status %d (%s)", what, (int)s, flowrt_last_error_message());
    if (s == FLOWRT_OK) flowrt_model_free(m);
}

static void test_rejected(void) {
    flowrt_unet_params p;
    flowrt_model *m = NULL;
    CHECK_STATUS(flowrt_model_create_unet(NULL, &m), FLOWRT_INVALID_ARGUMENT);
    p = small_params();
    CHECK_STATUS(flowrt_model_create_unet(&p, NULL), FLOWRT_INVALID_ARGUMENT);
    p = small_params(); p.channel_mult_count = 0; expect_rejected(p, "no levels");
    p = small_params(); p.channel_mult_count = 5; expect_rejected(p, "5 levels");
    p = small_params(); p.attention_count = 5; expect_rejected(p, "5 attention resolutions");
    p = small_params(); p.reserved = 1; expect_rejected(p, "reserved");
    p = small_params(); p.model_channels = 7; expect_rejected(p, "odd model channels");
    p = small_params(); p.attention[0] = 5; expect_rejected(p, "attention at no level's height");
    p = small_params(); p.height = 9; expect_rejected(p, "height not divisible by 2");
    p = small_params(); p.heads = 3; expect_rejected(p, "heads not dividing channels");
    p = small_params(); p.channels = 0; expect_rejected(p, "no channels");
    p = small_params(); p.struct_size = 8; expect_rejected(p, "unknown struct_size");
}

/* flowrt_trainer_create_images: 8-bit images train the U-Net (held-out
 * loss falls), the result does not depend on the thread count, and fresh
 * per-sample noise differs from training on a fixed dequantized copy. */
#define NI 48
static void make_pixels(uint8_t px[NI * D]) {
    uint32_t s = 12345u;
    for (int i = 0; i < NI; i++)
        for (int r = 0; r < H; r++)
            for (int c = 0; c < W; c++) {
                s = s * 1664525u + 1013904223u;
                int on = ((r / 2 + c / 2 + i) % 2) == 0;       /* a 2×2 checkerboard, phase per image */
                px[i * D + r * W + c] = (uint8_t)(on ? 200 + (s >> 29) : 30 + (s >> 29));
            }
}

static int train_images(const uint8_t *px, uint32_t threads, float v[N * D], double *first, double *last) {
    flowrt_unet_params up = small_params();
    flowrt_model *m = NULL, *trained = NULL;
    flowrt_trainer *tr = NULL;
    flowrt_trainer_params p = flowrt_trainer_default_params();
    double t[N], train = 0, held = 0, reg = 0, hreg = 0;
    float x[N * D];
    int ok = 0;
    p.batch_size = 8; p.learning_rate = 2e-3; p.warmup_steps = 5; p.total_steps = 60;
    p.heldout_fraction = 0.25; p.threads = threads; p.seed = 3; p.ema_decay = 0.9;
    if (flowrt_model_create_unet(&up, &m) != FLOWRT_OK) return 0;
    if (flowrt_trainer_create_images(m, px, NI, D, &p, &tr) == FLOWRT_OK
        && flowrt_trainer_fit(tr, 1, NULL, NULL) == FLOWRT_OK
        && flowrt_trainer_loss(tr, &train, &held, &reg, &hreg) == FLOWRT_OK) {
        *first = hreg;
        if (flowrt_trainer_fit(tr, 59, NULL, NULL) == FLOWRT_OK
            && flowrt_trainer_loss(tr, &train, &held, &reg, &hreg) == FLOWRT_OK
            && flowrt_trainer_model(tr, &trained) == FLOWRT_OK) {
            *last = hreg;
            reference_input(t, x);
            ok = flowrt_model_velocity(trained, N, t, x, v) == FLOWRT_OK;
        }
    }
    if (!ok) fprintf(stderr, "train_images: %s\n", flowrt_last_error_message());
    flowrt_model_free(trained);
    flowrt_trainer_free(tr);
    flowrt_model_free(m);
    return ok;
}

static void test_train_images(void) {
    static uint8_t px[NI * D];
    float v1[N * D], v2[N * D];
    double first1 = 0, last1 = 0, first2 = 0, last2 = 0;
    make_pixels(px);
    CHECK(train_images(px, 1, v1, &first1, &last1), "training on 8-bit images (1 thread)");
    CHECK(last1 < 0.9 * first1, "held-out regression loss falls: %.4f after 1 step, %.4f after 60", first1, last1);
    CHECK(train_images(px, 2, v2, &first2, &last2), "training on 8-bit images (2 threads)");
    CHECK(last1 == last2 && max_abs_diff(v1, v2, N * D) == 0,
          "thread count changes nothing: held-out %.9g vs %.9g, max |dv| %g", last1, last2, max_abs_diff(v1, v2, N * D));

    /* Rejections: each names its problem. */
    flowrt_unet_params up = small_params();
    flowrt_model *m = NULL;
    flowrt_trainer *tr = NULL;
    flowrt_trainer_params p = flowrt_trainer_default_params();
    CHECK_STATUS(flowrt_model_create_unet(&up, &m), FLOWRT_OK);
    CHECK_STATUS(flowrt_trainer_create_images(m, NULL, NI, D, &p, &tr), FLOWRT_INVALID_ARGUMENT);
    CHECK_STATUS(flowrt_trainer_create_images(m, px, NI, D - 1, &p, &tr), FLOWRT_SHAPE_MISMATCH);
    CHECK_STATUS(flowrt_trainer_create_images(m, px, 0, D, &p, &tr), FLOWRT_INVALID_ARGUMENT);
    CHECK_STATUS(flowrt_trainer_create_images(m, px, NI, D, &p, NULL), FLOWRT_INVALID_ARGUMENT);
    p.heldout_fraction = 0.99;
    CHECK_STATUS(flowrt_trainer_create_images(m, px, 1, D, &p, &tr), FLOWRT_OK);  /* floor(0.99) = 0 held out */
    flowrt_trainer_free(tr); tr = NULL;
    flowrt_model_free(m); m = NULL;
    up.num_classes = 3;
    CHECK_STATUS(flowrt_model_create_unet(&up, &m), FLOWRT_OK);
    p = flowrt_trainer_default_params();
    CHECK_STATUS(flowrt_trainer_create_images(m, px, NI, D, &p, &tr), FLOWRT_UNSUPPORTED);
    CHECK(tr == NULL, "no trainer on failure");
    flowrt_model_free(m);
}

int main(void) {
    test_defaults();
    test_reference_velocities();
    test_conditional();
    test_rejected();
    test_train_images();
    printf("%d passed, %d failed\n", passed, failed);
    return failed == 0 ? 0 : 1;
}
