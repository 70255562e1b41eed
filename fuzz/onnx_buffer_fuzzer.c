/* libFuzzer harness over flowrt_model_load_onnx_buffer: any bytes must give
 * FLOWRT_OK or an error status with a message, never a crash, leak or hang.
 * A model that loads is also exported and evaluated once at batch 2. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "flowrt.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    flowrt_model *model = NULL;
    if (size == 0) return 0;
    flowrt_status s = flowrt_model_load_onnx_buffer(data, size, NULL, &model);
    if (s != FLOWRT_OK) {
        if (model != NULL || flowrt_last_error_message()[0] == '\0') abort();
        return 0;
    }
    size_t dim = flowrt_model_dim(model);
    if (dim > 0 && dim <= 4096) {
        float *x = calloc(2 * dim, sizeof(float)), *v = calloc(2 * dim, sizeof(float));
        double t[2] = {0.25, 0.75};
        if (x && v) {
            for (size_t i = 0; i < 2 * dim; i++) x[i] = (float)(i % 7) * 0.1f;
            (void)flowrt_model_velocity(model, 2, t, x, v);
        }
        free(x);
        free(v);
    }
    void *bytes = NULL;
    size_t n = 0;
    if (flowrt_model_export_onnx_buffer(model, &bytes, &n) == FLOWRT_OK) {
        flowrt_model *again = NULL;
        if (flowrt_model_load_onnx_buffer(bytes, n, NULL, &again) != FLOWRT_OK) abort();
        flowrt_model_free(again);
    }
    flowrt_buffer_free(bytes);
    flowrt_model_free(model);
    return 0;
}
