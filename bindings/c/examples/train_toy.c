/* Train a flow on a built-in 2-D dataset with a progress callback, report
 * the held-out negative log-likelihood against the dataset's true entropy,
 * and save the flow as ONNX.
 *
 * usage: train_toy [DATASET] [STEPS] [OUT.onnx]
 *        (defaults: 8gaussians 1500 flow.onnx) */
#include <flowrt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Prints a line every 10% of the steps; never cancels. */
static int on_progress(void *user_data, uint64_t done, uint64_t total, double loss) {
    uint64_t *next = user_data;
    if (done >= *next || done == total) {
        fprintf(stderr, "step %llu/%llu  loss %.4f\n", (unsigned long long)done, (unsigned long long)total, loss);
        *next += total / 10 ? total / 10 : 1;
    }
    return 0;
}

int main(int argc, char **argv) {
    const char *dataset = argc > 1 ? argv[1] : "8gaussians";
    uint64_t steps = argc > 2 ? strtoull(argv[2], NULL, 10) : 1500, next = 0;
    const char *out_path = argc > 3 ? argv[3] : "flow.onnx";
    enum { N = 20000, TEST = 2000 };
    size_t dim = 0, i;
    double entropy = 0, nll = 0, heldout = 0;
    float *data = NULL, *test = NULL;
    double *lp = NULL;
    flowrt_model *model = NULL, *trained = NULL;
    flowrt_trainer *trainer = NULL;
    flowrt_flow *flow = NULL;
    flowrt_mlp_params mp = flowrt_mlp_default_params();
    flowrt_trainer_params tp = flowrt_trainer_default_params();
    int rc = 1;

    if (flowrt_dataset_info(dataset, &dim, &entropy) != FLOWRT_OK) goto fail;
    data = malloc(sizeof(float) * N * dim);
    test = malloc(sizeof(float) * TEST * dim);
    lp = malloc(sizeof(double) * TEST);
    if (!data || !test || !lp) { fprintf(stderr, "out of memory\n"); goto done; }
    if (flowrt_dataset_sample(dataset, N, 0, data) != FLOWRT_OK) goto fail;
    if (flowrt_dataset_sample(dataset, TEST, 1, test) != FLOWRT_OK) goto fail;

    mp.dim = (uint32_t)dim;
    mp.width = 128;
    if (flowrt_model_create_mlp(&mp, &model) != FLOWRT_OK) goto fail;
    tp.learning_rate = 2e-3;
    tp.batch_size = 512;
    tp.warmup_steps = 100;
    tp.lr_schedule = FLOWRT_LR_COSINE;
    tp.total_steps = steps;
    tp.grad_clip = 1.0;
    if (flowrt_trainer_create(model, data, N, dim, &tp, &trainer) != FLOWRT_OK) goto fail;
    if (flowrt_trainer_fit(trainer, steps, on_progress, &next) != FLOWRT_OK) goto fail;
    if (flowrt_trainer_loss(trainer, NULL, &heldout, NULL, NULL) != FLOWRT_OK) goto fail;
    if (flowrt_trainer_model(trainer, &trained) != FLOWRT_OK) goto fail;
    if (flowrt_flow_create(trained, NULL, &flow) != FLOWRT_OK) goto fail;
    if (flowrt_flow_log_prob(flow, TEST, test, 1.0, NULL, lp, NULL, NULL) != FLOWRT_OK) goto fail;
    for (i = 0; i < TEST; i++) nll -= lp[i] / TEST;
    printf("%s: held-out loss %.4f, NLL %.4f nats, true entropy %.4f (excess %.4f)\n", dataset, heldout, nll,
           entropy, nll - entropy);
    if (flowrt_flow_save_onnx(flow, out_path) != FLOWRT_OK) goto fail;
    printf("saved %s\n", out_path);
    rc = 0;
    goto done;
fail:
    fprintf(stderr, "error: %s\n", flowrt_last_error_message());
done:
    flowrt_flow_free(flow);
    flowrt_model_free(trained);
    flowrt_trainer_free(trainer);
    flowrt_model_free(model);
    free(data);
    free(test);
    free(lp);
    return rc;
}
