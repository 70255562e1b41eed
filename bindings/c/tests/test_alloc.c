/* Allocation test: after a first call, repeated evaluations of the same batch
 * size allocate nothing. This executable defines malloc & co. (forwarding to
 * glibc's __libc_* entry points and counting), which interposes them for the
 * whole process, libflowrt.so and the Swift runtime inside it included.
 * Not run under valgrind or ASan (they replace the allocator themselves).
 * Ends with "N passed, N failed". */
#define _GNU_SOURCE
#include "check.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);

static volatile long allocations = 0;

void *malloc(size_t n) { allocations++; return __libc_malloc(n); }
void *calloc(size_t a, size_t b) { allocations++; return __libc_calloc(a, b); }
void *realloc(void *p, size_t n) { allocations++; return __libc_realloc(p, n); }
void *memalign(size_t a, size_t n) { allocations++; return __libc_memalign(a, n); }
void *aligned_alloc(size_t a, size_t n) { allocations++; return __libc_memalign(a, n); }
int posix_memalign(void **p, size_t a, size_t n) {
    allocations++;
    *p = __libc_memalign(a, n);
    return *p ? 0 : 12; /* ENOMEM */
}

int main(void) {
    static double t[256];
    static float x[256 * 2], v[256 * 2];
    static double div[256];
    int sizes[3] = {1, 64, 256}, k, i;
    long before;
    flowrt_model *m = NULL;
    flowrt_mlp_params p = flowrt_mlp_default_params();
    if (flowrt_model_create_mlp(&p, &m) != FLOWRT_OK) { printf("%s\n", flowrt_last_error_message()); return 2; }
    for (i = 0; i < 256; i++) { t[i] = i / 256.0; x[2 * i] = 0.1f * (float)(i % 7); x[2 * i + 1] = -0.2f; }
    for (k = 0; k < 3; k++) {
        flowrt_model_velocity(m, (size_t)sizes[k], t, x, v); /* first call: workspace grows */
        before = allocations;
        for (i = 0; i < 1000; i++) flowrt_model_velocity(m, (size_t)sizes[k], t, x, v);
        CHECK(allocations == before, "batch %d: %ld allocations in 1000 velocity calls after the first",
              sizes[k], allocations - before);
    }
    flowrt_model_divergence(m, 64, t, x, NULL, div);
    before = allocations;
    for (i = 0; i < 100; i++) flowrt_model_divergence(m, 64, t, x, v, div);
    CHECK(allocations == before, "%ld allocations in 100 divergence calls after the first", allocations - before);
    flowrt_model_free(m);
    printf("%d passed, %d failed\n", passed, failed);
    return failed == 0 ? 0 : 1;
}
