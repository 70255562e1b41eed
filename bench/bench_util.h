// Helpers the C benchmarks share (included as "../bench_util.h" from
// bench/<name>/, so no build line needs an extra -I). Define
// _POSIX_C_SOURCE before any include when compiling with -std=c99.
#ifndef FLOWRT_BENCH_UTIL_H
#define FLOWRT_BENCH_UTIL_H

#include <stdlib.h>
#include <time.h>

/// Monotonic seconds.
static inline double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/// `count` floats, 64-byte aligned, filled with a fixed pattern in
/// [−0.5, 0.5) (aborts when out of memory).
static inline float *fbuf(size_t count) {
    void *p = NULL;
    if (posix_memalign(&p, 64, (count ? count : 1) * sizeof(float))) abort();
    float *f = p;
    for (size_t i = 0; i < count; i++) f[i] = (float)((i * 2654435761u) % 1000) / 1000.0f - 0.5f;
    return f;
}

#endif
