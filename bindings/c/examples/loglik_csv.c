/* Log-likelihood of the rows of a CSV file under a flow saved as ONNX.
 *
 * usage: loglik_csv FLOW.onnx DATA.csv     (rows of dim numbers; a header
 * line that does not parse as numbers is skipped)
 * prints the log-density of each row, then the mean on stderr. */
#include <flowrt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Reads rows of `d` numbers; returns the row count (0 on error). */
static size_t read_csv(const char *path, size_t d, float **out) {
    FILE *f = fopen(path, "r");
    char line[8192];
    size_t n = 0, cap = 1024;
    float *x = malloc(sizeof(float) * cap * d);
    if (!f || !x) { if (f) fclose(f); free(x); return 0; }
    while (fgets(line, sizeof line, f)) {
        char *p = line, *end;
        size_t j;
        if (n == cap) {
            float *bigger = realloc(x, sizeof(float) * (cap *= 2) * d);
            if (!bigger) { free(x); fclose(f); return 0; }
            x = bigger;
        }
        for (j = 0; j < d; j++) {
            x[n * d + j] = strtof(p, &end);
            if (end == p) break;
            p = end;
            while (*p == ',' || *p == ' ' || *p == '\t') p++;
        }
        if (j == d) n++;  /* skip headers and short lines */
    }
    fclose(f);
    *out = x;
    return n;
}

int main(int argc, char **argv) {
    flowrt_flow *flow = NULL;
    float *x = NULL;
    double *lp = NULL, mean = 0;
    size_t n, i;
    int rc = 1;
    if (argc < 3) { fprintf(stderr, "usage: %s FLOW.onnx DATA.csv\n", argv[0]); return 2; }
    if (flowrt_flow_load_onnx(argv[1], NULL, &flow) != FLOWRT_OK) {
        fprintf(stderr, "error: %s\n", flowrt_last_error_message());
        return 1;
    }
    n = read_csv(argv[2], flowrt_flow_dim(flow), &x);
    if (n == 0) { fprintf(stderr, "error: no rows of %zu numbers in %s\n", flowrt_flow_dim(flow), argv[2]); goto done; }
    lp = malloc(sizeof(double) * n);
    if (!lp) goto done;
    if (flowrt_flow_log_prob(flow, n, x, 1.0, NULL, lp, NULL, NULL) != FLOWRT_OK) {
        fprintf(stderr, "error: %s\n", flowrt_last_error_message());
        goto done;
    }
    for (i = 0; i < n; i++) { printf("%.6f\n", lp[i]); mean += lp[i] / (double)n; }
    fprintf(stderr, "%zu rows, mean log-likelihood %.4f nats\n", n, mean);
    rc = 0;
done:
    free(x);
    free(lp);
    flowrt_flow_free(flow);
    return rc;
}
