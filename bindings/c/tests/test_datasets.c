/* C tests of the built-in datasets: sample statistics against the closed
 * forms, log-densities, entropies, and errors. Ends with "N passed, N failed". */
#include "check.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


int main(void) {
    enum { N = 20000 };
    float *x = malloc(sizeof(float) * N * 2);
    double *lp = malloc(sizeof(double) * N), h = 0, entropy = 0, mean = 0;
    size_t dim = 0;
    int i, outside = 0;

    /* Checkerboard: every sample on a square (ρ = 1/32), and the Monte Carlo
     * entropy −mean(log ρ) equals log 32 exactly. */
    CHECK(flowrt_dataset_sample("checkerboard", N, 1, x) == FLOWRT_OK, "sample");
    CHECK(flowrt_dataset_log_prob("checkerboard", N, x, lp) == FLOWRT_OK, "log_prob");
    for (i = 0; i < N; i++) { if (!(lp[i] > -1e9)) outside++; h -= lp[i] / N; }
    CHECK(outside == 0, "%d samples off the squares", outside);
    CHECK(flowrt_dataset_info("checkerboard", &dim, &entropy) == FLOWRT_OK && dim == 2, "info");
    CHECK(fabs(entropy - log(32.0)) < 1e-12 && fabs(h - entropy) < 1e-9, "entropy %g vs MC %g", entropy, h);
    x[0] = 0.5f; x[1] = 0.5f; /* square (2, 2): occupied; (0.5, -0.5) is square (2, 1): empty */
    x[2] = 0.5f; x[3] = -0.5f;
    flowrt_dataset_log_prob("checkerboard", 2, x, lp);
    CHECK(fabs(lp[0] + log(32.0)) < 1e-12 && isinf(lp[1]) && lp[1] < 0, "log-density on/off squares: %g %g", lp[0], lp[1]);

    /* 8 gaussians: the Monte Carlo entropy matches the quadrature value
     * within 4 standard errors. */
    CHECK(flowrt_dataset_sample("8gaussians", N, 2, x) == FLOWRT_OK, "sample");
    flowrt_dataset_log_prob("8gaussians", N, x, lp);
    flowrt_dataset_info("8gaussians", NULL, &entropy);
    h = 0;
    for (i = 0; i < N; i++) h -= lp[i] / N;
    {
        double var = 0, se;
        for (i = 0; i < N; i++) var += (lp[i] + h) * (lp[i] + h) / (N - 1);
        se = sqrt(var / N);
        CHECK(fabs(h - entropy) < 4 * se, "8gaussians entropy %g vs MC %g ± %g", entropy, h, se);
    }
    for (i = 0; i < N; i++) mean += (x[2 * i] + x[2 * i + 1]) / N;
    CHECK(fabs(mean) < 0.1, "8gaussians mean %g", mean);

    /* Same seed, same samples; moons has no density; errors name the problem. */
    {
        float a[8], b[8];
        flowrt_dataset_sample("moons", 4, 9, a);
        flowrt_dataset_sample("moons", 4, 9, b);
        CHECK(memcmp(a, b, sizeof a) == 0, "reproducible");
        CHECK(flowrt_dataset_log_prob("moons", 4, a, lp) == FLOWRT_UNSUPPORTED, "moons density");
        CHECK(flowrt_dataset_info("moons", NULL, &entropy) == FLOWRT_OK && isnan(entropy), "moons entropy NaN");
    }
    CHECK(flowrt_dataset_sample("spirals", 4, 0, x) == FLOWRT_INVALID_ARGUMENT &&
          strstr(flowrt_last_error_message(), "spirals") != NULL, "unknown name: %s", flowrt_last_error_message());
    CHECK(flowrt_dataset_sample(NULL, 4, 0, x) == FLOWRT_INVALID_ARGUMENT, "NULL name");
    CHECK(flowrt_dataset_sample("rings", 0, 0, x) == FLOWRT_OK, "n = 0 is an empty batch");
    CHECK(flowrt_dataset_sample("rings", 4, 0, NULL) == FLOWRT_INVALID_ARGUMENT, "NULL x_out");
    x[0] = NAN;
    CHECK(flowrt_dataset_log_prob("rings", 1, x, lp) == FLOWRT_NON_FINITE, "NaN input");
    free(x);
    free(lp);
    printf("%d passed, %d failed\n", passed, failed);
    return failed == 0 ? 0 : 1;
}
