/* C test suite for libflowrt: every exported function with valid and
 * invalid arguments, checking values, status codes and messages.
 * Prints one line per failure and ends with "N passed, N failed". */
#include "check.h"

#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The last error message contains `needle`. */
static void check_message(const char *needle, int line) {
    const char *m = flowrt_last_error_message();
    if (m && strstr(m, needle)) { passed++; }
    else { failed++; printf("FAIL line %d: message '%s' does not mention '%s'\n", line, m ? m : "(null)", needle); }
}
#define CHECK_MESSAGE(needle) check_message(needle, __LINE__)

static flowrt_model *small_model(uint32_t dim, int32_t activation, uint64_t seed) {
    flowrt_mlp_params p = flowrt_mlp_default_params();
    flowrt_model *m = NULL;
    p.dim = dim;
    p.width = 32;
    p.depth = 2;
    p.activation = activation;
    p.seed = seed;
    if (flowrt_model_create_mlp(&p, &m) != FLOWRT_OK) {
        printf("could not create a model: %s\n", flowrt_last_error_message());
        exit(2);
    }
    return m;
}

static void test_version_and_status(void) {
    CHECK(flowrt_version_number() == FLOWRT_VERSION_NUMBER, "version %u vs header %d",
          (unsigned)flowrt_version_number(), FLOWRT_VERSION_NUMBER);
    CHECK(strcmp(flowrt_version_string(), FLOWRT_VERSION_STRING) == 0, "version string %s", flowrt_version_string());
    CHECK(strcmp(flowrt_status_string(FLOWRT_OK), "ok") == 0, "status string of OK");
    CHECK(strcmp(flowrt_status_string(FLOWRT_INVALID_ARGUMENT), "invalid argument") == 0, "status string");
    CHECK(strcmp(flowrt_status_string((flowrt_status)999), "unknown status") == 0, "unknown status");
    CHECK(flowrt_last_error_message() != NULL, "last error never NULL");
    flowrt_buffer_free(NULL);
    flowrt_model_free(NULL);
    passed++;
}

static void test_create_errors(void) {
    flowrt_mlp_params p = flowrt_mlp_default_params();
    flowrt_model *m = (flowrt_model *)&p; /* must be reset to NULL on failure */
    CHECK(p.struct_size == sizeof(flowrt_mlp_params), "default struct_size");
    CHECK(p.dim == 2 && p.depth == 3 && p.width == 256, "defaults 2/3/256");
    CHECK_STATUS(flowrt_model_create_mlp(NULL, &m), FLOWRT_INVALID_ARGUMENT);
    CHECK_MESSAGE("params");
    CHECK_STATUS(flowrt_model_create_mlp(&p, NULL), FLOWRT_INVALID_ARGUMENT);
    CHECK_MESSAGE("out");
    p.struct_size = 3;
    CHECK_STATUS(flowrt_model_create_mlp(&p, &m), FLOWRT_INVALID_ARGUMENT);
    CHECK_MESSAGE("struct_size");
    CHECK(m == NULL, "out reset to NULL on failure");
    p = flowrt_mlp_default_params();
    p.dim = 0;
    CHECK_STATUS(flowrt_model_create_mlp(&p, &m), FLOWRT_INVALID_ARGUMENT);
    CHECK_MESSAGE("dim");
    p = flowrt_mlp_default_params();
    p.activation = 77;
    CHECK_STATUS(flowrt_model_create_mlp(&p, &m), FLOWRT_INVALID_ARGUMENT);
    CHECK_MESSAGE("activation");
    p = flowrt_mlp_default_params();
    p.width = 0;
    CHECK_STATUS(flowrt_model_create_mlp(&p, &m), FLOWRT_INVALID_ARGUMENT);
    p = flowrt_mlp_default_params();
    p.time_encoding = 9;
    CHECK_STATUS(flowrt_model_create_mlp(&p, &m), FLOWRT_INVALID_ARGUMENT);
    CHECK_MESSAGE("time_encoding");
}

static void test_velocity(void) {
    enum { N = 5, D = 3 };
    flowrt_model *m = small_model(D, FLOWRT_ACT_SILU, 7), *m2 = small_model(D, FLOWRT_ACT_SILU, 7);
    double t[N];
    float x[N * D], v[N * D], v2[N * D], v1[D];
    int i, j;
    float maxdiff = 0;
    for (i = 0; i < N; i++) t[i] = 0.1 + 0.2 * i;
    for (i = 0; i < N * D; i++) x[i] = (float)sin(1.7 * i);
    CHECK(flowrt_model_dim(m) == D, "dim");
    CHECK(flowrt_model_dim(NULL) == 0, "dim(NULL)");
    CHECK(flowrt_model_parameter_count(m) == (size_t)((D + 1) * 32 + 32 + 32 * 32 + 32 + 32 * D + D),
          "parameter count %zu", flowrt_model_parameter_count(m));
    CHECK_STATUS(flowrt_model_velocity(m, N, t, x, v), FLOWRT_OK);
    CHECK_STATUS(flowrt_model_velocity(m2, N, t, x, v2), FLOWRT_OK);
    CHECK(memcmp(v, v2, sizeof v) == 0, "same seed, same velocities");
    /* A sample alone gives what it gives inside the batch. */
    for (i = 0; i < N; i++) {
        CHECK_STATUS(flowrt_model_velocity(m, 1, &t[i], &x[i * D], v1), FLOWRT_OK);
        for (j = 0; j < D; j++) maxdiff = fmaxf(maxdiff, fabsf(v1[j] - v[i * D + j]));
    }
    CHECK(maxdiff < 1e-6f, "single vs batched evaluation differ by %g", maxdiff);

    /* Errors: NULLs, zero n, non-finite inputs, each named. */
    CHECK_STATUS(flowrt_model_velocity(NULL, N, t, x, v), FLOWRT_INVALID_ARGUMENT);
    CHECK_MESSAGE("model");
    CHECK_STATUS(flowrt_model_velocity(m, 0, t, x, v), FLOWRT_OK); /* an empty batch */
    CHECK_STATUS(flowrt_model_velocity(m, (size_t)-1, t, x, v), FLOWRT_INVALID_ARGUMENT);
    CHECK_MESSAGE("18446744073709551615");
    CHECK_STATUS(flowrt_model_velocity(m, N, NULL, x, v), FLOWRT_INVALID_ARGUMENT);
    CHECK_MESSAGE("t is NULL");
    CHECK_STATUS(flowrt_model_velocity(m, N, t, NULL, v), FLOWRT_INVALID_ARGUMENT);
    CHECK_MESSAGE("x is NULL");
    CHECK_STATUS(flowrt_model_velocity(m, N, t, x, NULL), FLOWRT_INVALID_ARGUMENT);
    CHECK_MESSAGE("v is NULL");
    CHECK_STATUS(flowrt_model_velocity(m, (size_t)-1, t, x, v), FLOWRT_INVALID_ARGUMENT);
    x[4] = NAN;
    CHECK_STATUS(flowrt_model_velocity(m, N, t, x, v), FLOWRT_NON_FINITE);
    CHECK_MESSAGE("x[4]");
    x[4] = 0.5f;
    t[2] = INFINITY;
    CHECK_STATUS(flowrt_model_velocity(m, N, t, x, v), FLOWRT_NON_FINITE);
    CHECK_MESSAGE("t[2]");
    flowrt_model_free(m);
    flowrt_model_free(m2);
}

/* The exact divergence against the trace of a central-difference Jacobian
 * (step 1e-3 in float: agreement within 2e-3 relative). */
static void test_divergence(void) {
    enum { N = 4, D = 4 };
    int acts[3] = {FLOWRT_ACT_SILU, FLOWRT_ACT_TANH, FLOWRT_ACT_GELU};
    int a, i, j;
    for (a = 0; a < 3; a++) {
        flowrt_model *m = small_model(D, acts[a], 3);
        double t[N], div[N];
        float x[N * D], v[N * D], xp[N * D], vp[N * D], vm[N * D];
        double worst = 0;
        const float h = 1e-3f;
        for (i = 0; i < N; i++) t[i] = 0.2 * i + 0.05;
        for (i = 0; i < N * D; i++) x[i] = (float)cos(0.9 * i);
        CHECK_STATUS(flowrt_model_divergence(m, N, t, x, v, div), FLOWRT_OK);
        CHECK_STATUS(flowrt_model_divergence(m, N, t, x, NULL, div), FLOWRT_OK);
        for (i = 0; i < N; i++) {
            double tr = 0;
            for (j = 0; j < D; j++) {
                memcpy(xp, x, sizeof x);
                xp[i * D + j] += h;
                flowrt_model_velocity(m, N, t, xp, vp);
                xp[i * D + j] -= 2 * h;
                flowrt_model_velocity(m, N, t, xp, vm);
                tr += ((double)vp[i * D + j] - vm[i * D + j]) / (2.0 * h);
            }
            worst = fmax(worst, fabs(tr - div[i]) / fmax(1.0, fabs(tr)));
        }
        CHECK(worst < 2e-3, "activation %d: divergence vs FD trace off by %g", acts[a], worst);
        CHECK_STATUS(flowrt_model_divergence(m, N, t, x, v, NULL), FLOWRT_INVALID_ARGUMENT);
        CHECK_MESSAGE("div");
        flowrt_model_free(m);
    }
}

/* Defaults are filled only up to the caller's struct_size, so an older
 * caller's smaller struct is never overrun (the by-value default functions
 * are header-only for the same reason). */
static void test_params_init(void) {
    struct { flowrt_solver_params p; unsigned char guard[64]; } s;
    flowrt_solver_params d = flowrt_solver_default_params();
    size_t old_size = offsetof(flowrt_solver_params, max_step); /* before max_step was appended */
    memset(&s, 0xAB, sizeof s);
    s.p.struct_size = (uint32_t)old_size;
    CHECK_STATUS(flowrt_solver_params_init(&s.p), FLOWRT_OK);
    CHECK(s.p.struct_size == old_size && s.p.rtol == 1e-5 && s.p.max_steps == 10000, "old-size struct filled");
    CHECK(((unsigned char *)&s.p)[old_size] == 0xAB && s.guard[0] == 0xAB, "nothing written past struct_size");
    CHECK(d.struct_size == sizeof d && d.max_step == 0 && d.method == FLOWRT_SOLVER_DOPRI5, "inline defaults");
    CHECK_STATUS(flowrt_solver_params_init(NULL), FLOWRT_INVALID_ARGUMENT);
    s.p.struct_size = sizeof s.p + 8; /* a newer header than this library */
    CHECK_STATUS(flowrt_solver_params_init(&s.p), FLOWRT_INVALID_ARGUMENT);
    CHECK_MESSAGE("struct_size");
    s.p.struct_size = 2;
    CHECK_STATUS(flowrt_mlp_params_init((flowrt_mlp_params *)&s.p), FLOWRT_INVALID_ARGUMENT);
}

int main(void) {
    test_version_and_status();
    test_params_init();
    test_create_errors();
    test_velocity();
    test_divergence();
    printf("%d passed, %d failed\n", passed, failed);
    return failed == 0 ? 0 : 1;
}
