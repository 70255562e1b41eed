/* Prints the layout of every public struct of flowrt.h as JSON:
 *   {"flowrt_mlp_params": {"size": 40, "fields": {"struct_size": [0, 4], ...}}, ...}
 * (each field: [offsetof, sizeof]). bindings/python/tests/test_struct_layout.py
 * compares it with the ctypes Structures of the Python binding, and checks
 * that every field the header declares is listed here: a field added to a
 * struct in flowrt.h must be added below too. */
#include <stddef.h>
#include <stdio.h>

#include "flowrt.h"

static int first_struct = 1, first_field = 1;

static void begin(const char *name, size_t size) {
    printf("%s\n  \"%s\": {\"size\": %zu, \"fields\": {", first_struct ? "{" : ",", name, size);
    first_struct = 0;
    first_field = 1;
}

static void field(const char *name, size_t offset, size_t size) {
    printf("%s\"%s\": [%zu, %zu]", first_field ? "" : ", ", name, offset, size);
    first_field = 0;
}

static void end(void) { printf("}}"); }

#define BEGIN(T) begin(#T, sizeof(T))
#define FIELD(T, f) field(#f, offsetof(T, f), sizeof(((T *)0)->f))

int main(void) {
    BEGIN(flowrt_mlp_params);
    FIELD(flowrt_mlp_params, struct_size);
    FIELD(flowrt_mlp_params, dim);
    FIELD(flowrt_mlp_params, depth);
    FIELD(flowrt_mlp_params, width);
    FIELD(flowrt_mlp_params, activation);
    FIELD(flowrt_mlp_params, time_encoding);
    FIELD(flowrt_mlp_params, time_frequencies);
    FIELD(flowrt_mlp_params, residual);
    FIELD(flowrt_mlp_params, seed);
    end();

    BEGIN(flowrt_unet_params);
    FIELD(flowrt_unet_params, struct_size);
    FIELD(flowrt_unet_params, channels);
    FIELD(flowrt_unet_params, height);
    FIELD(flowrt_unet_params, width);
    FIELD(flowrt_unet_params, model_channels);
    FIELD(flowrt_unet_params, channel_mult);
    FIELD(flowrt_unet_params, channel_mult_count);
    FIELD(flowrt_unet_params, res_blocks);
    FIELD(flowrt_unet_params, attention);
    FIELD(flowrt_unet_params, attention_count);
    FIELD(flowrt_unet_params, heads);
    FIELD(flowrt_unet_params, groups);
    FIELD(flowrt_unet_params, num_classes);
    FIELD(flowrt_unet_params, reserved);
    FIELD(flowrt_unet_params, seed);
    end();

    BEGIN(flowrt_onnx_options);
    FIELD(flowrt_onnx_options, struct_size);
    FIELD(flowrt_onnx_options, x_name);
    FIELD(flowrt_onnx_options, t_name);
    FIELD(flowrt_onnx_options, directory);
    FIELD(flowrt_onnx_options, context_name);
    end();

    BEGIN(flowrt_flow_params);
    FIELD(flowrt_flow_params, struct_size);
    FIELD(flowrt_flow_params, interpolant);
    FIELD(flowrt_flow_params, base);
    FIELD(flowrt_flow_params, schedule_fn);
    FIELD(flowrt_flow_params, schedule_user_data);
    end();

    BEGIN(flowrt_solver_params);
    FIELD(flowrt_solver_params, struct_size);
    FIELD(flowrt_solver_params, method);
    FIELD(flowrt_solver_params, rtol);
    FIELD(flowrt_solver_params, atol);
    FIELD(flowrt_solver_params, fixed_steps);
    FIELD(flowrt_solver_params, max_steps);
    FIELD(flowrt_solver_params, divergence);
    FIELD(flowrt_solver_params, probes);
    FIELD(flowrt_solver_params, probe_kind);
    FIELD(flowrt_solver_params, seed);
    FIELD(flowrt_solver_params, threads);
    FIELD(flowrt_solver_params, progress);
    FIELD(flowrt_solver_params, progress_user_data);
    FIELD(flowrt_solver_params, max_step);
    end();

    BEGIN(flowrt_solver_stats);
    FIELD(flowrt_solver_stats, struct_size);
    FIELD(flowrt_solver_stats, samples);
    FIELD(flowrt_solver_stats, steps);
    FIELD(flowrt_solver_stats, rejections);
    FIELD(flowrt_solver_stats, evaluations);
    FIELD(flowrt_solver_stats, max_steps_samples);
    FIELD(flowrt_solver_stats, non_finite_samples);
    FIELD(flowrt_solver_stats, max_steps_per_sample);
    FIELD(flowrt_solver_stats, step_underflow_samples);
    FIELD(flowrt_solver_stats, precision);
    end();

    BEGIN(flowrt_trainer_params);
    FIELD(flowrt_trainer_params, struct_size);
    FIELD(flowrt_trainer_params, interpolant);
    FIELD(flowrt_trainer_params, learning_rate);
    FIELD(flowrt_trainer_params, batch_size);
    FIELD(flowrt_trainer_params, optimizer);
    FIELD(flowrt_trainer_params, weight_decay);
    FIELD(flowrt_trainer_params, warmup_steps);
    FIELD(flowrt_trainer_params, lr_schedule);
    FIELD(flowrt_trainer_params, total_steps);
    FIELD(flowrt_trainer_params, lr_min_factor);
    FIELD(flowrt_trainer_params, step_every);
    FIELD(flowrt_trainer_params, step_factor);
    FIELD(flowrt_trainer_params, grad_clip);
    FIELD(flowrt_trainer_params, ema_decay);
    FIELD(flowrt_trainer_params, heldout_fraction);
    FIELD(flowrt_trainer_params, seed);
    FIELD(flowrt_trainer_params, threads);
    FIELD(flowrt_trainer_params, time_beta_a);
    FIELD(flowrt_trainer_params, time_beta_b);
    FIELD(flowrt_trainer_params, schedule_fn);
    FIELD(flowrt_trainer_params, schedule_user_data);
    FIELD(flowrt_trainer_params, label_dropout);
    FIELD(flowrt_trainer_params, coupling);
    end();

    BEGIN(flowrt_sde_params);
    FIELD(flowrt_sde_params, struct_size);
    FIELD(flowrt_sde_params, method);
    FIELD(flowrt_sde_params, steps);
    FIELD(flowrt_sde_params, epsilon);
    FIELD(flowrt_sde_params, taper);
    FIELD(flowrt_sde_params, diffusion);
    FIELD(flowrt_sde_params, diffusion_user_data);
    FIELD(flowrt_sde_params, threads);
    FIELD(flowrt_sde_params, progress);
    FIELD(flowrt_sde_params, progress_user_data);
    end();

    BEGIN(flowrt_path_params);
    FIELD(flowrt_path_params, struct_size);
    FIELD(flowrt_path_params, terms);
    FIELD(flowrt_path_params, learning_rate);
    FIELD(flowrt_path_params, warmup_steps);
    FIELD(flowrt_path_params, network_steps);
    FIELD(flowrt_path_params, batch_size);
    FIELD(flowrt_path_params, coefficient_bound);
    end();

    printf("\n}\n");
    return 0;
}
