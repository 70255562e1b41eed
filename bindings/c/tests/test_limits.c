/* Limits of the C ABI (issue 16): empty batches, absurd sizes printed
 * unsigned, bounded memory on huge batches, and sampling that does not
 * depend on whether log-densities are requested.
 *
 * The huge-batch cases run in forked children under an address-space limit
 * (RLIMIT_AS: what the child has mapped for its own buffers + 256 MB for the
 * library): each child must exit with a flowrt_status as its exit code,
 * never by a signal (an abort on a refused allocation). Long calls take a
 * progress callback that cancels at its first report: FLOWRT_CANCELLED
 * then proves the call started streaming without allocating O(n).
 * Not run under valgrind or ASan (both need far more address space).
 * Prints one line per failure and ends with "N passed, N failed". */
#define _GNU_SOURCE
#include "check.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#define HUGE_N ((size_t)50000000)
#define LIMIT_MB 256

/* Lazily mapped, never-touched-unless-written caller buffers (zero pages). */
static void *big(size_t bytes) {
    void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) { perror("mmap"); exit(100); }
    return p;
}

/* Virtual size of this process in bytes (/proc/self/statm, first field). */
static size_t mapped_bytes(void) {
    unsigned long pages = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f || fscanf(f, "%lu", &pages) != 1) { perror("statm"); exit(101); }
    fclose(f);
    return (size_t)pages * (size_t)sysconf(_SC_PAGESIZE);
}

static void limit_address_space(void) {
    struct rlimit r;
    r.rlim_cur = r.rlim_max = (rlim_t)(mapped_bytes() + (size_t)LIMIT_MB * 1024 * 1024);
    if (setrlimit(RLIMIT_AS, &r) != 0) { perror("setrlimit"); exit(102); }
}

static int cancel_at_once(void *user, uint64_t done, uint64_t total, double value) {
    (void)user; (void)done; (void)value;
    return total > 0; /* cancel at the first report */
}

/* What the children share. */
static flowrt_model *model1, *model2;
static flowrt_flow *flow1, *flow2;

enum call_kind {
    SAMPLE, SAMPLE_LOGP, SAMPLE_RANGE, TRANSPORT, ENCODE, LOG_PROB, SDE, SCORE, VELOCITY, DIVERGENCE,
    DENSITY_SAMPLE, DENSITY_LOG_PROB, DATASET_SAMPLE, DATASET_LOG_PROB, EMPIRICAL, TRAINER, CALL_KINDS
};
static const char *call_names[CALL_KINDS] = {
    "flowrt_flow_sample", "flowrt_flow_sample (log_prob)", "flowrt_flow_sample_range", "flowrt_flow_transport",
    "flowrt_flow_encode", "flowrt_flow_log_prob", "flowrt_flow_sample_sde", "flowrt_flow_score",
    "flowrt_model_velocity", "flowrt_model_divergence", "flowrt_density_sample", "flowrt_density_log_prob",
    "flowrt_dataset_sample", "flowrt_dataset_log_prob", "flowrt_density_create_empirical", "flowrt_trainer_create",
};

/* One call with batch size n (dimension 1 except the 2-D datasets), in the
 * child, after the buffers are mapped and the limit is set. */
static flowrt_status drive(enum call_kind kind, size_t n) {
    size_t cap = n > HUGE_N ? 16 : n; /* absurd n: the call must refuse before touching buffers */
    size_t d = (kind == DATASET_SAMPLE || kind == DATASET_LOG_PROB) ? 2 : 1;
    float *x = big(cap * d * sizeof(float) + 64), *y = big(cap * d * sizeof(float) + 64);
    double *lp = big(cap * sizeof(double) + 64), *t = big(cap * sizeof(double) + 64);
    flowrt_solver_params sp = flowrt_solver_default_params();
    flowrt_sde_params sde = flowrt_sde_default_params();
    flowrt_density *normal = NULL;
    flowrt_model *m = NULL;
    flowrt_trainer *tr = NULL;
    flowrt_status s;
    sp.progress = cancel_at_once;
    sp.threads = 1;
    sde.steps = 1;
    sde.threads = 1;
    if (flowrt_density_create_diagonal_normal(1, NULL, NULL, &normal) != FLOWRT_OK) return FLOWRT_INTERNAL;
    limit_address_space();
    switch (kind) {
    case SAMPLE: s = flowrt_flow_sample(flow1, n, 1, &sp, x, NULL, NULL); break;
    case SAMPLE_LOGP: s = flowrt_flow_sample(flow1, n, 1, &sp, x, lp, NULL); break;
    case SAMPLE_RANGE: s = flowrt_flow_sample_range(flow1, 5, n, 1, &sp, x, NULL, NULL); break;
    case TRANSPORT: s = flowrt_flow_transport(flow1, n, x, 0, 1, &sp, y, NULL); break;
    case ENCODE: s = flowrt_flow_encode(flow1, n, x, &sp, y, NULL); break;
    case LOG_PROB: s = flowrt_flow_log_prob(flow1, n, x, 1, &sp, lp, NULL, NULL); break;
    case SDE: s = flowrt_flow_sample_sde(flow2, &sde, 1, 0, n, x); break;
    case SCORE:
        /* t must be in [0, 1) and x finite: zero pages are both. */
        s = flowrt_flow_score(flow2, n, t, x, y); break;
    case VELOCITY: s = flowrt_model_velocity(model2, n, t, x, y); break;
    case DIVERGENCE: s = flowrt_model_divergence(model2, n, t, x, NULL, lp); break;
    case DENSITY_SAMPLE: s = flowrt_density_sample(normal, 1, 0, n, x); break;
    case DENSITY_LOG_PROB: s = flowrt_density_log_prob(normal, n, x, lp); break;
    case DATASET_SAMPLE: s = flowrt_dataset_sample("8gaussians", n, 1, x); break;
    case DATASET_LOG_PROB: s = flowrt_dataset_log_prob("8gaussians", n, x, lp); break;
    case EMPIRICAL: s = flowrt_density_create_empirical(n, 1, x, &normal); break;
    case TRAINER: s = flowrt_trainer_create(model1, x, n, 1, NULL, &tr); break;
    default: s = FLOWRT_INTERNAL;
    }
    (void)m;
    return s;
}

/* Forks a child that runs `kind` with n; checks it exited with one of the
 * allowed statuses (bitmask of 1 << status). */
static void in_child(enum call_kind kind, size_t n, unsigned allowed) {
    int status = 0;
    pid_t pid;
    fflush(stdout);
    pid = fork();
    if (pid < 0) { perror("fork"); exit(103); }
    if (pid == 0) {
        flowrt_status s = drive(kind, n);
        if (s != FLOWRT_OK && !(allowed & (1u << s))) printf("    child %s: %s\n", call_names[kind], flowrt_last_error_message());
        fflush(stdout);
        _exit((int)s);
    }
    if (waitpid(pid, &status, 0) != pid) { perror("waitpid"); exit(104); }
    CHECK(WIFEXITED(status), "%s with n = %zu under RLIMIT_AS %d MB died by signal %d", call_names[kind], n, LIMIT_MB,
          WIFSIGNALED(status) ? WTERMSIG(status) : 0);
    if (WIFEXITED(status)) {
        int code = WEXITSTATUS(status);
        CHECK(code <= FLOWRT_INTERNAL && (allowed & (1u << code)), "%s with n = %zu returned %d (%s)", call_names[kind], n,
              code, code <= FLOWRT_INTERNAL ? flowrt_status_string((flowrt_status)code) : "not a status");
    }
}

#define ALLOW(s) (1u << (s))

/* Records the reports of a run: how many, and the first `done`. */
struct reports { int calls; uint64_t first_done, total; };
static int record(void *user, uint64_t done, uint64_t total, double value) {
    struct reports *r = (struct reports *)user;
    (void)value;
    if (r->calls++ == 0) r->first_done = done;
    r->total = total;
    return 0;
}

static int differs(const void *a, const void *b, size_t bytes) { return memcmp(a, b, bytes) != 0; }

int main(void) {
    flowrt_mlp_params mp = flowrt_mlp_default_params();
    flowrt_solver_params sp = flowrt_solver_default_params();
    flowrt_solver_stats st;
    flowrt_density *normal = NULL;
    enum { M = 3000 };
    static float a[M * 2], b[M * 2], c[M * 2];
    static double la[M], lb[M];
    float sentinel[4] = {7, 7, 7, 7};
    double dsentinel[4] = {7, 7, 7, 7};
    double t4[4] = {0.5, 0.5, 0.5, 0.5};
    int k;

    mp.dim = 1; mp.width = 8; mp.depth = 1; mp.seed = 3;
    CHECK_STATUS(flowrt_model_create_mlp(&mp, &model1), FLOWRT_OK);
    mp.width = 1;
    CHECK_STATUS(flowrt_model_create_mlp(&mp, &model2), FLOWRT_OK);
    CHECK_STATUS(flowrt_flow_create(model1, NULL, &flow1), FLOWRT_OK);
    CHECK_STATUS(flowrt_flow_create(model2, NULL, &flow2), FLOWRT_OK);
    CHECK_STATUS(flowrt_density_create_diagonal_normal(1, NULL, NULL, &normal), FLOWRT_OK);

    /* 1. Empty batches: FLOWRT_OK, nothing written, NULL buffers accepted. */
    memset(&st, 0xff, sizeof st);
    st.struct_size = sizeof st;
    CHECK_STATUS(flowrt_flow_sample(flow1, 0, 1, NULL, sentinel, dsentinel, &st), FLOWRT_OK);
    CHECK(st.samples == 0 && st.steps == 0, "empty sample: zero statistics");
    CHECK_STATUS(flowrt_flow_sample(flow1, 0, 1, NULL, NULL, NULL, NULL), FLOWRT_OK);
    CHECK_STATUS(flowrt_flow_sample_range(flow1, 9, 0, 1, NULL, sentinel, NULL, NULL), FLOWRT_OK);
    CHECK_STATUS(flowrt_flow_transport(flow1, 0, sentinel, 0, 1, NULL, sentinel, NULL), FLOWRT_OK);
    CHECK_STATUS(flowrt_flow_transport(flow1, 0, NULL, 0, 1, NULL, NULL, NULL), FLOWRT_OK);
    CHECK_STATUS(flowrt_flow_encode(flow1, 0, NULL, NULL, NULL, NULL), FLOWRT_OK);
    CHECK_STATUS(flowrt_flow_log_prob(flow1, 0, sentinel, 1, NULL, dsentinel, dsentinel, NULL), FLOWRT_OK);
    CHECK_STATUS(flowrt_flow_log_prob(flow1, 0, NULL, 1, NULL, NULL, NULL, NULL), FLOWRT_OK);
    CHECK_STATUS(flowrt_flow_score(flow1, 0, t4, sentinel, sentinel), FLOWRT_OK);
    CHECK_STATUS(flowrt_flow_score(flow1, 0, NULL, NULL, NULL), FLOWRT_OK);
    CHECK_STATUS(flowrt_flow_sample_sde(flow1, NULL, 1, 0, 0, sentinel), FLOWRT_OK);
    CHECK_STATUS(flowrt_flow_sample_sde(flow1, NULL, 1, 0, 0, NULL), FLOWRT_OK);
    CHECK_STATUS(flowrt_model_velocity(model1, 0, t4, sentinel, sentinel), FLOWRT_OK);
    CHECK_STATUS(flowrt_model_velocity(model1, 0, NULL, NULL, NULL), FLOWRT_OK);
    CHECK_STATUS(flowrt_model_divergence(model1, 0, NULL, NULL, NULL, NULL), FLOWRT_OK);
    CHECK_STATUS(flowrt_density_sample(normal, 1, 0, 0, sentinel), FLOWRT_OK);
    CHECK_STATUS(flowrt_density_log_prob(normal, 0, NULL, dsentinel), FLOWRT_OK);
    CHECK_STATUS(flowrt_dataset_sample("rings", 0, 1, sentinel), FLOWRT_OK);
    CHECK_STATUS(flowrt_dataset_log_prob("rings", 0, NULL, NULL), FLOWRT_OK);
    for (k = 0; k < 4; k++) CHECK(sentinel[k] == 7 && dsentinel[k] == 7, "an empty batch wrote element %d", k);
    /* Arguments other than the buffers are still checked on empty batches. */
    CHECK_STATUS(flowrt_flow_sample(NULL, 0, 1, NULL, NULL, NULL, NULL), FLOWRT_INVALID_ARGUMENT);
    CHECK_STATUS(flowrt_flow_transport(flow1, 0, NULL, 0, 2, NULL, NULL, NULL), FLOWRT_INVALID_ARGUMENT);
    CHECK_STATUS(flowrt_flow_log_prob(flow1, 0, NULL, -1, NULL, NULL, NULL, NULL), FLOWRT_INVALID_ARGUMENT);
    sp.struct_size = 3;
    CHECK_STATUS(flowrt_flow_sample(flow1, 0, 1, &sp, NULL, NULL, NULL), FLOWRT_INVALID_ARGUMENT);
    sp = flowrt_solver_default_params();
    CHECK_STATUS(flowrt_dataset_sample("nope", 0, 1, NULL), FLOWRT_INVALID_ARGUMENT);

    /* 2. Sizes print unsigned. */
    CHECK_STATUS(flowrt_flow_sample(flow1, SIZE_MAX, 1, NULL, a, NULL, NULL), FLOWRT_INVALID_ARGUMENT);
    CHECK(strstr(flowrt_last_error_message(), "18446744073709551615") != NULL && strstr(flowrt_last_error_message(), "-1") == NULL,
          "SIZE_MAX printed unsigned: %s", flowrt_last_error_message());
    CHECK_STATUS(flowrt_flow_log_prob(flow1, SIZE_MAX / 2 + 1, a, 1, NULL, la, NULL, NULL), FLOWRT_INVALID_ARGUMENT);
    CHECK(strstr(flowrt_last_error_message(), "9223372036854775808") != NULL && strstr(flowrt_last_error_message(), "= -") == NULL,
          "2^63 printed unsigned: %s", flowrt_last_error_message());
    CHECK_STATUS(flowrt_model_velocity(model1, (size_t)-5, t4, a, b), FLOWRT_INVALID_ARGUMENT);
    CHECK(strstr(flowrt_last_error_message(), "18446744073709551611") != NULL, "-5 as size_t: %s", flowrt_last_error_message());

    /* Load errors name the file, whatever went wrong. */
    {
        const char *path = "test_limits_not_onnx.onnx";
        flowrt_model *m = NULL;
        flowrt_flow *f = NULL;
        FILE *junk = fopen(path, "wb");
        fputs("not a protobuf", junk);
        fclose(junk);
        CHECK_STATUS(flowrt_model_load_onnx(path, NULL, &m), FLOWRT_INVALID_MODEL);
        CHECK(strstr(flowrt_last_error_message(), path) != NULL, "model load error names the file: %s", flowrt_last_error_message());
        CHECK_STATUS(flowrt_flow_load_onnx(path, NULL, &f), FLOWRT_INVALID_MODEL);
        CHECK(strstr(flowrt_last_error_message(), path) != NULL, "flow load error names the file: %s", flowrt_last_error_message());
        remove(path);
    }

    /* 3. Same seed, same samples, with or without log-densities (bitwise),
     *    exact and Hutchinson; the log-densities agree with log_prob. */
    mp.dim = 2; mp.width = 16; mp.depth = 2; mp.seed = 11;
    {
        flowrt_model *m2 = NULL;
        flowrt_flow *f2 = NULL;
        double worst = 0;
        int i;
        CHECK_STATUS(flowrt_model_create_mlp(&mp, &m2), FLOWRT_OK);
        CHECK_STATUS(flowrt_flow_create(m2, NULL, &f2), FLOWRT_OK);
        CHECK_STATUS(flowrt_flow_sample(f2, M, 42, &sp, a, NULL, NULL), FLOWRT_OK);
        CHECK_STATUS(flowrt_flow_sample(f2, M, 42, &sp, b, la, NULL), FLOWRT_OK);
        CHECK(!differs(a, b, sizeof a), "samples differ when log-densities are requested (exact)");
        sp.divergence = FLOWRT_DIVERGENCE_HUTCHINSON; sp.probes = 3;
        CHECK_STATUS(flowrt_flow_sample(f2, M, 42, &sp, c, lb, NULL), FLOWRT_OK);
        CHECK(!differs(a, c, sizeof a), "samples differ when log-densities are requested (Hutchinson)");
        sp = flowrt_solver_default_params();
        sp.rtol = sp.atol = 1e-7;
        CHECK_STATUS(flowrt_flow_log_prob(f2, M, a, 1, &sp, lb, NULL, NULL), FLOWRT_OK);
        for (i = 0; i < M; i++) worst = fmax(worst, fabs(la[i] - lb[i]));
        CHECK(worst < 1e-3, "sample's log-densities vs log_prob: worst difference %g", worst);
        sp = flowrt_solver_default_params();

        /* log_prob reports progress while it runs, not once at the end. */
        {
            struct reports r = {0, 0, 0};
            sp.progress = record;
            sp.progress_user_data = &r;
            CHECK_STATUS(flowrt_flow_log_prob(f2, M, a, 1, &sp, lb, NULL, NULL), FLOWRT_OK);
            CHECK(r.calls >= 2 && r.first_done < M && r.total == M,
                  "log_prob progress: %d reports, the first at %llu of %llu", r.calls,
                  (unsigned long long)r.first_done, (unsigned long long)r.total);
            sp = flowrt_solver_default_params();
        }
        flowrt_flow_free(f2);
        flowrt_model_free(m2);
    }

    /* 4. Huge and absurd batches under RLIMIT_AS: a status, never a signal. */
    {
        const unsigned streamed = ALLOW(FLOWRT_OK) | ALLOW(FLOWRT_CANCELLED) | ALLOW(FLOWRT_OUT_OF_MEMORY);
        const unsigned refused = ALLOW(FLOWRT_INVALID_ARGUMENT) | ALLOW(FLOWRT_OUT_OF_MEMORY);
        int kind;
        for (kind = 0; kind < CALL_KINDS; kind++) {
            unsigned allowed = streamed;
            /* Calls that copy their input cannot stream it: out of memory. */
            /* Calls that copy their input cannot stream it: they fit or are refused. */
            if (kind == EMPIRICAL || kind == TRAINER) allowed = ALLOW(FLOWRT_OK) | ALLOW(FLOWRT_OUT_OF_MEMORY);
            in_child((enum call_kind)kind, HUGE_N, allowed);
            in_child((enum call_kind)kind, SIZE_MAX / 2, refused);
            in_child((enum call_kind)kind, ((size_t)1 << 40) + 1, refused);
        }
    }

    flowrt_density_free(normal);
    flowrt_flow_free(flow1);
    flowrt_flow_free(flow2);
    flowrt_model_free(model1);
    flowrt_model_free(model2);
    printf("%d passed, %d failed\n", passed, failed);
    return failed != 0;
}
