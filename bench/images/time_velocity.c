/* Times flowrt_model_velocity on an ONNX image network: best of N calls.
 * Build: cc -O2 -I include bench/images/time_velocity.c -L .build/release -lflowrt -o /tmp/time_velocity
 * Run:   FLOWRT_NUM_THREADS=1 LD_LIBRARY_PATH=.build/release /tmp/time_velocity MODEL.onnx BATCH [CALLS] [BUDGET_S]
 * Prints: model, batch, best and median wall ms, best process-CPU ms per call, calls, a checksum. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "flowrt.h"

static double clock_s(clockid_t id) {
    struct timespec ts;
    clock_gettime(id, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}
static double now(void) { return clock_s(CLOCK_MONOTONIC); }
static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    if (argc < 3) { fprintf(stderr, "usage: %s model.onnx batch [calls] [budget_s]\n", argv[0]); return 2; }
    size_t n = (size_t)atol(argv[2]);
    int calls = argc > 3 ? atoi(argv[3]) : 20;
    double budget = argc > 4 ? atof(argv[4]) : 3.0;
    flowrt_model *m = NULL;
    if (flowrt_model_load_onnx(argv[1], NULL, &m) != FLOWRT_OK) {
        fprintf(stderr, "load: %s\n", flowrt_last_error_message());
        return 1;
    }
    size_t d = flowrt_model_dim(m);
    float *x = malloc(sizeof(float) * n * d), *v = malloc(sizeof(float) * n * d);
    double *t = malloc(sizeof(double) * n);
    srand(1);
    for (size_t i = 0; i < n * d; i++) x[i] = (float)rand() / RAND_MAX * 2 - 1;
    for (size_t i = 0; i < n; i++) t[i] = (double)(i + 1) / (n + 1);
    if (flowrt_model_velocity(m, n, t, x, v) != FLOWRT_OK) {  /* warm-up */
        fprintf(stderr, "velocity: %s\n", flowrt_last_error_message());
        return 1;
    }
    double *ms = malloc(sizeof(double) * calls), *cpu = malloc(sizeof(double) * calls);
    int done = 0;
    double start = now();
    while (done < calls && (done < 3 || now() - start < budget)) {
        double a = now(), ca = clock_s(CLOCK_PROCESS_CPUTIME_ID);
        flowrt_model_velocity(m, n, t, x, v);
        cpu[done] = 1e3 * (clock_s(CLOCK_PROCESS_CPUTIME_ID) - ca);
        ms[done++] = 1e3 * (now() - a);
    }
    qsort(ms, done, sizeof *ms, cmp);
    qsort(cpu, done, sizeof *cpu, cmp);
    double sum = 0;
    for (size_t i = 0; i < n * d; i++) sum += v[i];
    const char *name = strrchr(argv[1], '/');
    printf("%s batch %zu best %.3f ms median %.3f ms cpu-best %.3f ms (%d calls) checksum %.9e\n",
           name ? name + 1 : argv[1], n, ms[0], ms[done / 2], cpu[0], done, sum);
    flowrt_model_free(m);
    return 0;
}
