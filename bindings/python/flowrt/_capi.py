"""Layer 2: raw ctypes declarations, 1:1 with include/flowrt.h.

Each declaration carries its C prototype as a comment. Nothing here converts
or checks; see flowrt/__init__.py for the Pythonic layer.
"""
from __future__ import annotations

import ctypes
from ctypes import (POINTER, Structure, c_char_p, c_double, c_float, c_int, c_int32,
                    c_size_t, c_uint32, c_uint64, c_void_p)

from ._loader import load_library

lib = load_library()

c_float_p = POINTER(c_float)
c_double_p = POINTER(c_double)

# typedef enum flowrt_status { FLOWRT_OK = 0, ... } flowrt_status;
OK = 0
INVALID_ARGUMENT = 1
SHAPE_MISMATCH = 2
NON_FINITE = 3
INVALID_MODEL = 4
UNSUPPORTED = 5
IO_ERROR = 6
CANCELLED = 7
OUT_OF_MEMORY = 8
SOLVER_INCOMPLETE = 9
INTERNAL = 10
STEP_UNDERFLOW = 11

# typedef enum flowrt_activation
ACTIVATIONS = {"silu": 0, "tanh": 1, "relu": 2, "gelu": 3, "softplus": 4, "sigmoid": 5,
               "elu": 6, "selu": 7, "leaky_relu": 8}
# typedef enum flowrt_time_encoding
TIME_ENCODINGS = {"concat": 0, "sinusoidal": 1}

# typedef int (*flowrt_progress_fn)(void *user_data, uint64_t done, uint64_t total, double value);
progress_fn = ctypes.CFUNCTYPE(c_int, c_void_p, c_uint64, c_uint64, c_double)


def _defaults(struct, init):
    """A params struct filled by its flowrt_*_init (struct_size = its ctypes size)."""
    p = struct()
    p.struct_size = ctypes.sizeof(struct)
    from ._errors import check
    check(init(ctypes.byref(p)))
    return p


def _declare(name, restype, *argtypes):
    f = getattr(lib, name)
    f.restype = restype
    f.argtypes = list(argtypes)
    return f


# uint32_t flowrt_version_number(void);
flowrt_version_number = _declare("flowrt_version_number", c_uint32)
# const char *flowrt_version_string(void);
flowrt_version_string = _declare("flowrt_version_string", c_char_p)
# const char *flowrt_status_string(flowrt_status status);
flowrt_status_string = _declare("flowrt_status_string", c_char_p, c_int)
# const char *flowrt_last_error_message(void);
flowrt_last_error_message = _declare("flowrt_last_error_message", c_char_p)
# void flowrt_buffer_free(void *buffer);
flowrt_buffer_free = _declare("flowrt_buffer_free", None, c_void_p)


class flowrt_mlp_params(Structure):
    """typedef struct flowrt_mlp_params { ... } flowrt_mlp_params;"""
    _fields_ = [("struct_size", c_uint32), ("dim", c_uint32), ("depth", c_uint32),
                ("width", c_uint32), ("activation", c_int32), ("time_encoding", c_int32),
                ("time_frequencies", c_uint32), ("residual", c_int32), ("seed", c_uint64)]


# flowrt_status flowrt_mlp_params_init(flowrt_mlp_params *params);
flowrt_mlp_params_init = _declare("flowrt_mlp_params_init", c_int, POINTER(flowrt_mlp_params))


def flowrt_mlp_default_params():
    """The defaults (the header's static inline flowrt_mlp_default_params)."""
    return _defaults(flowrt_mlp_params, flowrt_mlp_params_init)
# flowrt_status flowrt_model_create_mlp(const flowrt_mlp_params *params, flowrt_model **out);
flowrt_model_create_mlp = _declare("flowrt_model_create_mlp", c_int, POINTER(flowrt_mlp_params), POINTER(c_void_p))
# void flowrt_model_free(flowrt_model *model);
flowrt_model_free = _declare("flowrt_model_free", None, c_void_p)
# size_t flowrt_model_dim(const flowrt_model *model);
flowrt_model_dim = _declare("flowrt_model_dim", c_size_t, c_void_p)
# size_t flowrt_model_parameter_count(const flowrt_model *model);
flowrt_model_parameter_count = _declare("flowrt_model_parameter_count", c_size_t, c_void_p)
# flowrt_status flowrt_model_shape(const flowrt_model *model, size_t *shape, size_t capacity, size_t *rank);
flowrt_model_shape = _declare("flowrt_model_shape", c_int, c_void_p, POINTER(c_size_t), c_size_t, POINTER(c_size_t))
# size_t flowrt_model_context_dim(const flowrt_model *model);
flowrt_model_context_dim = _declare("flowrt_model_context_dim", c_size_t, c_void_p)
# size_t flowrt_model_num_classes(const flowrt_model *model);
flowrt_model_num_classes = _declare("flowrt_model_num_classes", c_size_t, c_void_p)
# flowrt_status flowrt_model_velocity_conditional(const flowrt_model *model, size_t n, const double *t,
#                                                 const float *x, const float *context, float *v);
flowrt_model_velocity_conditional = _declare("flowrt_model_velocity_conditional", c_int, c_void_p, c_size_t,
                                             c_double_p, c_float_p, c_float_p, c_float_p)
# flowrt_status flowrt_model_velocity(const flowrt_model *model, size_t n,
#                                     const double *t, const float *x, float *v);
flowrt_model_velocity = _declare("flowrt_model_velocity", c_int, c_void_p, c_size_t, c_double_p, c_float_p, c_float_p)
# flowrt_status flowrt_model_divergence(const flowrt_model *model, size_t n,
#                                       const double *t, const float *x, float *v, double *div);
flowrt_model_divergence = _declare("flowrt_model_divergence", c_int, c_void_p, c_size_t, c_double_p, c_float_p,
                                   c_float_p, c_double_p)

# ---- flows (include/flowrt.h, section: flows) ----
# typedef enum flowrt_interpolant
INTERPOLANTS = {"trig": 0, "linear": 1, "custom": 2}
BASES = {"normal": 0}
SOLVER_METHODS = {"dopri5": 0, "euler": 1, "heun": 2, "midpoint": 3, "rk4": 4}
DIVERGENCES = {"exact": 0, "hutchinson": 1, "auto": 2}
PROBE_KINDS = {"rademacher": 0, "gaussian": 1}


# typedef int (*flowrt_schedule_fn)(void *user_data, double t, double coefficients[4]);
schedule_fn = ctypes.CFUNCTYPE(c_int, c_void_p, c_double, c_double_p)


class flowrt_flow_params(Structure):
    """typedef struct flowrt_flow_params { uint32_t struct_size; int32_t interpolant; int32_t base;
    flowrt_schedule_fn schedule_fn; void *schedule_user_data; }"""
    _fields_ = [("struct_size", c_uint32), ("interpolant", c_int32), ("base", c_int32),
                ("schedule_fn", schedule_fn), ("schedule_user_data", c_void_p)]


class flowrt_solver_params(Structure):
    """typedef struct flowrt_solver_params { ... } flowrt_solver_params;"""
    _fields_ = [("struct_size", c_uint32), ("method", c_int32), ("rtol", c_double), ("atol", c_double),
                ("fixed_steps", c_uint32), ("max_steps", c_uint32), ("divergence", c_int32), ("probes", c_uint32),
                ("probe_kind", c_int32), ("seed", c_uint64), ("threads", c_uint32), ("progress", progress_fn),
                ("progress_user_data", c_void_p), ("max_step", c_double)]


class flowrt_solver_stats(Structure):
    """typedef struct flowrt_solver_stats { ... } flowrt_solver_stats;"""
    _fields_ = [("struct_size", c_uint32), ("samples", c_uint64), ("steps", c_uint64), ("rejections", c_uint64),
                ("evaluations", c_uint64), ("max_steps_samples", c_uint64), ("non_finite_samples", c_uint64),
                ("max_steps_per_sample", c_uint64), ("step_underflow_samples", c_uint64), ("precision", c_int32)]


# flowrt_status flowrt_flow_params_init(flowrt_flow_params *params);
flowrt_flow_params_init = _declare("flowrt_flow_params_init", c_int, POINTER(flowrt_flow_params))


def flowrt_flow_default_params():
    """The defaults (the header's static inline flowrt_flow_default_params)."""
    return _defaults(flowrt_flow_params, flowrt_flow_params_init)
# flowrt_status flowrt_solver_params_init(flowrt_solver_params *params);
flowrt_solver_params_init = _declare("flowrt_solver_params_init", c_int, POINTER(flowrt_solver_params))


def flowrt_solver_default_params():
    """The defaults (the header's static inline flowrt_solver_default_params)."""
    return _defaults(flowrt_solver_params, flowrt_solver_params_init)
# flowrt_status flowrt_flow_create(const flowrt_model *model, const flowrt_flow_params *params, flowrt_flow **out);
flowrt_flow_create = _declare("flowrt_flow_create", c_int, c_void_p, POINTER(flowrt_flow_params), POINTER(c_void_p))
# void flowrt_flow_free(flowrt_flow *flow);
flowrt_flow_free = _declare("flowrt_flow_free", None, c_void_p)
# size_t flowrt_flow_dim(const flowrt_flow *flow);
flowrt_flow_dim = _declare("flowrt_flow_dim", c_size_t, c_void_p)
# flowrt_status flowrt_flow_sample(const flowrt_flow *flow, size_t n, uint64_t seed,
#     const flowrt_solver_params *params, float *x_out, double *log_prob_out, flowrt_solver_stats *stats);
flowrt_flow_sample = _declare("flowrt_flow_sample", c_int, c_void_p, c_size_t, c_uint64, POINTER(flowrt_solver_params),
                              c_float_p, c_double_p, POINTER(flowrt_solver_stats))
# flowrt_status flowrt_flow_sample_range(const flowrt_flow *flow, uint64_t first_index, size_t n, uint64_t seed,
#     const flowrt_solver_params *params, float *x_out, double *log_prob_out, flowrt_solver_stats *stats);
flowrt_flow_sample_range = _declare("flowrt_flow_sample_range", c_int, c_void_p, c_uint64, c_size_t, c_uint64,
                                    POINTER(flowrt_solver_params), c_float_p, c_double_p, POINTER(flowrt_solver_stats))
# flowrt_status flowrt_flow_transport(const flowrt_flow *flow, size_t n, const float *x_in, double t_from,
#     double t_to, const flowrt_solver_params *params, float *x_out, flowrt_solver_stats *stats);
flowrt_flow_transport = _declare("flowrt_flow_transport", c_int, c_void_p, c_size_t, c_float_p, c_double, c_double,
                                 POINTER(flowrt_solver_params), c_float_p, POINTER(flowrt_solver_stats))
# flowrt_status flowrt_flow_encode(const flowrt_flow *flow, size_t n, const float *x,
#     const flowrt_solver_params *params, float *z_out, flowrt_solver_stats *stats);
flowrt_flow_encode = _declare("flowrt_flow_encode", c_int, c_void_p, c_size_t, c_float_p,
                              POINTER(flowrt_solver_params), c_float_p, POINTER(flowrt_solver_stats))
# flowrt_status flowrt_flow_log_prob(const flowrt_flow *flow, size_t n, const float *x, double t,
#     const flowrt_solver_params *params, double *log_prob, double *std_error, flowrt_solver_stats *stats);
flowrt_flow_log_prob = _declare("flowrt_flow_log_prob", c_int, c_void_p, c_size_t, c_float_p, c_double,
                                POINTER(flowrt_solver_params), c_double_p, c_double_p, POINTER(flowrt_solver_stats))

# ---- built-in datasets (section: Built-in datasets) ----
# flowrt_status flowrt_dataset_sample(const char *name, size_t n, uint64_t seed, float *x_out);
flowrt_dataset_sample = _declare("flowrt_dataset_sample", c_int, c_char_p, c_size_t, c_uint64, c_float_p)
# flowrt_status flowrt_dataset_sample_range(const char *name, uint64_t first_index, size_t n, uint64_t seed,
#                                           float *x_out);
flowrt_dataset_sample_range = _declare("flowrt_dataset_sample_range", c_int, c_char_p, c_uint64, c_size_t, c_uint64,
                                       c_float_p)
# flowrt_status flowrt_dataset_log_prob(const char *name, size_t n, const float *x, double *log_prob);
flowrt_dataset_log_prob = _declare("flowrt_dataset_log_prob", c_int, c_char_p, c_size_t, c_float_p, c_double_p)
# flowrt_status flowrt_dataset_info(const char *name, size_t *dim, double *entropy);
flowrt_dataset_info = _declare("flowrt_dataset_info", c_int, c_char_p, POINTER(c_size_t), c_double_p)

# ---- ONNX (section: ONNX) ----


class flowrt_onnx_options(Structure):
    """typedef struct flowrt_onnx_options { uint32_t struct_size; const char *x_name; const char *t_name;
    const char *directory; const char *context_name; } flowrt_onnx_options;"""
    _fields_ = [("struct_size", c_uint32), ("x_name", c_char_p), ("t_name", c_char_p), ("directory", c_char_p),
                ("context_name", c_char_p)]


c_void_pp = POINTER(ctypes.c_void_p)  # char ** (strings freed with flowrt_buffer_free)

# flowrt_status flowrt_onnx_options_init(flowrt_onnx_options *params);
flowrt_onnx_options_init = _declare("flowrt_onnx_options_init", c_int, POINTER(flowrt_onnx_options))


def flowrt_onnx_default_options():
    """The defaults (the header's static inline flowrt_onnx_default_options)."""
    return _defaults(flowrt_onnx_options, flowrt_onnx_options_init)
# flowrt_status flowrt_model_load_onnx(const char *path, const flowrt_onnx_options *options, flowrt_model **out);
flowrt_model_load_onnx = _declare("flowrt_model_load_onnx", c_int, c_char_p, POINTER(flowrt_onnx_options),
                                  POINTER(c_void_p))
# flowrt_status flowrt_model_load_onnx_buffer(const void *data, size_t size, const flowrt_onnx_options *options,
#                                             flowrt_model **out);
flowrt_model_load_onnx_buffer = _declare("flowrt_model_load_onnx_buffer", c_int, c_void_p, c_size_t,
                                         POINTER(flowrt_onnx_options), POINTER(c_void_p))
# flowrt_status flowrt_model_save_onnx(const flowrt_model *model, const char *path);
flowrt_model_save_onnx = _declare("flowrt_model_save_onnx", c_int, c_void_p, c_char_p)
# flowrt_status flowrt_model_export_onnx_buffer(const flowrt_model *model, void **bytes, size_t *size);
flowrt_model_export_onnx_buffer = _declare("flowrt_model_export_onnx_buffer", c_int, c_void_p, POINTER(c_void_p),
                                           POINTER(c_size_t))
# flowrt_status flowrt_model_input_name(const flowrt_model *model, size_t index, char **name);
flowrt_model_input_name = _declare("flowrt_model_input_name", c_int, c_void_p, c_size_t, c_void_pp)
# flowrt_status flowrt_model_output_name(const flowrt_model *model, char **name);
flowrt_model_output_name = _declare("flowrt_model_output_name", c_int, c_void_p, c_void_pp)
# size_t flowrt_model_metadata_count(const flowrt_model *model);
flowrt_model_metadata_count = _declare("flowrt_model_metadata_count", c_size_t, c_void_p)
# flowrt_status flowrt_model_metadata_key(const flowrt_model *model, size_t index, char **key);
flowrt_model_metadata_key = _declare("flowrt_model_metadata_key", c_int, c_void_p, c_size_t, c_void_pp)
# flowrt_status flowrt_model_metadata(const flowrt_model *model, const char *key, char **value);
flowrt_model_metadata = _declare("flowrt_model_metadata", c_int, c_void_p, c_char_p, c_void_pp)
# flowrt_status flowrt_flow_save_onnx(const flowrt_flow *flow, const char *path);
flowrt_flow_save_onnx = _declare("flowrt_flow_save_onnx", c_int, c_void_p, c_char_p)
# flowrt_status flowrt_flow_load_onnx(const char *path, const flowrt_onnx_options *options, flowrt_flow **out);
flowrt_flow_load_onnx = _declare("flowrt_flow_load_onnx", c_int, c_char_p, POINTER(flowrt_onnx_options),
                                 POINTER(c_void_p))
# flowrt_status flowrt_flow_model(const flowrt_flow *flow, flowrt_model **out);
flowrt_flow_model = _declare("flowrt_flow_model", c_int, c_void_p, POINTER(c_void_p))

# ---- training (section: training) ----
OPTIMIZERS = {"adam": 0, "adamw": 1}
LR_SCHEDULES = {"constant": 0, "cosine": 1, "step": 2}


class flowrt_trainer_params(Structure):
    """typedef struct flowrt_trainer_params { ... } flowrt_trainer_params;"""
    _fields_ = [("struct_size", c_uint32), ("interpolant", c_int32), ("learning_rate", c_double),
                ("batch_size", c_uint32), ("optimizer", c_int32), ("weight_decay", c_double),
                ("warmup_steps", c_uint32), ("lr_schedule", c_int32), ("total_steps", c_uint64),
                ("lr_min_factor", c_double), ("step_every", c_uint64), ("step_factor", c_double),
                ("grad_clip", c_double), ("ema_decay", c_double), ("heldout_fraction", c_double),
                ("seed", c_uint64), ("threads", c_uint32), ("time_beta_a", c_double), ("time_beta_b", c_double),
                ("schedule_fn", schedule_fn), ("schedule_user_data", c_void_p), ("label_dropout", c_double),
                ("coupling", c_int32)]


# flowrt_status flowrt_trainer_params_init(flowrt_trainer_params *params);
flowrt_trainer_params_init = _declare("flowrt_trainer_params_init", c_int, POINTER(flowrt_trainer_params))


def flowrt_trainer_default_params():
    """The defaults (the header's static inline flowrt_trainer_default_params)."""
    return _defaults(flowrt_trainer_params, flowrt_trainer_params_init)
# flowrt_status flowrt_trainer_create(const flowrt_model *init, const float *data, size_t n, size_t dim,
#                                     const flowrt_trainer_params *params, flowrt_trainer **out);
flowrt_trainer_create = _declare("flowrt_trainer_create", c_int, c_void_p, c_float_p, c_size_t, c_size_t,
                                 POINTER(flowrt_trainer_params), POINTER(c_void_p))
# flowrt_status flowrt_trainer_create_images(const flowrt_model *init, const uint8_t *pixels, size_t n,
#                                            size_t dim, const flowrt_trainer_params *params, flowrt_trainer **out);
flowrt_trainer_create_images = _declare("flowrt_trainer_create_images", c_int, c_void_p, c_void_p, c_size_t, c_size_t,
                                        POINTER(flowrt_trainer_params), POINTER(c_void_p))
# flowrt_status flowrt_trainer_step(flowrt_trainer *trainer, double *loss);
flowrt_trainer_step = _declare("flowrt_trainer_step", c_int, c_void_p, c_double_p)
# flowrt_status flowrt_trainer_fit(flowrt_trainer *trainer, uint64_t steps, flowrt_progress_fn progress, void *user_data);
flowrt_trainer_fit = _declare("flowrt_trainer_fit", c_int, c_void_p, c_uint64, progress_fn, c_void_p)
# flowrt_status flowrt_trainer_model(const flowrt_trainer *trainer, flowrt_model **out);
flowrt_trainer_model = _declare("flowrt_trainer_model", c_int, c_void_p, POINTER(c_void_p))
# flowrt_status flowrt_trainer_loss(const flowrt_trainer *trainer, double *train_loss, double *heldout_loss,
#                                   double *train_regression, double *heldout_regression);
flowrt_trainer_loss = _declare("flowrt_trainer_loss", c_int, c_void_p, c_double_p, c_double_p, c_double_p,
                               c_double_p)
# uint64_t flowrt_trainer_step_count(const flowrt_trainer *trainer);
flowrt_trainer_step_count = _declare("flowrt_trainer_step_count", c_uint64, c_void_p)
# flowrt_status flowrt_trainer_save_checkpoint(const flowrt_trainer *trainer, const char *path);
flowrt_trainer_save_checkpoint = _declare("flowrt_trainer_save_checkpoint", c_int, c_void_p, c_char_p)
# flowrt_status flowrt_trainer_load_checkpoint(flowrt_trainer *trainer, const char *path);
flowrt_trainer_load_checkpoint = _declare("flowrt_trainer_load_checkpoint", c_int, c_void_p, c_char_p)
# void flowrt_trainer_free(flowrt_trainer *trainer);
flowrt_trainer_free = _declare("flowrt_trainer_free", None, c_void_p)

# ---- path-length optimisation (section: training, after 0.2.0) ----


class flowrt_path_params(Structure):
    """typedef struct flowrt_path_params { uint32_t struct_size; uint32_t terms; double learning_rate;
    uint64_t warmup_steps; uint32_t network_steps; uint32_t batch_size; double coefficient_bound; }
    flowrt_path_params;"""
    _fields_ = [("struct_size", c_uint32), ("terms", c_uint32), ("learning_rate", c_double),
                ("warmup_steps", c_uint64), ("network_steps", c_uint32), ("batch_size", c_uint32),
                ("coefficient_bound", c_double)]


# flowrt_status flowrt_path_params_init(flowrt_path_params *params);
flowrt_path_params_init = _declare("flowrt_path_params_init", c_int, POINTER(flowrt_path_params))


def flowrt_path_default_params():
    """The defaults (the header's static inline flowrt_path_default_params)."""
    return _defaults(flowrt_path_params, flowrt_path_params_init)


# flowrt_status flowrt_trainer_create_path_length(const flowrt_model *init, const float *data, size_t n,
#     size_t dim, const flowrt_trainer_params *params, const flowrt_path_params *path, flowrt_trainer **out);
flowrt_trainer_create_path_length = _declare("flowrt_trainer_create_path_length", c_int, c_void_p, c_float_p,
                                             c_size_t, c_size_t, POINTER(flowrt_trainer_params),
                                             POINTER(flowrt_path_params), POINTER(c_void_p))
# flowrt_status flowrt_trainer_path_state(const flowrt_trainer *trainer, double *alpha, double *beta,
#                                         size_t capacity, size_t *terms, double *kinetic_energy);
flowrt_trainer_path_state = _declare("flowrt_trainer_path_state", c_int, c_void_p, c_double_p, c_double_p,
                                     c_size_t, POINTER(c_size_t), c_double_p)
# flowrt_status flowrt_trainer_flow(const flowrt_trainer *trainer, flowrt_flow **out);
flowrt_trainer_flow = _declare("flowrt_trainer_flow", c_int, c_void_p, POINTER(c_void_p))
# flowrt_status flowrt_flow_fourier_coefficients(const flowrt_flow *flow, double *alpha, double *beta,
#                                                size_t capacity, size_t *terms);
flowrt_flow_fourier_coefficients = _declare("flowrt_flow_fourier_coefficients", c_int, c_void_p, c_double_p,
                                            c_double_p, c_size_t, POINTER(c_size_t))

# ---- densities (section: densities), score and SDE (section: flows, score and SDE) ----
SDE_METHODS = {"heun": 0, "euler_maruyama": 1}
# typedef double (*flowrt_diffusion_fn)(void *user_data, double t);
diffusion_fn = ctypes.CFUNCTYPE(c_double, c_void_p, c_double)


class flowrt_sde_params(Structure):
    """typedef struct flowrt_sde_params { ... } flowrt_sde_params;"""
    _fields_ = [("struct_size", c_uint32), ("method", c_int32), ("steps", c_uint32), ("epsilon", c_double),
                ("taper", c_double), ("diffusion", diffusion_fn), ("diffusion_user_data", c_void_p),
                ("threads", c_uint32), ("progress", progress_fn), ("progress_user_data", c_void_p)]


# flowrt_status flowrt_flow_score(const flowrt_flow *flow, size_t n, const double *t, const float *x, float *score_out);
flowrt_flow_score = _declare("flowrt_flow_score", c_int, c_void_p, c_size_t, c_double_p, c_float_p, c_float_p)
# flowrt_status flowrt_sde_params_init(flowrt_sde_params *params);
flowrt_sde_params_init = _declare("flowrt_sde_params_init", c_int, POINTER(flowrt_sde_params))


def flowrt_sde_default_params():
    """The defaults (the header's static inline flowrt_sde_default_params)."""
    return _defaults(flowrt_sde_params, flowrt_sde_params_init)
# flowrt_status flowrt_flow_sample_sde(const flowrt_flow *flow, const flowrt_sde_params *params, uint64_t seed,
#                                      uint64_t first_index, size_t n, float *x_out);
flowrt_flow_sample_sde = _declare("flowrt_flow_sample_sde", c_int, c_void_p, POINTER(flowrt_sde_params), c_uint64,
                                  c_uint64, c_size_t, c_float_p)
# flowrt_status flowrt_flow_sample_sde_range(const flowrt_flow *flow, uint64_t first_index, size_t n, uint64_t seed,
#                                            const flowrt_sde_params *params, float *x_out, flowrt_solver_stats *stats);
flowrt_flow_sample_sde_range = _declare("flowrt_flow_sample_sde_range", c_int, c_void_p, c_uint64, c_size_t, c_uint64,
                                        POINTER(flowrt_sde_params), c_float_p, POINTER(flowrt_solver_stats))

# typedef struct flowrt_density flowrt_density;
# typedef int (*flowrt_density_sample_fn)(void *user_data, uint64_t seed, uint64_t first_index,
#                                         size_t n, size_t dim, float *out);
density_sample_fn = ctypes.CFUNCTYPE(c_int, c_void_p, c_uint64, c_uint64, c_size_t, c_size_t, c_float_p)
# typedef int (*flowrt_density_log_prob_fn)(void *user_data, size_t n, size_t dim, const float *x, double *out);
density_log_prob_fn = ctypes.CFUNCTYPE(c_int, c_void_p, c_size_t, c_size_t, c_float_p, c_double_p)
# flowrt_status flowrt_density_create_callbacks(size_t dim, flowrt_density_sample_fn sample,
#     flowrt_density_log_prob_fn log_prob, void *user_data, flowrt_density **out);
flowrt_density_create_callbacks = _declare("flowrt_density_create_callbacks", c_int, c_size_t, density_sample_fn,
                                           density_log_prob_fn, c_void_p, POINTER(c_void_p))
# flowrt_status flowrt_density_create_diagonal_normal(size_t dim, const double *mean, const double *std,
#                                                     flowrt_density **out);
flowrt_density_create_diagonal_normal = _declare("flowrt_density_create_diagonal_normal", c_int, c_size_t,
                                                 c_double_p, c_double_p, POINTER(c_void_p))
# flowrt_status flowrt_density_create_empirical(size_t n, size_t dim, const float *x, flowrt_density **out);
flowrt_density_create_empirical = _declare("flowrt_density_create_empirical", c_int, c_size_t, c_size_t, c_float_p,
                                           POINTER(c_void_p))
# void flowrt_density_free(flowrt_density *density);
flowrt_density_free = _declare("flowrt_density_free", None, c_void_p)
# size_t flowrt_density_dim(const flowrt_density *density);
flowrt_density_dim = _declare("flowrt_density_dim", c_size_t, c_void_p)
# int flowrt_density_has_log_prob(const flowrt_density *density);
flowrt_density_has_log_prob = _declare("flowrt_density_has_log_prob", c_int, c_void_p)
# flowrt_status flowrt_density_sample(const flowrt_density *density, uint64_t seed, uint64_t first_index,
#                                     size_t n, float *out);
flowrt_density_sample = _declare("flowrt_density_sample", c_int, c_void_p, c_uint64, c_uint64, c_size_t, c_float_p)
# flowrt_status flowrt_density_sample_range(const flowrt_density *density, uint64_t first_index, size_t n,
#                                           uint64_t seed, float *out);
flowrt_density_sample_range = _declare("flowrt_density_sample_range", c_int, c_void_p, c_uint64, c_size_t, c_uint64,
                                       c_float_p)
# flowrt_status flowrt_density_log_prob(const flowrt_density *density, size_t n, const float *x, double *out);
flowrt_density_log_prob = _declare("flowrt_density_log_prob", c_int, c_void_p, c_size_t, c_float_p, c_double_p)
# flowrt_status flowrt_flow_create_with_base(const flowrt_model *model, const flowrt_flow_params *params,
#                                            const flowrt_density *base, flowrt_flow **out);
flowrt_flow_create_with_base = _declare("flowrt_flow_create_with_base", c_int, c_void_p, POINTER(flowrt_flow_params),
                                        c_void_p, POINTER(c_void_p))
# flowrt_status flowrt_trainer_create_from_densities(const flowrt_model *init, const flowrt_density *target,
#     const flowrt_density *base, size_t heldout, const flowrt_trainer_params *params, flowrt_trainer **out);
flowrt_trainer_create_from_densities = _declare("flowrt_trainer_create_from_densities", c_int, c_void_p, c_void_p,
                                                c_void_p, c_size_t, POINTER(flowrt_trainer_params), POINTER(c_void_p))
# typedef enum flowrt_coupling
COUPLINGS = {"independent": 0, "exact-ot": 1}
# flowrt_status flowrt_trainer_set_coupling(flowrt_trainer *trainer, int32_t coupling);
flowrt_trainer_set_coupling = _declare("flowrt_trainer_set_coupling", c_int, c_void_p, c_int32)

# Conditional flows (issue 15).
# size_t flowrt_flow_context_dim(const flowrt_flow *flow);
flowrt_flow_context_dim = _declare("flowrt_flow_context_dim", c_size_t, c_void_p)
# size_t flowrt_flow_num_classes(const flowrt_flow *flow);
flowrt_flow_num_classes = _declare("flowrt_flow_num_classes", c_size_t, c_void_p)
# flowrt_status flowrt_flow_sample_conditional(const flowrt_flow *flow, uint64_t first_index, size_t n, uint64_t seed,
#     const float *context, size_t context_rows, double guidance, const flowrt_solver_params *params,
#     float *x_out, double *log_prob_out, flowrt_solver_stats *stats);
flowrt_flow_sample_conditional = _declare("flowrt_flow_sample_conditional", c_int, c_void_p, c_uint64, c_size_t,
                                          c_uint64, c_float_p, c_size_t, c_double, POINTER(flowrt_solver_params),
                                          c_float_p, c_double_p, POINTER(flowrt_solver_stats))
# flowrt_status flowrt_flow_transport_conditional(const flowrt_flow *flow, size_t n, const float *x_in,
#     const float *context, double t_from, double t_to, const flowrt_solver_params *params, float *x_out,
#     flowrt_solver_stats *stats);
flowrt_flow_transport_conditional = _declare("flowrt_flow_transport_conditional", c_int, c_void_p, c_size_t, c_float_p,
                                             c_float_p, c_double, c_double, POINTER(flowrt_solver_params), c_float_p,
                                             POINTER(flowrt_solver_stats))
# flowrt_status flowrt_flow_encode_conditional(const flowrt_flow *flow, size_t n, const float *x,
#     const float *context, const flowrt_solver_params *params, float *z_out, flowrt_solver_stats *stats);
flowrt_flow_encode_conditional = _declare("flowrt_flow_encode_conditional", c_int, c_void_p, c_size_t, c_float_p,
                                          c_float_p, POINTER(flowrt_solver_params), c_float_p,
                                          POINTER(flowrt_solver_stats))
# flowrt_status flowrt_flow_log_prob_conditional(const flowrt_flow *flow, size_t n, const float *x,
#     const float *context, double t, const flowrt_solver_params *params, double *log_prob, double *std_error,
#     flowrt_solver_stats *stats);
flowrt_flow_log_prob_conditional = _declare("flowrt_flow_log_prob_conditional", c_int, c_void_p, c_size_t, c_float_p,
                                            c_float_p, c_double, POINTER(flowrt_solver_params), c_double_p,
                                            c_double_p, POINTER(flowrt_solver_stats))
# flowrt_status flowrt_model_create_mlp_conditional(const flowrt_mlp_params *params, size_t context_dim,
#                                                   flowrt_model **out);
flowrt_model_create_mlp_conditional = _declare("flowrt_model_create_mlp_conditional", c_int, POINTER(flowrt_mlp_params),
                                               c_size_t, POINTER(c_void_p))
# flowrt_status flowrt_trainer_create_conditional(const flowrt_model *init, const float *data, const float *context,
#     size_t n, size_t dim, size_t context_dim, const flowrt_trainer_params *params, flowrt_trainer **out);
flowrt_trainer_create_conditional = _declare("flowrt_trainer_create_conditional", c_int, c_void_p, c_float_p, c_float_p,
                                             c_size_t, c_size_t, c_size_t, POINTER(flowrt_trainer_params),
                                             POINTER(c_void_p))
# flowrt_status flowrt_model_create_mlp_labels(const flowrt_mlp_params *params, size_t num_classes,
#                                              size_t embedding_width, flowrt_model **out);
flowrt_model_create_mlp_labels = _declare("flowrt_model_create_mlp_labels", c_int, POINTER(flowrt_mlp_params),
                                          c_size_t, c_size_t, POINTER(c_void_p))

# Issue 14: native U-Net image velocities.
class flowrt_unet_params(Structure):
    """typedef struct flowrt_unet_params { ... } flowrt_unet_params;"""
    _fields_ = [("struct_size", c_uint32), ("channels", c_uint32), ("height", c_uint32), ("width", c_uint32),
                ("model_channels", c_uint32), ("channel_mult", c_uint32 * 4), ("channel_mult_count", c_uint32),
                ("res_blocks", c_uint32), ("attention", c_uint32 * 4), ("attention_count", c_uint32),
                ("heads", c_uint32), ("groups", c_uint32), ("num_classes", c_uint32), ("reserved", c_uint32),
                ("seed", c_uint64)]


# flowrt_status flowrt_unet_params_init(flowrt_unet_params *params);
flowrt_unet_params_init = _declare("flowrt_unet_params_init", c_int, POINTER(flowrt_unet_params))


def flowrt_unet_default_params():
    """The defaults (the header's static inline flowrt_unet_default_params)."""
    return _defaults(flowrt_unet_params, flowrt_unet_params_init)


# flowrt_status flowrt_model_create_unet(const flowrt_unet_params *params, flowrt_model **out);
flowrt_model_create_unet = _declare("flowrt_model_create_unet", c_int, POINTER(flowrt_unet_params), POINTER(c_void_p))


# Issue 17: bfloat16 evaluation.
# typedef enum flowrt_precision { FLOWRT_PRECISION_FLOAT32 = 0, FLOWRT_PRECISION_BF16 = 1 } flowrt_precision;
PRECISIONS = {"float32": 0, "bf16": 1}
# typedef enum flowrt_precision_use { FLOWRT_PRECISION_FOR_VELOCITY = 0, FLOWRT_PRECISION_FOR_LIKELIHOOD = 1 }
PRECISION_USES = {"velocity": 0, "likelihood": 1}
# int flowrt_bf16_available(void);
flowrt_bf16_available = _declare("flowrt_bf16_available", c_int)
# flowrt_status flowrt_model_set_precision(flowrt_model *model, int use, int precision);
flowrt_model_set_precision = _declare("flowrt_model_set_precision", c_int, c_void_p, c_int, c_int)
# flowrt_status flowrt_model_get_precision(const flowrt_model *model, int use, int *requested, int *effective);
flowrt_model_get_precision = _declare("flowrt_model_get_precision", c_int, c_void_p, c_int, POINTER(c_int),
                                      POINTER(c_int))
# flowrt_status flowrt_flow_set_precision(flowrt_flow *flow, int use, int precision);
flowrt_flow_set_precision = _declare("flowrt_flow_set_precision", c_int, c_void_p, c_int, c_int)
# flowrt_status flowrt_flow_get_precision(const flowrt_flow *flow, int use, int *requested, int *effective);
flowrt_flow_get_precision = _declare("flowrt_flow_get_precision", c_int, c_void_p, c_int, POINTER(c_int),
                                     POINTER(c_int))
