/* C tests of the ONNX and flow-file functions: valid and invalid arguments,
 * round trips, metadata, and a failed save that must keep the previous file.
 * The fixtures folder comes from FLOWRT_FIXTURES (default
 * ../shared/fixtures/onnx, relative to the repository). Ends with
 * "N passed, N failed". */
#define _POSIX_C_SOURCE 200809L
#include "check.h"

#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>


static long file_bytes(const char *path, unsigned char **out) {
    FILE *f = fopen(path, "rb");
    long n;
    if (!f) return -1;
    fseek(f, 0, SEEK_END);
    n = ftell(f);
    rewind(f);
    *out = malloc((size_t)n);
    if (fread(*out, 1, (size_t)n, f) != (size_t)n) n = -1;
    fclose(f);
    return n;
}

static float max_diff(const flowrt_model *a, const flowrt_model *b) {
    double t[3] = {0.1, 0.5, 0.9};
    float x[6] = {0.3f, -1.2f, 2.0f, 0.1f, -0.4f, 0.8f}, va[6], vb[6], m = 0;
    int i;
    if (flowrt_model_velocity(a, 3, t, x, va) != FLOWRT_OK || flowrt_model_velocity(b, 3, t, x, vb) != FLOWRT_OK)
        return INFINITY;
    for (i = 0; i < 6; i++) m = fmaxf(m, fabsf(va[i] - vb[i]));
    return m;
}

int main(void) {
    char path[4096], tmpdir[] = "/tmp/flowrt-onnx-XXXXXX", out_path[4200];
    flowrt_model *m = NULL, *back = NULL;
    flowrt_flow *flow = NULL, *flow2 = NULL;
    flowrt_onnx_options opt = flowrt_onnx_default_options();
    void *bytes = NULL;
    size_t size = 0;
    char *s = NULL;
    unsigned char *before = NULL, *after = NULL;
    long nb, na;
    const char *fixtures = getenv("FLOWRT_FIXTURES") ? getenv("FLOWRT_FIXTURES") : "../shared/fixtures/onnx";

    if (!mkdtemp(tmpdir)) { perror("mkdtemp"); return 2; }
    snprintf(path, sizeof path, "%s/mlp_silu__dynamo__opdefault.onnx", fixtures);

    /* Load (external data beside the file), names, metadata. */
    CHECK(flowrt_model_load_onnx(path, NULL, &m) == FLOWRT_OK && m && flowrt_model_dim(m) == 2, "load fixture");
    CHECK(flowrt_model_input_name(m, 0, &s) == FLOWRT_OK && strcmp(s, "x") == 0, "input 0 name");
    flowrt_buffer_free(s);
    CHECK(flowrt_model_input_name(m, 1, &s) == FLOWRT_OK && strcmp(s, "t") == 0, "input 1 name");
    flowrt_buffer_free(s);
    CHECK(flowrt_model_input_name(m, 2, &s) == FLOWRT_INVALID_ARGUMENT, "input index 2");
    CHECK(flowrt_model_output_name(m, &s) == FLOWRT_OK && s && strlen(s) > 0, "output name");
    flowrt_buffer_free(s);
    CHECK(flowrt_model_metadata(m, "flowrt.no-such-key", &s) == FLOWRT_OK && s == NULL, "absent key gives NULL");
    CHECK(flowrt_model_metadata(m, NULL, &s) == FLOWRT_INVALID_ARGUMENT, "NULL key");
    CHECK(flowrt_model_metadata_key(m, flowrt_model_metadata_count(m), &s) == FLOWRT_INVALID_ARGUMENT, "key index");
    CHECK(flowrt_model_metadata_count(NULL) == 0, "count(NULL)");

    /* Export to memory, load back: same velocities. */
    CHECK(flowrt_model_export_onnx_buffer(m, &bytes, &size) == FLOWRT_OK && bytes && size > 1000, "export buffer");
    CHECK(flowrt_model_load_onnx_buffer(bytes, size, NULL, &back) == FLOWRT_OK, "load buffer");
    CHECK(max_diff(m, back) < 1e-6f, "buffer round trip differs by %g", max_diff(m, back));
    CHECK(flowrt_model_metadata(back, "flowrt.time_convention", &s) == FLOWRT_OK && s != NULL, "time convention recorded");
    flowrt_buffer_free(s);
    flowrt_model_free(back);
    back = NULL;

    /* Bad inputs: NULLs, sizes, garbage, truncation, missing file, bad options. */
    CHECK(flowrt_model_load_onnx(NULL, NULL, &back) == FLOWRT_INVALID_ARGUMENT, "NULL path");
    CHECK(flowrt_model_load_onnx(path, NULL, NULL) == FLOWRT_INVALID_ARGUMENT, "NULL out");
    CHECK(flowrt_model_load_onnx_buffer(NULL, 10, NULL, &back) == FLOWRT_INVALID_ARGUMENT, "NULL data");
    CHECK(flowrt_model_load_onnx_buffer(bytes, 0, NULL, &back) == FLOWRT_INVALID_ARGUMENT, "size 0");
    CHECK(flowrt_model_load_onnx_buffer(bytes, size / 2, NULL, &back) == FLOWRT_INVALID_MODEL && back == NULL,
          "truncated buffer");
    CHECK(flowrt_model_load_onnx_buffer("\x08\x07garbage\xff\xff", 11, NULL, &back) == FLOWRT_INVALID_MODEL, "garbage");
    snprintf(out_path, sizeof out_path, "%s/missing.onnx", tmpdir);
    CHECK(flowrt_model_load_onnx(out_path, NULL, &back) == FLOWRT_IO_ERROR, "missing file");
    opt.struct_size = 1;
    CHECK(flowrt_model_load_onnx(path, &opt, &back) == FLOWRT_INVALID_ARGUMENT, "bad struct_size");
    opt = flowrt_onnx_default_options();
    opt.x_name = "no_such_input";
    CHECK(flowrt_model_load_onnx(path, &opt, &back) == FLOWRT_INVALID_ARGUMENT &&
          strstr(flowrt_last_error_message(), "no_such_input"), "unknown input name");
    CHECK(flowrt_model_save_onnx(NULL, out_path) == FLOWRT_INVALID_ARGUMENT, "save NULL model");
    CHECK(flowrt_model_save_onnx(m, NULL) == FLOWRT_INVALID_ARGUMENT, "save NULL path");
    CHECK(flowrt_model_export_onnx_buffer(m, NULL, &size) == FLOWRT_INVALID_ARGUMENT, "export NULL bytes");
    flowrt_buffer_free(bytes);

    /* Flow files: save with the interpolant, load back, same samples. */
    {
        flowrt_flow_params fp = flowrt_flow_default_params();
        float xa[8], xb[8];
        fp.interpolant = FLOWRT_INTERPOLANT_LINEAR;
        CHECK(flowrt_flow_create(m, &fp, &flow) == FLOWRT_OK, "flow");
        snprintf(out_path, sizeof out_path, "%s/flow.onnx", tmpdir);
        CHECK(flowrt_flow_save_onnx(flow, out_path) == FLOWRT_OK, "flow save");
        CHECK(flowrt_flow_load_onnx(out_path, NULL, &flow2) == FLOWRT_OK, "flow load");
        CHECK(flowrt_flow_model(flow2, &back) == FLOWRT_OK &&
              flowrt_model_metadata(back, "flowrt.interpolant", &s) == FLOWRT_OK && s && strcmp(s, "linear") == 0,
              "interpolant recorded");
        flowrt_buffer_free(s);
        CHECK(flowrt_flow_sample(flow, 4, 3, NULL, xa, NULL, NULL) == FLOWRT_OK &&
              flowrt_flow_sample(flow2, 4, 3, NULL, xb, NULL, NULL) == FLOWRT_OK && memcmp(xa, xb, sizeof xa) == 0,
              "same samples after reload");
        CHECK(flowrt_flow_save_onnx(NULL, out_path) == FLOWRT_INVALID_ARGUMENT, "flow save NULL");
        {
            flowrt_flow *unused = NULL; /* a failed load sets *out to NULL: keep flow2 */
            CHECK(flowrt_flow_load_onnx(NULL, NULL, &unused) == FLOWRT_INVALID_ARGUMENT && unused == NULL,
                  "flow load NULL");
        }
    }

    /* A failed save keeps the previous file: the file-size limit stops the
     * write of the temporary file (works as root too). */
    nb = file_bytes(out_path, &before);
    {
        struct rlimit old, small;
        flowrt_mlp_params mp = flowrt_mlp_default_params();
        flowrt_model *other = NULL;
        flowrt_status st;
        mp.seed = 99;
        flowrt_model_create_mlp(&mp, &other);
        signal(SIGXFSZ, SIG_IGN);
        getrlimit(RLIMIT_FSIZE, &old);
        small = old;
        small.rlim_cur = 4096;
        setrlimit(RLIMIT_FSIZE, &small);
        st = flowrt_model_save_onnx(other, out_path);
        setrlimit(RLIMIT_FSIZE, &old);
        CHECK(st == FLOWRT_IO_ERROR, "save over the size limit returned %d", (int)st);
        flowrt_model_free(other);
    }
    na = file_bytes(out_path, &after);
    CHECK(nb > 4096 && na == nb && memcmp(before, after, (size_t)nb) == 0, "previous file intact (%ld vs %ld bytes)", nb, na);
    {
        char cmd[4400];
        snprintf(cmd, sizeof cmd, "test $(ls -A %s | wc -l) -eq 1", tmpdir);
        CHECK(system(cmd) == 0, "no temporary file left behind");
        snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
        if (system(cmd) != 0) printf("could not remove %s\n", tmpdir);
    }
    free(before);
    free(after);
    flowrt_model_free(back);
    flowrt_flow_free(flow);
    flowrt_flow_free(flow2);
    flowrt_model_free(m);
    printf("%d passed, %d failed\n", passed, failed);
    return failed == 0 ? 0 : 1;
}
