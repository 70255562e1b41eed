/*
 * flowrt.h — the C ABI of FlowRuntime, an embeddable runtime for continuous
 * normalizing flows built from stochastic interpolants (InterFlow: Albergo &
 * Vanden-Eijnden, ICLR 2023).
 *
 * This header is hand-written and is the single source of truth for the ABI.
 *
 * Conventions (read once, they hold for every function):
 *   - Every fallible function returns a flowrt_status; FLOWRT_OK is 0.
 *     flowrt_status_string() gives a static description of a code and
 *     flowrt_last_error_message() the calling thread's message for its last
 *     failed call (names the argument, node or file).
 *   - Objects are opaque handles created by a named constructor and released
 *     with the matching _free function; _free(NULL) is a no-op.
 *   - Params structs start with `uint32_t struct_size`, are obtained from
 *     flowrt_*_default_params() and passed by const pointer; fields are only
 *     ever appended, so a struct from an older header stays valid.
 *     struct_size must be the sizeof of some version of the header (any
 *     other value is FLOWRT_INVALID_ARGUMENT: it would cut a field).
 *   - Tensors cross as caller-owned, contiguous, row-major buffers plus
 *     sizes: x is [n, dim] floats, t is [n] doubles. Nothing is retained
 *     after a call returns. Bytes the library allocates for the caller are
 *     released with flowrt_buffer_free().
 *   - Batch sizes (every `size_t n` of a batch call: velocity, divergence,
 *     sample, sample_range, transport, encode, log_prob, score, sample_sde,
 *     density and dataset sample/log_prob): n = 0 is an empty batch: the call
 *     checks its other arguments, returns FLOWRT_OK and writes nothing (its
 *     buffers may then be NULL; statistics report 0 samples). n ≥ 2^40, or
 *     n * dim ≥ 2^40, is FLOWRT_INVALID_ARGUMENT. Sizes in messages are
 *     printed unsigned ("n = 18446744073709551615 is too large").
 *   - Memory: batch calls stream, in blocks of up to 65 536 samples (64
 *     solver chunks of 1024; fewer chunks when a block's solver states
 *     would exceed 32 MB), straight into the caller's buffers, so their scratch
 *     is bounded by the block, not by n, and results are bit-identical to
 *     one unblocked run. An allocation the system refuses is
 *     FLOWRT_OUT_OF_MEMORY with a message naming the call and the byte
 *     count; the library never aborts the host because memory ran out.
 *     Calls that keep a copy of their input (flowrt_density_create_empirical,
 *     flowrt_trainer_create) need that copy in memory.
 *   - Time runs from t = 0 (base density) to t = 1 (data).
 *   - flowrt_model and flowrt_flow are immutable after creation and safe to
 *     use from many threads at once; a flowrt_trainer is used by one thread
 *     at a time.
 *   - Process-wide state: the thread-local last-error message, and OpenBLAS
 *     set to one thread when the first model is built (FlowRuntime
 *     parallelises over batch chunks itself). Nothing else is global; there
 *     is no global random generator: every random draw takes a seed.
 *   - Status codes are append-only. Any fallible call may also return
 *     FLOWRT_INTERNAL (a bug; the message says where).
 *   - Exception to "nothing is retained": a density made from host
 *     callbacks (flowrt_density_create_callbacks) keeps its function
 *     pointers and user_data until it and every flow using it are freed;
 *     a trainer or flow with a host schedule (FLOWRT_INTERPOLANT_CUSTOM)
 *     keeps schedule_fn and schedule_user_data until it is freed.
 */
#ifndef FLOWRT_H
#define FLOWRT_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32)
#define FLOWRT_API __declspec(dllimport)
#else
#define FLOWRT_API __attribute__((visibility("default")))
#endif

/* ---------------------------------------------------------------------------
 * Version
 * ------------------------------------------------------------------------ */

#define FLOWRT_VERSION_MAJOR 0
#define FLOWRT_VERSION_MINOR 2
#define FLOWRT_VERSION_PATCH 0
/** MAJOR * 10000 + MINOR * 100 + PATCH. */
#define FLOWRT_VERSION_NUMBER \
    (FLOWRT_VERSION_MAJOR * 10000 + FLOWRT_VERSION_MINOR * 100 + FLOWRT_VERSION_PATCH)
#define FLOWRT_VERSION_STRING "0.2.0"

/* ----- Limits (added after 0.2.0; FlowRuntime's Limits, defined once) ---- */
/** The most worker threads any `threads` field accepts (0 = all processors);
 *  more is FLOWRT_INVALID_ARGUMENT. */
#define FLOWRT_MAX_THREADS 4096
/** Hutchinson probes per sample are 1..FLOWRT_MAX_PROBES. */
#define FLOWRT_MAX_PROBES 4096
/* ----- end of limits ----------------------------------------------------- */

/** The library's version number (compare with FLOWRT_VERSION_NUMBER to
 *  detect a header/library mismatch). Thread-safe. */
FLOWRT_API uint32_t flowrt_version_number(void);

/** The library's version as static text, e.g. "0.1.0". Thread-safe. */
FLOWRT_API const char *flowrt_version_string(void);

/* ---------------------------------------------------------------------------
 * Status codes and errors
 * ------------------------------------------------------------------------ */

typedef enum flowrt_status {
    FLOWRT_OK = 0,
    /** An argument is NULL, zero, out of range, or a params struct has a bad
     *  struct_size. */
    FLOWRT_INVALID_ARGUMENT = 1,
    /** Sizes or shapes that do not agree (e.g. dim of x vs. the model). */
    FLOWRT_SHAPE_MISMATCH = 2,
    /** A NaN or infinity in an input that must be finite. */
    FLOWRT_NON_FINITE = 3,
    /** A malformed or inconsistent model file or buffer. */
    FLOWRT_INVALID_MODEL = 4,
    /** Valid input FlowRuntime does not implement (an ONNX op, a dtype). */
    FLOWRT_UNSUPPORTED = 5,
    /** A file could not be read or written. */
    FLOWRT_IO_ERROR = 6,
    /** A progress callback returned non-zero. */
    FLOWRT_CANCELLED = 7,
    /** An allocation was refused (too large, or failed); the message names
     *  the call and the byte count. */
    FLOWRT_OUT_OF_MEMORY = 8,
    /** A solver did not finish every sample (max steps, non-finite state);
     *  per-call statistics say which. Outputs are still written. */
    FLOWRT_SOLVER_INCOMPLETE = 9,
    /** A bug in FlowRuntime; please report it with the message. */
    FLOWRT_INTERNAL = 10,
    /** An adaptive solve stopped for some samples because the step size
     *  underflowed (below 1e-14 · max(1, |t|)) with a finite state: the
     *  error control cannot be met there (the field is singular or blows up,
     *  or rtol/atol are below float rounding). Raising max_steps does not
     *  help. The message names the first such sample, its time and step;
     *  outputs are written as for FLOWRT_SOLVER_INCOMPLETE and
     *  flowrt_solver_stats.step_underflow_samples counts them. Returned
     *  instead of FLOWRT_SOLVER_INCOMPLETE when any sample underflowed
     *  (0.2.0 reported these as max steps). Added after 0.2.0. */
    FLOWRT_STEP_UNDERFLOW = 11
} flowrt_status;

/** Static, human-readable description of a status code ("invalid
 *  argument"); "unknown status" for codes this version does not know.
 *  Never NULL. Thread-safe. */
FLOWRT_API const char *flowrt_status_string(flowrt_status status);

/** The calling thread's message for its most recent failed call, or "" if
 *  none failed yet. Valid until the thread's next failed call into the
 *  library. Never NULL. Thread-local. */
FLOWRT_API const char *flowrt_last_error_message(void);

/** Releases bytes the library allocated for the caller (exported ONNX
 *  buffers, metadata strings). flowrt_buffer_free(NULL) is a no-op. */
FLOWRT_API void flowrt_buffer_free(void *buffer);

/* ---------------------------------------------------------------------------
 * Progress callbacks
 * ------------------------------------------------------------------------ */

/** Called periodically by long operations. `done` of `total` work units
 *  (steps, samples) are finished; `value` is an operation-specific figure
 *  (training: the current loss; otherwise 0). Return 0 to continue, non-zero
 *  to stop: the call then returns FLOWRT_CANCELLED. Called on the thread
 *  that made the call. */
typedef int (*flowrt_progress_fn)(void *user_data, uint64_t done, uint64_t total, double value);

/* ---------------------------------------------------------------------------
 * Models: velocity networks v(t, x)
 * ------------------------------------------------------------------------ */

/** A velocity network. Immutable after creation; thread-safe. */
typedef struct flowrt_model flowrt_model;

/** Hidden-layer activations of native MLPs (PyTorch's definitions). */
typedef enum flowrt_activation {
    FLOWRT_ACT_SILU = 0,       /**< x·σ(x) */
    FLOWRT_ACT_TANH = 1,
    FLOWRT_ACT_RELU = 2,
    FLOWRT_ACT_GELU = 3,       /**< exact (erf) form */
    FLOWRT_ACT_SOFTPLUS = 4,   /**< β = 1, threshold 20 */
    FLOWRT_ACT_SIGMOID = 5,
    FLOWRT_ACT_ELU = 6,        /**< α = 1 */
    FLOWRT_ACT_SELU = 7,
    FLOWRT_ACT_LEAKY_RELU = 8  /**< negative slope 0.01 */
} flowrt_activation;

typedef enum flowrt_time_encoding {
    /** t appended to x: first layer input width dim + 1. */
    FLOWRT_TIME_CONCAT = 0,
    /** [sin(2π f_i t), cos(2π f_i t)], f_i = 2^(i/2), i < time_frequencies. */
    FLOWRT_TIME_SINUSOIDAL = 1
} flowrt_time_encoding;

/** Architecture of a native MLP velocity v(t, x). */
typedef struct flowrt_mlp_params {
    uint32_t struct_size;    /**< sizeof(flowrt_mlp_params). */
    uint32_t dim;            /**< State dimension d, 1..65536 (default 2). */
    uint32_t depth;          /**< Hidden layers (default 3). */
    uint32_t width;          /**< Units per hidden layer (default 256). */
    int32_t activation;      /**< flowrt_activation (default SILU). */
    int32_t time_encoding;   /**< flowrt_time_encoding (default CONCAT). */
    uint32_t time_frequencies; /**< Sinusoidal frequencies K, 1..1024; used with
                                  FLOWRT_TIME_SINUSOIDAL only (default 16). */
    int32_t residual;        /**< Non-zero: residual blocks with LayerNorm (default 0). */
    uint64_t seed;           /**< Initialisation seed (default 0). */
} flowrt_mlp_params;

/** Fills *params with the defaults, up to params->struct_size bytes (set
 *  struct_size = sizeof(flowrt_mlp_params) first); the field comments give them.
 *  @return FLOWRT_OK; FLOWRT_INVALID_ARGUMENT (NULL, or a struct_size this
 *          library does not know). Thread-safe. */
FLOWRT_API flowrt_status flowrt_mlp_params_init(flowrt_mlp_params *params);

/** The defaults as a value. Header-only: struct_size is the size this
 *  program was compiled with, so a newer library never writes past it. */
static inline flowrt_mlp_params flowrt_mlp_default_params(void) {
    flowrt_mlp_params p;
    memset(&p, 0, sizeof p);
    p.struct_size = (uint32_t)sizeof p;
    (void)flowrt_mlp_params_init(&p);
    return p;
}

/** Creates an MLP velocity network initialised from params->seed.
 *  @param params  in, non-NULL.
 *  @param out     out, non-NULL: receives the model; free with flowrt_model_free.
 *  @return FLOWRT_OK; FLOWRT_INVALID_ARGUMENT (NULL pointer, bad
 *          struct_size, dim or width outside 1..65536, depth outside 1..1024,
 *          time_frequencies outside 1..1024 with SINUSOIDAL, unknown
 *          activation or encoding).
 *  Thread-safe. */
FLOWRT_API flowrt_status flowrt_model_create_mlp(const flowrt_mlp_params *params, flowrt_model **out);

/** Creates a conditional MLP v(t, x, c): the MLP of flowrt_model_create_mlp
 *  with a context of context_dim floats concatenated after x and the time
 *  features ([x, φ(t), c]); context_dim = 0 gives exactly
 *  flowrt_model_create_mlp's model.
 *  @param params       in, non-NULL (as flowrt_model_create_mlp).
 *  @param context_dim  context values per sample, 0..65536.
 *  @param out          out, non-NULL: free with flowrt_model_free.
 *  @return as flowrt_model_create_mlp, plus FLOWRT_INVALID_ARGUMENT for
 *          context_dim > 65536. Thread-safe. */
FLOWRT_API flowrt_status flowrt_model_create_mlp_conditional(const flowrt_mlp_params *params, size_t context_dim,
                                                             flowrt_model **out);

/** Creates a label-conditional MLP v(t, x, y): the MLP of
 *  flowrt_model_create_mlp with a class label y per sample (context_dim 1,
 *  an exact integer float in 0..num_classes-1) selecting a learned
 *  embedding row [embedding_width] (initialised N(0, 1)) concatenated
 *  after x and the time features. For guidance, train with label_dropout
 *  > 0 and keep the last class for the null label (real labels
 *  0..num_classes-2).
 *  @param params           in, non-NULL (as flowrt_model_create_mlp).
 *  @param num_classes      classes, 1..2^20 (including the null class).
 *  @param embedding_width  embedding width, 0..65536 (0 = 16).
 *  @param out              out, non-NULL: free with flowrt_model_free.
 *  @return as flowrt_model_create_mlp, plus FLOWRT_INVALID_ARGUMENT for
 *          num_classes or embedding_width out of range. Thread-safe. */
FLOWRT_API flowrt_status flowrt_model_create_mlp_labels(const flowrt_mlp_params *params, size_t num_classes,
                                                        size_t embedding_width, flowrt_model **out);

/** Releases a model. NULL is a no-op. Flows created from it keep their own
 *  reference, so freeing the model while a flow uses it is safe. */
FLOWRT_API void flowrt_model_free(flowrt_model *model);

/** The state dimension d of a model (0 for NULL). Thread-safe. */
FLOWRT_API size_t flowrt_model_dim(const flowrt_model *model);

/** Number of trainable scalars in the model (0 for NULL). Thread-safe. */
FLOWRT_API size_t flowrt_model_parameter_count(const flowrt_model *model);

/** The sample shape of a model: the per-sample shape of x, [dim] for
 *  vectors, [C, H, W] for an image network. At the ABI a batch is always
 *  [n, dim] row-major floats with dim = the product of the shape; the shape
 *  is metadata (for reshaping on the host side).
 *  @param model     in, non-NULL.
 *  @param shape     out, nullable when capacity is 0: receives the extents.
 *  @param capacity  entries available in shape.
 *  @param rank      out, non-NULL: receives the number of axes (1..6).
 *  @return FLOWRT_OK; FLOWRT_INVALID_ARGUMENT (NULL model or rank, or a
 *          capacity below the rank: *rank is still set, so a first call with
 *          capacity 0 asks for the size). Thread-safe. */
FLOWRT_API flowrt_status flowrt_model_shape(const flowrt_model *model, size_t *shape, size_t capacity,
                                            size_t *rank);

/** Context values per sample of a conditional model: m for a float context
 *  [n, m], 1 for an integer class label carried as a float, 0 for an
 *  unconditional model (and for NULL). Thread-safe. */
FLOWRT_API size_t flowrt_model_context_dim(const flowrt_model *model);

/** The number of classes of a label-conditional model (labels are
 *  0..classes-1), 0 otherwise (and for NULL). Thread-safe. */
FLOWRT_API size_t flowrt_model_num_classes(const flowrt_model *model);

/** Evaluates v[i] = v(t[i], x[i], c[i]) for a conditional model.
 *  @param context  in, [n, context_dim] floats (class labels as exact
 *                  integers 0..classes-1); may be NULL only when the model
 *                  is unconditional (context_dim 0), where this equals
 *                  flowrt_model_velocity.
 *  Other parameters as flowrt_model_velocity.
 *  @return as flowrt_model_velocity, plus FLOWRT_INVALID_ARGUMENT (a NULL
 *          context for a conditional model, a label that is not a class)
 *          and FLOWRT_NON_FINITE (NaN/Inf in the context).
 *  Thread-safe. */
FLOWRT_API flowrt_status flowrt_model_velocity_conditional(const flowrt_model *model, size_t n, const double *t,
                                                           const float *x, const float *context, float *v);

/** Evaluates v[i] = v(t[i], x[i]) for i < n.
 *  @param model  in, non-NULL.
 *  @param n      number of samples (0: an empty batch, see Conventions).
 *  @param t      in, [n] times (finite).
 *  @param x      in, [n, dim] points (finite).
 *  @param v      out, [n, dim]; may not alias x.
 *  @return FLOWRT_OK; FLOWRT_INVALID_ARGUMENT (NULL pointer, n or
 *          n * dim ≥ 2^40); FLOWRT_NON_FINITE (NaN/Inf in t or x).
 *  Thread-safe: any number of threads may evaluate one model at once. */
FLOWRT_API flowrt_status flowrt_model_velocity(const flowrt_model *model, size_t n,
                                               const double *t, const float *x, float *v);

/** Exact divergence ∇·v(t[i], x[i]) = trace of the Jacobian, from one
 *  batched forward-mode pass with d tangents (about (1 + d) forward passes).
 *  @param v    out, [n, dim], or NULL if the velocity is not wanted.
 *  @param div  out, [n].
 *  Other parameters and return codes as flowrt_model_velocity, plus
 *  FLOWRT_NON_FINITE when a divergence overflows (the network is not finite
 *  there). Thread-safe. */
FLOWRT_API flowrt_status flowrt_model_divergence(const flowrt_model *model, size_t n,
                                                 const double *t, const float *x,
                                                 float *v, double *div);

/** Architecture of a native U-Net image velocity v(t, x[, y]) (guided-
 *  diffusion / torchcfm layout: sinusoidal time embedding → MLP, residual
 *  blocks GroupNorm–SiLU–Conv with time FiLM, down/up sampling, skip
 *  connections, self-attention at chosen resolutions, optional class
 *  labels). x is [n, channels·height·width] at the ABI (C, H, W row-major);
 *  flowrt_model_shape reports [channels, height, width]. */
typedef struct flowrt_unet_params {
    uint32_t struct_size;      /**< sizeof(flowrt_unet_params). */
    uint32_t channels;         /**< Image channels C, 1..4096 (default 1). */
    uint32_t height;           /**< Image height H (default 28); divisible by 2^(levels-1). */
    uint32_t width;            /**< Image width W (default 28); divisible by 2^(levels-1). */
    uint32_t model_channels;   /**< Channels of the first level, even (default 32). */
    uint32_t channel_mult[4];  /**< Channel multiplier per level (default {1, 2, 2}). */
    uint32_t channel_mult_count; /**< Levels: entries used in channel_mult, 1..4 (default 3). */
    uint32_t res_blocks;       /**< Residual blocks per level on the way down (default 1). */
    uint32_t attention[4];     /**< Feature-map heights with self-attention after
                                    each residual block (default {14}: the 14×14
                                    level of a 28×28 image); the middle block
                                    always has attention. */
    uint32_t attention_count;  /**< Entries used in attention, 0..4 (default 1). */
    uint32_t heads;            /**< Attention heads (default 1). */
    uint32_t groups;           /**< GroupNorm groups, at most (default 32). */
    uint32_t num_classes;      /**< Class labels (context = one label per sample);
                                    0 = unconditional (default 0). */
    uint32_t reserved;         /**< Must be 0. */
    uint64_t seed;             /**< Initialisation seed (PyTorch's default init; default 0). */
} flowrt_unet_params;

/** Fills *params with the defaults, up to params->struct_size bytes (set
 *  struct_size = sizeof(flowrt_unet_params) first); the field comments give them.
 *  @return FLOWRT_OK; FLOWRT_INVALID_ARGUMENT (NULL, or a struct_size this
 *          library does not know). Thread-safe. */
FLOWRT_API flowrt_status flowrt_unet_params_init(flowrt_unet_params *params);

/** The defaults as a value. Header-only: struct_size is the size this
 *  program was compiled with, so a newer library never writes past it. */
static inline flowrt_unet_params flowrt_unet_default_params(void) {
    flowrt_unet_params p;
    memset(&p, 0, sizeof p);
    p.struct_size = (uint32_t)sizeof p;
    (void)flowrt_unet_params_init(&p);
    return p;
}

/** Creates a U-Net velocity network initialised from params->seed; the
 *  same network, parameter names and weights as FlowRuntime's Swift
 *  VelocityUNet builder (and as torchcfm's UNetModel for its state dict).
 *  @param params  in, non-NULL.
 *  @param out     out, non-NULL: receives the model; free with flowrt_model_free.
 *  @return FLOWRT_OK; FLOWRT_INVALID_ARGUMENT (NULL pointer, bad struct_size,
 *          channel_mult_count outside 1..4, attention_count above 4, reserved
 *          not 0, or a configuration the builder rejects: odd model_channels,
 *          a size not divisible by 2^(levels-1), an attention height that is
 *          no level's, heads not dividing an attention block's channels).
 *  Thread-safe. */
FLOWRT_API flowrt_status flowrt_model_create_unet(const flowrt_unet_params *params, flowrt_model **out);

/* ---------------------------------------------------------------------------
 * ONNX import and export
 * ------------------------------------------------------------------------ */
/* (section: ONNX) */

/** Options for importing ONNX models. Get defaults from
 *  flowrt_onnx_default_options(); all fields may stay NULL. */
typedef struct flowrt_onnx_options {
    uint32_t struct_size;   /**< sizeof(flowrt_onnx_options). */
    /** Name of the graph input holding x [batch, dim]; NULL (default): matched
     *  by role (the [batch, d] input, or the first of two). */
    const char *x_name;
    /** Name of the graph input holding t ([batch, 1], [batch] or a scalar
     *  broadcast over the batch); NULL (default): matched by role (an input
     *  named t/time/timestep, or the lower-rank one, or the second). A model
     *  with a single [batch, d + 1] input is read as concat(x, t). */
    const char *t_name;
    /** Folder against which external-data locations are resolved when
     *  loading from a buffer; NULL (default): a buffer whose weights are in
     *  external files is an error. Ignored by flowrt_model_load_onnx (which
     *  uses the model file's folder). */
    const char *directory;
    /** Name of the graph input holding a context (float [batch, m], or
     *  integer class labels [batch]); NULL (default): matched by role (the
     *  third input that is neither x nor t). Appended in 0.2: a struct_size
     *  of the 0.1 struct (without it) is still accepted. */
    const char *context_name;
} flowrt_onnx_options;

/** Fills *params with the defaults, up to params->struct_size bytes (set
 *  struct_size = sizeof(flowrt_onnx_options) first); the field comments give them.
 *  @return FLOWRT_OK; FLOWRT_INVALID_ARGUMENT (NULL, or a struct_size this
 *          library does not know). Thread-safe. */
FLOWRT_API flowrt_status flowrt_onnx_options_init(flowrt_onnx_options *params);

/** The defaults as a value. Header-only: struct_size is the size this
 *  program was compiled with, so a newer library never writes past it. */
static inline flowrt_onnx_options flowrt_onnx_default_options(void) {
    flowrt_onnx_options p;
    memset(&p, 0, sizeof p);
    p.struct_size = (uint32_t)sizeof p;
    (void)flowrt_onnx_options_init(&p);
    return p;
}

/** Imports an ONNX velocity network v(t, x) from a file, as exported by
 *  torch.onnx.export (dynamo or legacy, opset 7..23, IR up to 10) or by
 *  flowrt_model_save_onnx. External data (`*.onnx.data`) is read relative to
 *  the file's folder; a location may not leave that folder. Shape-only
 *  subgraphs are folded at load with the batch symbolic; Gemm/MatMul + bias +
 *  activation and the exporters' SiLU/GELU/Softplus expansions are fused. The
 *  file's metadata_props become the model's metadata.
 *  @param path     in, non-NULL: NUL-terminated file path.
 *  @param options  in, nullable: input names (NULL: defaults).
 *  @param out      out, non-NULL: receives the model (NULL on failure); free
 *                  with flowrt_model_free.
 *  @return FLOWRT_OK; FLOWRT_INVALID_ARGUMENT (NULL path/out, bad
 *          struct_size, a named input that does not exist); FLOWRT_IO_ERROR
 *          (file or external data unreadable or too short);
 *          FLOWRT_INVALID_MODEL (not a valid ONNX protobuf, truncated,
 *          inconsistent sizes, absurd dimensions, external location escaping
 *          the folder); FLOWRT_UNSUPPORTED (an op, attribute or dtype
 *          FlowRuntime does not implement: the message names the op, node and
 *          opset); FLOWRT_SHAPE_MISMATCH (shapes that do not fit together).
 *  Thread-safe. Never crashes on malformed input; allocations are bounded by
 *  the bytes present. */
FLOWRT_API flowrt_status flowrt_model_load_onnx(const char *path, const flowrt_onnx_options *options,
                                                flowrt_model **out);

/** Imports an ONNX velocity network from serialized bytes; as
 *  flowrt_model_load_onnx, with external data resolved against
 *  options->directory.
 *  @param data  in, non-NULL: `size` bytes (not retained).
 *  @param size  number of bytes (> 0).
 *  Other parameters, return codes and thread-safety as flowrt_model_load_onnx. */
FLOWRT_API flowrt_status flowrt_model_load_onnx_buffer(const void *data, size_t size,
                                                       const flowrt_onnx_options *options,
                                                       flowrt_model **out);

/** Writes the model as one self-contained ONNX file (weights inline, IR 8,
 *  ai.onnx opset 17, inputs x [batch, dim] and t [batch, 1] (or [batch]),
 *  output [batch, dim], dynamic batch "batch"), with metadata_props
 *  "flowrt.*": the model's metadata plus flowrt.dimension and
 *  flowrt.time_convention. Writes to a temporary file beside `path` and
 *  renames it, so a failure never leaves a truncated file.
 *  @param model  in, non-NULL.
 *  @param path   in, non-NULL: NUL-terminated file path (replaced if present).
 *  @return FLOWRT_OK; FLOWRT_INVALID_ARGUMENT (NULL); FLOWRT_IO_ERROR.
 *          Every operation a model of this version can hold (built or
 *          imported) has an opset-17 export, so FLOWRT_UNSUPPORTED is not
 *          returned (0.2.0 listed it; the review of issue 16 found no path).
 *  Thread-safe. */
FLOWRT_API flowrt_status flowrt_model_save_onnx(const flowrt_model *model, const char *path);

/** The ONNX file flowrt_model_save_onnx would write, in memory.
 *  @param model  in, non-NULL.
 *  @param bytes  out, non-NULL: receives a buffer owned by the caller,
 *                released with flowrt_buffer_free (NULL on failure).
 *  @param size   out, non-NULL: receives its size in bytes.
 *  @return FLOWRT_OK; FLOWRT_INVALID_ARGUMENT; FLOWRT_OUT_OF_MEMORY (as
 *          flowrt_model_save_onnx, FLOWRT_UNSUPPORTED is not returned).
 *  Thread-safe. */
FLOWRT_API flowrt_status flowrt_model_export_onnx_buffer(const flowrt_model *model, void **bytes, size_t *size);

/** Name of a model input: index 0 is x, 1 is t (the ONNX input names of an
 *  imported model; for a single [x, t] input "<name>.x" and "<name>.t").
 *  @param model  in, non-NULL.
 *  @param index  0 (x) or 1 (t).
 *  @param name   out, non-NULL: a NUL-terminated copy, released with
 *                flowrt_buffer_free.
 *  @return FLOWRT_OK; FLOWRT_INVALID_ARGUMENT (NULL, index > 1);
 *          FLOWRT_OUT_OF_MEMORY. Thread-safe. */
FLOWRT_API flowrt_status flowrt_model_input_name(const flowrt_model *model, size_t index, char **name);

/** Name of the model's output value (the ONNX output name of an imported
 *  model).
 *  @param model  in, non-NULL.
 *  @param name   out, non-NULL: a NUL-terminated copy, released with
 *                flowrt_buffer_free.
 *  @return FLOWRT_OK; FLOWRT_INVALID_ARGUMENT (NULL); FLOWRT_OUT_OF_MEMORY.
 *  Thread-safe. */
FLOWRT_API flowrt_status flowrt_model_output_name(const flowrt_model *model, char **name);

/** Number of metadata entries (ONNX metadata_props of an imported model,
 *  flowrt.* entries of a native one). Returns 0 for NULL. Thread-safe. */
FLOWRT_API size_t flowrt_model_metadata_count(const flowrt_model *model);

/** The key of metadata entry `index` (keys in byte-wise sorted order).
 *  @param key  out, non-NULL: NUL-terminated copy, released with flowrt_buffer_free.
 *  @return FLOWRT_OK; FLOWRT_INVALID_ARGUMENT (NULL, index ≥ count);
 *          FLOWRT_OUT_OF_MEMORY. Thread-safe. */
FLOWRT_API flowrt_status flowrt_model_metadata_key(const flowrt_model *model, size_t index, char **key);

/** The metadata value stored under `key`.
 *  @param key    in, non-NULL: NUL-terminated key, e.g. "flowrt.interpolant".
 *  @param value  out, non-NULL: NUL-terminated copy, released with
 *                flowrt_buffer_free; NULL when the key is absent.
 *  @return FLOWRT_OK (also when absent: check *value); FLOWRT_INVALID_ARGUMENT
 *          (NULL); FLOWRT_OUT_OF_MEMORY. Thread-safe. */
FLOWRT_API flowrt_status flowrt_model_metadata(const flowrt_model *model, const char *key, char **value);

/* ---------------------------------------------------------------------------
 * Densities (host-defined, empirical, diagonal normal)
 * ------------------------------------------------------------------------ */
/* (section: densities) */
/* (Flows on a density base: flowrt_flow_create_with_base, see Flows;
 * trainers on densities: flowrt_trainer_create_from_densities, see Training.) */

/** A probability density on R^dim that can be sampled and, unless it is
 *  sample-only, evaluated: a base for flows (flowrt_flow_create_with_base).
 *  Immutable after creation; thread-safe if its callbacks are. */
typedef struct flowrt_density flowrt_density;

/** Host sampler: writes n samples, row-major [n, dim], to `out`. Sample i
 *  must depend only on (seed, first_index + i), so that results do not
 *  depend on how FlowRuntime splits a batch across calls and threads.
 *  May be called from several FlowRuntime worker threads at once. Return 0
 *  on success; non-zero marks the samples as failed (they are set to NaN and
 *  the calling operation reports FLOWRT_NON_FINITE). */
typedef int (*flowrt_density_sample_fn)(void *user_data, uint64_t seed, uint64_t first_index,
                                        size_t n, size_t dim, float *out);

/** Host log-density: writes log ρ(x[i]) in nats for i < n to `out`. Same
 *  threading and failure rules as flowrt_density_sample_fn. */
typedef int (*flowrt_density_log_prob_fn)(void *user_data, size_t n, size_t dim, const float *x,
                                          double *out);

/** Creates a density from host callbacks.
 *  @param dim        state dimension (1..65536).
 *  @param sample     in, non-NULL: the sampler.
 *  @param log_prob   in, nullable: the log-density; NULL makes a sample-only
 *                    density (usable as a data source or training base, not
 *                    as the base of a flow that evaluates log-densities).
 *  @param user_data  passed to both callbacks; must stay valid until the
 *                    density and every flow made from it are freed.
 *  @param out        out, non-NULL: receives the density (NULL on failure);
 *                    free with flowrt_density_free.
 *  @return FLOWRT_OK; FLOWRT_INVALID_ARGUMENT (NULL sample or out, dim out
 *          of range). Thread-safe. */
FLOWRT_API flowrt_status flowrt_density_create_callbacks(size_t dim, flowrt_density_sample_fn sample,
                                                         flowrt_density_log_prob_fn log_prob, void *user_data,
                                                         flowrt_density **out);

/** Creates N(mean, diag(std²)).
 *  @param mean  in, [dim], finite; NULL means all zeros.
 *  @param std   in, [dim], finite and > 0; NULL means all ones.
 *  @param out   out, non-NULL; free with flowrt_density_free.
 *  @return FLOWRT_OK; FLOWRT_INVALID_ARGUMENT (dim 0, NULL out, std ≤ 0);
 *          FLOWRT_NON_FINITE. Thread-safe. */
FLOWRT_API flowrt_status flowrt_density_create_diagonal_normal(size_t dim, const double *mean, const double *std,
                                                               flowrt_density **out);

/** Creates the empirical distribution of n points (copied): sampling
 *  resamples rows uniformly with replacement. Sample-only (no log-density):
 *  the base of data-to-data transport.
 *  @param x    in, [n, dim], finite.
 *  @param out  out, non-NULL; free with flowrt_density_free.
 *  @return FLOWRT_OK; FLOWRT_INVALID_ARGUMENT (NULL, n or dim 0);
 *          FLOWRT_NON_FINITE; FLOWRT_OUT_OF_MEMORY (no room for the copy).
 *          Thread-safe. */
FLOWRT_API flowrt_status flowrt_density_create_empirical(size_t n, size_t dim, const float *x,
                                                         flowrt_density **out);

/** Releases a density. NULL is a no-op. Flows made from it keep their own
 *  reference. */
FLOWRT_API void flowrt_density_free(flowrt_density *density);

/** The dimension of a density (0 for NULL). Thread-safe. */
FLOWRT_API size_t flowrt_density_dim(const flowrt_density *density);

/** Whether the density has a log-density (1) or is sample-only (0; 0 for NULL). */
FLOWRT_API int flowrt_density_has_log_prob(const flowrt_density *density);

/** Draws n samples; sample i depends only on (seed, first_index + i).
 *  @param out  out, [n, dim].
 *  @return FLOWRT_OK; FLOWRT_INVALID_ARGUMENT (NULL, n ≥ 2^40);
 *          FLOWRT_NON_FINITE (a host sampler failed or wrote NaN/Inf).
 *  Thread-safe if the callbacks are. */
FLOWRT_API flowrt_status flowrt_density_sample(const flowrt_density *density, uint64_t seed, uint64_t first_index,
                                               size_t n, float *out);

/* (added after 0.2.0: the sampling calls' one argument order) */
/** flowrt_density_sample with the argument order of every sampling call
 *  (first_index, n, seed); the same samples. (flowrt_density_sample_fn, a
 *  callback type, keeps its order: changing it would break hosts.)
 *  Parameters and return codes as flowrt_density_sample. */
FLOWRT_API flowrt_status flowrt_density_sample_range(const flowrt_density *density, uint64_t first_index, size_t n,
                                                     uint64_t seed, float *out);

/** log ρ(x[i]) in nats for i < n.
 *  @param x    in, [n, dim], finite.
 *  @param out  out, [n].
 *  @return FLOWRT_OK; FLOWRT_INVALID_ARGUMENT (NULL, n ≥ 2^40);
 *          FLOWRT_NON_FINITE (NaN in x, or a host callback failed);
 *          FLOWRT_UNSUPPORTED (a sample-only density). Thread-safe if the
 *          callbacks are. */
FLOWRT_API flowrt_status flowrt_density_log_prob(const flowrt_density *density, size_t n, const float *x,
                                                 double *out);

/* ---------------------------------------------------------------------------
 * Flows: transport, sampling and likelihood
 * ------------------------------------------------------------------------ */
/* (section: flows) */

/** A flow: a velocity model + the interpolant it was trained with + the base
 *  density ρ0 at t = 0 (DESIGN.md §1). Samples (base → data), transports,
 *  encodes (data → base) and evaluates log-densities at any t ∈ [0, 1].
 *  Immutable after creation; thread-safe: any number of threads may call
 *  one flow at once. */
typedef struct flowrt_flow flowrt_flow;

typedef enum flowrt_interpolant {
    /** α = cos(πt/2), β = sin(πt/2) (the InterFlow paper's default). */
    FLOWRT_INTERPOLANT_TRIG = 0,
    /** α = 1 − t, β = t. */
    FLOWRT_INTERPOLANT_LINEAR = 1,
    /** A host-supplied schedule: the params' schedule_fn (see
     *  flowrt_schedule_fn). Saved flows record it as "custom". */
    FLOWRT_INTERPOLANT_CUSTOM = 2
} flowrt_interpolant;

/** Host interpolant schedule: writes (α(t), β(t), α'(t), β'(t)) for
 *  t ∈ [0, 1] to coefficients[0..3] (primes are d/dt) and returns 0;
 *  non-zero means failure.
 *
 *  Contract:
 *    - A pure function of t, safe to call from several threads at once:
 *      trainers call it from their worker threads (threads > 1), flows from
 *      the calling thread of flowrt_flow_score / flowrt_flow_sample_sde.
 *    - Boundary conditions α(0) = 1, β(0) = 0, α(1) = 0, β(1) = 1 (within
 *      1e-9) and finite values at t = 0, 1/64, …, 1 are checked once, when
 *      the trainer or flow is created: a violation makes the create call fail
 *      with FLOWRT_INVALID_ARGUMENT (boundary, including a failure at t = 0
 *      or 1) or FLOWRT_NON_FINITE, and a message naming the values.
 *    - Failure at run time: coefficients[] holds NaN when the call starts,
 *      and a non-zero return sets all four to NaN. A non-finite coefficient
 *      (failure, or a NaN/∞ written) makes the calling operation return
 *      FLOWRT_NON_FINITE with a message naming the schedule and t
 *      (flowrt_trainer_step/fit: that step's update is not applied;
 *      flowrt_flow_score, flowrt_flow_sample_sde: nothing is written).
 *      The library never stores NaN weights because of it.
 *    - Sampling, transport, encoding and log-densities never call it: they
 *      need only the velocity.
 *  `user_data` is the params' schedule_user_data; it and the function must
 *  stay valid until every trainer and flow created with them is freed. */
typedef int (*flowrt_schedule_fn)(void *user_data, double t, double coefficients[4]);

typedef enum flowrt_base_density {
    /** N(0, I_d). */
    FLOWRT_BASE_STANDARD_NORMAL = 0
} flowrt_base_density;

/** What a flow is made of besides its model. */
typedef struct flowrt_flow_params {
    uint32_t struct_size;  /**< sizeof(flowrt_flow_params). */
    int32_t interpolant;   /**< flowrt_interpolant the model was trained with (default TRIG). */
    int32_t base;          /**< flowrt_base_density (default STANDARD_NORMAL). */
    flowrt_schedule_fn schedule_fn; /**< The schedule when interpolant is
                                FLOWRT_INTERPOLANT_CUSTOM (required then), NULL
                                otherwise (default NULL). Used by the score and
                                the SDE sampler only. (Appended in 0.1: a
                                struct_size without it, 12, is accepted and
                                means NULL.) */
    void *schedule_user_data; /**< Passed to schedule_fn (default NULL). */
} flowrt_flow_params;

/** Fills *params with the defaults, up to params->struct_size bytes (set
 *  struct_size = sizeof(flowrt_flow_params) first); the field comments give them.
 *  @return FLOWRT_OK; FLOWRT_INVALID_ARGUMENT (NULL, or a struct_size this
 *          library does not know). Thread-safe. */
FLOWRT_API flowrt_status flowrt_flow_params_init(flowrt_flow_params *params);

/** The defaults as a value. Header-only: struct_size is the size this
 *  program was compiled with, so a newer library never writes past it. */
static inline flowrt_flow_params flowrt_flow_default_params(void) {
    flowrt_flow_params p;
    memset(&p, 0, sizeof p);
    p.struct_size = (uint32_t)sizeof p;
    (void)flowrt_flow_params_init(&p);
    return p;
}

typedef enum flowrt_solver_method {
    /** Dormand–Prince 5(4), adaptive (per-sample step control) or fixed steps. */
    FLOWRT_SOLVER_DOPRI5 = 0,
    /** Forward Euler, order 1 (fixed steps only). */
    FLOWRT_SOLVER_EULER = 1,
    /** Heun (explicit trapezoid), order 2 (fixed steps only). */
    FLOWRT_SOLVER_HEUN = 2,
    /** Explicit midpoint, order 2 (fixed steps only). */
    FLOWRT_SOLVER_MIDPOINT = 3,
    /** Classical Runge–Kutta, order 4 (fixed steps only). */
    FLOWRT_SOLVER_RK4 = 4
} flowrt_solver_method;

typedef enum flowrt_divergence {
    /** Exact trace of the Jacobian: one batched pass with d tangents
     *  (about 1 + d forward passes per evaluation). */
    FLOWRT_DIVERGENCE_EXACT = 0,
    /** Hutchinson's unbiased estimator with `probes` probe vectors per sample
     *  (about 1 + probes forward passes); gives a standard error. */
    FLOWRT_DIVERGENCE_HUTCHINSON = 1,
    /** Exact for d ≤ 256, Hutchinson (with `probes` probes) above: an exact
     *  trace costs about d forward passes, a probe about one, so image flows
     *  (d = C·H·W) default to the estimator. The default since 0.2. */
    FLOWRT_DIVERGENCE_AUTO = 2
} flowrt_divergence;

typedef enum flowrt_probe_kind {
    FLOWRT_PROBE_RADEMACHER = 0,  /**< entries ±1 */
    FLOWRT_PROBE_GAUSSIAN = 1     /**< entries N(0, 1) */
} flowrt_probe_kind;

/** How a flow call integrates. Every sample carries its own time, step size
 *  and accept/reject decision; results do not depend on the batch it shares
 *  nor on the thread count. */
typedef struct flowrt_solver_params {
    uint32_t struct_size;     /**< sizeof(flowrt_solver_params). */
    int32_t method;           /**< flowrt_solver_method (default DOPRI5). */
    double rtol;              /**< Relative tolerance, adaptive runs (default 1e-5). */
    double atol;              /**< Absolute tolerance, adaptive runs (default 1e-5). */
    uint32_t fixed_steps;     /**< 0: adaptive steps (DOPRI5 only); > 0: that many
                                   equal steps over the interval (default 0). */
    uint32_t max_steps;       /**< Attempted steps per sample before giving up
                                   (default 10000). */
    int32_t divergence;       /**< flowrt_divergence for log-densities (default AUTO:
                                   exact for d ≤ 256, Hutchinson above). */
    uint32_t probes;          /**< Hutchinson probes per sample, 1..FLOWRT_MAX_PROBES (default 1). */
    int32_t probe_kind;       /**< flowrt_probe_kind (default RADEMACHER). */
    uint64_t seed;            /**< Seed of the Hutchinson probes (default 0); sample
                                   i's probes depend on (seed, i) only. */
    uint32_t threads;         /**< Worker threads; 0 = all processors (default 0). */
    flowrt_progress_fn progress; /**< Optional (default NULL): called on the calling
                                   thread with done = finished samples, total = n,
                                   value = mean fraction of the interval covered;
                                   non-zero return cancels (FLOWRT_CANCELLED).
                                   Reported while the call runs: after 1, 2, 4 and
                                   then every 8 attempted steps of each block of
                                   65 536 samples, so short runs (a few steps,
                                   typical of log_prob) report more than once. */
    void *progress_user_data; /**< Passed to progress (default NULL). */
    double max_step;          /**< Largest |step| of adaptive runs; 0 = unbounded
                                   (default 0). A cap such as 0.1 guards samples
                                   whose field is nearly still where they start
                                   against an over-long accepted first step.
                                   (Appended in 0.1: a struct_size without it is
                                   accepted and means 0.) */
} flowrt_solver_params;

/** Fills *params with the defaults, up to params->struct_size bytes (set
 *  struct_size = sizeof(flowrt_solver_params) first); the field comments give them.
 *  @return FLOWRT_OK; FLOWRT_INVALID_ARGUMENT (NULL, or a struct_size this
 *          library does not know). Thread-safe. */
FLOWRT_API flowrt_status flowrt_solver_params_init(flowrt_solver_params *params);

/** The defaults as a value. Header-only: struct_size is the size this
 *  program was compiled with, so a newer library never writes past it. */
static inline flowrt_solver_params flowrt_solver_default_params(void) {
    flowrt_solver_params p;
    memset(&p, 0, sizeof p);
    p.struct_size = (uint32_t)sizeof p;
    (void)flowrt_solver_params_init(&p);
    return p;
}

/** Per-call solver statistics (an output). Set struct_size to
 *  sizeof(flowrt_solver_stats) before the call: the library writes only the
 *  fields that fit, so older callers stay valid as fields are appended. */
typedef struct flowrt_solver_stats {
    uint32_t struct_size;          /**< in: sizeof(flowrt_solver_stats). */
    uint64_t samples;              /**< Samples integrated. */
    uint64_t steps;                /**< Accepted steps, summed over samples. */
    uint64_t rejections;           /**< Rejected steps, summed over samples. */
    uint64_t evaluations;          /**< Network evaluations, counted per sample. */
    uint64_t max_steps_samples;    /**< Samples stopped by max_steps. */
    uint64_t non_finite_samples;   /**< Samples whose state became NaN/Inf. */
    uint64_t max_steps_per_sample; /**< Most accepted steps of one sample. */
    uint64_t step_underflow_samples; /**< Samples stopped by a step-size underflow
                                        (FLOWRT_STEP_UNDERFLOW). Appended after
                                        0.2.0: written only when struct_size
                                        covers it. */
    int32_t precision;             /**< The flowrt_precision the network evaluations
                                        ran in (FLOWRT_PRECISION_FLOAT32 when bf16
                                        was requested but the CPU lacks AVX512_BF16);
                                        see flowrt_model_set_precision. (Appended
                                        after 0.2: older struct_sizes stay valid.) */
} flowrt_solver_stats;

/** Creates a flow around a model (a conditional model gives a conditional
 *  flow: see the section "Conditional flows").
 *  @param model   in, non-NULL. The flow keeps its own reference: the model
 *                 may be freed before the flow.
 *  @param params  in, nullable (NULL = defaults).
 *  @param out     out, non-NULL: receives the flow (NULL on failure); free
 *                 with flowrt_flow_free.
 *  @return FLOWRT_OK; FLOWRT_INVALID_ARGUMENT (NULL model or out, bad
 *          struct_size, unknown interpolant or base, CUSTOM without
 *          schedule_fn, schedule_fn with another interpolant, a schedule_fn
 *          violating the boundary conditions); FLOWRT_NON_FINITE (schedule_fn
 *          failed or was not finite at a checked time).
 *  Thread-safe. */
FLOWRT_API flowrt_status flowrt_flow_create(const flowrt_model *model, const flowrt_flow_params *params,
                                            flowrt_flow **out);

/** Creates a flow like flowrt_flow_create but with `base` as ρ0 (params->base
 *  is ignored). Sampling, transport, encoding and log-densities then use
 *  the base's sampler and log-density; the score and the SDE sampler need a
 *  Gaussian base (diagonal normal).
 *  @param base  in, non-NULL, with a log-density. The flow keeps its own
 *               reference.
 *  @return FLOWRT_OK; as flowrt_flow_create; FLOWRT_SHAPE_MISMATCH (base
 *          and model dimensions differ); FLOWRT_UNSUPPORTED (a sample-only
 *          base). Thread-safe. */
FLOWRT_API flowrt_status flowrt_flow_create_with_base(const flowrt_model *model, const flowrt_flow_params *params,
                                                      const flowrt_density *base, flowrt_flow **out);

/** Releases a flow. NULL is a no-op. Must not race with calls on the same flow. */
FLOWRT_API void flowrt_flow_free(flowrt_flow *flow);

/** The state dimension d of a flow (0 for NULL). Thread-safe. */
FLOWRT_API size_t flowrt_flow_dim(const flowrt_flow *flow);

/** Draws n samples of the model density (flowrt_flow_sample_range with
 *  first_index 0, which has the argument order of every sampling call:
 *  first_index, n, seed): base samples x0 (sample i from the
 *  seeded stream (seed, i), so any split of a batch gives the same samples)
 *  transported from t = 0 to 1. With log_prob_out, log ρ1 of each sample is
 *  integrated in the same pass (log ρ0(x0) − ∫ ∇·v), with the divergence
 *  chosen in params.
 *  Samples do not depend on log_prob_out: the same seed and params give
 *  bit-identical x_out with or without it. The adaptive step control looks
 *  at x only and the log-density change Δ is integrated on those steps, so
 *  its error follows the path's steps rather than being bounded by
 *  rtol/atol on its own (flowrt_flow_log_prob does bound it). (In 0.1 the
 *  error norm included Δ, which changed the steps and moved samples by
 *  about 1e-7.)
 *  @param flow          in, non-NULL.
 *  @param n             samples (0: an empty batch).
 *  @param seed          base-sample seed.
 *  @param params        in, nullable (NULL = flowrt_solver_default_params()).
 *  @param x_out         out, [n, dim].
 *  @param log_prob_out  out, nullable, [n]: log ρ1(x_out[i]) in nats.
 *  @param stats         out, nullable (struct_size set by the caller).
 *  @return FLOWRT_OK; FLOWRT_INVALID_ARGUMENT (NULL flow, NULL x_out with n > 0,
 *          n * dim ≥ 2^40, bad params: struct_size, method, tolerances,
 *          fixed_steps == 0 with a fixed-step method, probes, kinds);
 *          FLOWRT_NON_FINITE (a host base density failed to sample or, with
 *          log_prob_out, to evaluate);
 *          FLOWRT_CANCELLED (progress returned non-zero; outputs undefined);
 *          FLOWRT_SOLVER_INCOMPLETE (some samples hit max_steps or became
 *          non-finite: outputs are written, those samples hold their last
 *          state; stats count them).
 *          FLOWRT_STEP_UNDERFLOW (an adaptive step underflowed for some
 *          samples: as FLOWRT_SOLVER_INCOMPLETE, and the message names the
 *          first one's time and step).
 *  Thread-safe. */
FLOWRT_API flowrt_status flowrt_flow_sample(const flowrt_flow *flow, size_t n, uint64_t seed,
                                            const flowrt_solver_params *params, float *x_out,
                                            double *log_prob_out, flowrt_solver_stats *stats);

/** Samples first_index, …, first_index + n − 1 of the stream flowrt_flow_sample
 *  draws for `seed`: a batch split into ranges (across calls, processes or
 *  machines) gives exactly the samples of one call. With a Hutchinson
 *  divergence, the probes of sample i likewise depend on (probe seed, i).
 *  @param first_index  index of the first sample (≤ 2^62).
 *  Other parameters and return codes as flowrt_flow_sample. Thread-safe. */
FLOWRT_API flowrt_status flowrt_flow_sample_range(const flowrt_flow *flow, uint64_t first_index, size_t n,
                                                  uint64_t seed, const flowrt_solver_params *params,
                                                  float *x_out, double *log_prob_out, flowrt_solver_stats *stats);

/** Transports points from time t_from to t_to along the flow (t_to < t_from
 *  runs backward; both in [0, 1]).
 *  @param x_in   in, [n, dim], finite.
 *  @param x_out  out, [n, dim]; may alias x_in.
 *  Other parameters as flowrt_flow_sample.
 *  @return FLOWRT_OK; FLOWRT_INVALID_ARGUMENT (NULL pointers, n ≥ 2^40, times
 *          outside [0, 1] or not finite, bad params); FLOWRT_NON_FINITE
 *          (NaN/Inf in x_in); FLOWRT_CANCELLED; FLOWRT_SOLVER_INCOMPLETE;
 *          FLOWRT_STEP_UNDERFLOW (as flowrt_flow_sample).
 *  Thread-safe. */
FLOWRT_API flowrt_status flowrt_flow_transport(const flowrt_flow *flow, size_t n, const float *x_in,
                                               double t_from, double t_to, const flowrt_solver_params *params,
                                               float *x_out, flowrt_solver_stats *stats);

/** Encodes data into the base: the transport from t = 1 to t = 0.
 *  Parameters and return codes as flowrt_flow_transport. Thread-safe. */
FLOWRT_API flowrt_status flowrt_flow_encode(const flowrt_flow *flow, size_t n, const float *x,
                                            const flowrt_solver_params *params, float *z_out,
                                            flowrt_solver_stats *stats);

/** log ρ_t(x) for t ∈ [0, 1]: integrates (x, Δ) with dΔ/ds = ∇·v backward
 *  from t to 0 and adds the base log-density, log ρ_t(x) = log ρ0(X_0) + Δ(0).
 *  The divergence is exact or Hutchinson (params->divergence); the error
 *  control includes Δ, so rtol/atol bound the log-density's error too.
 *  @param x          in, [n, dim], finite.
 *  @param t          time in [0, 1] (1 = the model's data density).
 *  @param log_prob   out, [n], nats.
 *  @param std_error  out, nullable, [n]: Hutchinson standard error of each
 *                    log_prob (NaN with one probe; 0 for the exact divergence).
 *  Other parameters as flowrt_flow_sample.
 *  @return FLOWRT_OK; FLOWRT_INVALID_ARGUMENT (NULL pointers, n ≥ 2^40, t
 *          outside [0, 1], bad params); FLOWRT_NON_FINITE (NaN/Inf in x);
 *          FLOWRT_CANCELLED; FLOWRT_SOLVER_INCOMPLETE, FLOWRT_STEP_UNDERFLOW
 *          (as flowrt_flow_sample; log_prob of the
 *          unfinished samples is not meaningful). params->progress is
 *          called during the run (see flowrt_solver_params), not only at
 *          its end.
 *  Thread-safe. */
FLOWRT_API flowrt_status flowrt_flow_log_prob(const flowrt_flow *flow, size_t n, const float *x, double t,
                                              const flowrt_solver_params *params, double *log_prob,
                                              double *std_error, flowrt_solver_stats *stats);

/** Saves a flow as one self-contained ONNX file: the network plus metadata
 *  (flowrt.interpolant, flowrt.base, flowrt.dimension, flowrt.time_convention
 *  and the model's own flowrt.* entries), written to a temporary file and
 *  renamed, so an existing file is never left truncated. A host schedule
 *  (FLOWRT_INTERPOLANT_CUSTOM) is recorded as flowrt.interpolant = "custom":
 *  the file cannot hold the function (see flowrt_flow_load_onnx).
 *  @param flow  in, non-NULL.
 *  @param path  in, non-NULL.
 *  @return FLOWRT_OK; FLOWRT_INVALID_ARGUMENT (NULL); FLOWRT_UNSUPPORTED
 *          (a base other than the standard normal, e.g. from
 *          flowrt_flow_create_with_base);
 *          FLOWRT_IO_ERROR (cannot write; the previous file, if any, is intact).
 *  Thread-safe. */
FLOWRT_API flowrt_status flowrt_flow_save_onnx(const flowrt_flow *flow, const char *path);

/** Loads a flow from an ONNX file: the network (as flowrt_model_load_onnx),
 *  the interpolant named in its flowrt.interpolant metadata ("trig" when
 *  absent, e.g. for a network exported by PyTorch; "fourier" with the
 *  coefficients in flowrt.fourier.alpha / flowrt.fourier.beta, see
 *  flowrt_trainer_create_path_length) and a standard normal base.
 *
 *  A file that records "custom" (saved from a flow with a host schedule)
 *  loads without its schedule: sampling, transport, encoding and
 *  log-densities work as for any flow (they need only the velocity), while
 *  flowrt_flow_score and flowrt_flow_sample_sde return FLOWRT_UNSUPPORTED.
 *  To get them, rebuild the flow with the schedule: flowrt_model_load_onnx,
 *  then flowrt_flow_create with interpolant = FLOWRT_INTERPOLANT_CUSTOM and
 *  the same schedule_fn. Saving the loaded flow again records "custom".
 *  @param path     in, non-NULL.
 *  @param options  in, nullable (see flowrt_onnx_options).
 *  @param out      out, non-NULL: the flow (NULL on failure); free with flowrt_flow_free.
 *  @return as flowrt_model_load_onnx; FLOWRT_INVALID_MODEL also for an
 *          interpolant or base this version cannot rebuild, and for Fourier
 *          coefficients that are missing, not numbers, not finite, or
 *          unequal in number (the message names the key).
 *  Thread-safe. */
FLOWRT_API flowrt_status flowrt_flow_load_onnx(const char *path, const flowrt_onnx_options *options,
                                               flowrt_flow **out);

/** The flow's network as a model whose metadata describes the whole flow
 *  (what flowrt_flow_save_onnx writes): for flowrt_model_export_onnx_buffer
 *  or flowrt_model_metadata.
 *  @param out  out, non-NULL: a new model reference; free with flowrt_model_free.
 *  @return FLOWRT_OK; FLOWRT_INVALID_ARGUMENT (NULL); FLOWRT_UNSUPPORTED (the
 *          flow's base is not the standard normal). Thread-safe. */
FLOWRT_API flowrt_status flowrt_flow_model(const flowrt_flow *flow, flowrt_model **out);

/* ---------------------------------------------------------------------------
 * Flows: score and SDE sampling
 * ------------------------------------------------------------------------ */
/* (section: flows, score and SDE) */

/** The score s_t(x[i]) = ∇ log ρ_t(x[i]) at times t[i], from the velocity
 *  (Gaussian base N(μ, diag σ²), DESIGN.md §1):
 *      s = [(β'x − βv)/(α'β − αβ') + μ] / (α σ²).
 *  Singular times are refused, never clamped: where |α(α'β − αβ')| < 1e-6
 *  (t = 1, where α = 0, and wherever α'β = αβ') the call fails. Near t = 1
 *  the score amplifies velocity errors by about 1/α.
 *  @param t          in, [n], each in [0, 1].
 *  @param x          in, [n, dim], finite.
 *  @param score_out  out, [n, dim].
 *  @return FLOWRT_OK; FLOWRT_INVALID_ARGUMENT (NULL, n ≥ 2^40, t outside
 *          [0, 1] or singular); FLOWRT_NON_FINITE (NaN/Inf in t or x; a host
 *          schedule_fn failed or gave a non-finite value);
 *          FLOWRT_UNSUPPORTED (the flow's base is not Gaussian, or it was
 *          loaded from a file recording a "custom" schedule, which the file
 *          cannot hold: see flowrt_flow_load_onnx). Cost: one network evaluation.
 *  Thread-safe. */
FLOWRT_API flowrt_status flowrt_flow_score(const flowrt_flow *flow, size_t n, const double *t, const float *x,
                                           float *score_out);

typedef enum flowrt_sde_method {
    /** Stochastic Heun predictor–corrector (two evaluations per step). */
    FLOWRT_SDE_HEUN = 0,
    /** Euler–Maruyama (one evaluation per step). */
    FLOWRT_SDE_EULER_MARUYAMA = 1
} flowrt_sde_method;

/** Host diffusion coefficient ε(t) ≥ 0 (finite). Called on the calling
 *  thread, once per time of the grid. */
typedef double (*flowrt_diffusion_fn)(void *user_data, double t);

/** How flowrt_flow_sample_sde integrates dX = [v + ε s] dt + √(2ε) dW. */
typedef struct flowrt_sde_params {
    uint32_t struct_size;      /**< sizeof(flowrt_sde_params). */
    int32_t method;            /**< flowrt_sde_method (default HEUN). */
    uint32_t steps;            /**< Uniform steps over [0, 1] (default 200); the last
                                    is a deterministic ODE (Heun) step. */
    double epsilon;            /**< Constant ε0 ≥ 0 when diffusion is NULL (default 1). */
    double taper;              /**< ε is multiplied by min(1, |α(α'β − αβ')| / taper),
                                    which vanishes as α → 0 at t → 1 (default 0.1). */
    flowrt_diffusion_fn diffusion; /**< Optional ε(t) (default NULL: epsilon);
                                    the taper still applies. */
    void *diffusion_user_data; /**< Passed to diffusion (default NULL). */
    uint32_t threads;          /**< Worker threads; 0 = all processors (default 0).
                                    Results do not depend on it. */
    flowrt_progress_fn progress; /**< Optional (default NULL), as in flowrt_solver_params:
                                    called on the calling thread with done = finished
                                    samples, total = n, value = mean fraction of [0, 1]
                                    covered, after 1, 2, 4 and then every 8 steps of
                                    each block of samples; non-zero cancels
                                    (FLOWRT_CANCELLED). (Appended after 0.2.0: a
                                    struct_size without it means NULL.) */
    void *progress_user_data;  /**< Passed to progress (default NULL). */
} flowrt_sde_params;

/** Fills *params with the defaults, up to params->struct_size bytes (set
 *  struct_size = sizeof(flowrt_sde_params) first); the field comments give them.
 *  @return FLOWRT_OK; FLOWRT_INVALID_ARGUMENT (NULL, or a struct_size this
 *          library does not know). Thread-safe. */
FLOWRT_API flowrt_status flowrt_sde_params_init(flowrt_sde_params *params);

/** The defaults as a value. Header-only: struct_size is the size this
 *  program was compiled with, so a newer library never writes past it. */
static inline flowrt_sde_params flowrt_sde_default_params(void) {
    flowrt_sde_params p;
    memset(&p, 0, sizeof p);
    p.struct_size = (uint32_t)sizeof p;
    (void)flowrt_sde_params_init(&p);
    return p;
}

/** Draws n samples with the SDE that has the flow's marginals:
 *  x0 from the base (sample i from the stream (seed, first_index + i), as
 *  flowrt_flow_sample_range), then dX = [v + ε s] dt + √(2ε) dW from t = 0
 *  to 1, Brownian increments of sample i from the stream (seed,
 *  first_index + i). Any thread count gives bit-identical samples; any
 *  split of a batch into ranges gives the same samples to the network's
 *  float rounding: bitwise on CPUs with AVX-512F, where each Linear output
 *  is summed in one fixed order whatever the batch; elsewhere the batch size
 *  changes matrix-multiply blocking.
 *  @param params  in, nullable (NULL = defaults).
 *  @param x_out   out, [n, dim].
 *  @return FLOWRT_OK; FLOWRT_INVALID_ARGUMENT (NULL, n ≥ 2^40, bad params,
 *          ε < 0); FLOWRT_NON_FINITE (ε(t) not finite; a host schedule_fn
 *          failed or gave a non-finite value on the time grid);
 *          FLOWRT_UNSUPPORTED (base not Gaussian, or no schedule, as
 *          flowrt_flow_score); FLOWRT_SOLVER_INCOMPLETE
 *          (some samples became NaN/Inf; outputs are still written).
 *  Cost: (steps − 1) × (2 Heun, 1 Euler–Maruyama) + 2 network evaluations
 *  per sample. Thread-safe. */
FLOWRT_API flowrt_status flowrt_flow_sample_sde(const flowrt_flow *flow, const flowrt_sde_params *params,
                                                uint64_t seed, uint64_t first_index, size_t n, float *x_out);

/* (added after 0.2.0: the sampling calls' one argument order) */
/** flowrt_flow_sample_sde with the argument order of every other sampling
 *  call (first_index, n, seed, params, outputs, stats: as
 *  flowrt_flow_sample_range) and the ODE calls' statistics: samples = n,
 *  steps = n × params->steps (every sample takes the same uniform steps),
 *  rejections = 0, evaluations = n × the evaluations per sample,
 *  non_finite_samples, max_steps_per_sample = params->steps. Progress comes
 *  from params->progress. The samples equal flowrt_flow_sample_sde's for the
 *  same (seed, first_index, n, params) bit for bit; that call stays, with
 *  its 0.1 argument order, and honours params->progress too.
 *  @param stats  out, nullable (struct_size set by the caller).
 *  Other parameters and return codes as flowrt_flow_sample_sde, plus
 *  FLOWRT_CANCELLED (progress returned non-zero; outputs undefined).
 *  Thread-safe. */
FLOWRT_API flowrt_status flowrt_flow_sample_sde_range(const flowrt_flow *flow, uint64_t first_index, size_t n,
                                                      uint64_t seed, const flowrt_sde_params *params, float *x_out,
                                                      flowrt_solver_stats *stats);

/* ---------------------------------------------------------------------------
 * Flows: conditional flows (DESIGN.md §5 "Conditioning")
 * ------------------------------------------------------------------------ */
/* (section: conditional flows) */

/* A conditional flow is a flow over a conditional model (a context input:
 * flowrt_model_context_dim > 0; from flowrt_model_create_mlp_conditional, a
 * trainer, or ONNX). Its velocity is v(t, x, c) with a context c per point:
 * m floats, or one class label carried as an exact integer float. The base
 * does not depend on c; each point's context is held fixed along its
 * trajectory, and each point's result does not depend on the others in its
 * batch (per-sample step control, as for unconditional flows). Contexts
 * cross as caller-owned row-major [rows, m] floats. flowrt_flow_create
 * accepts conditional models (0.1 refused them); the calls without a
 * context (flowrt_flow_sample, _transport, _encode, _log_prob) return
 * FLOWRT_INVALID_ARGUMENT on a conditional flow, naming the _conditional
 * call to use. Score and SDE sampling refuse conditional flows
 * (FLOWRT_UNSUPPORTED). Simulation-based inference is this with θ as x and
 * the observation as c: posterior samples and log p(θ | x_obs). */

/** Context values per point m of a flow (0: unconditional; 1 for a class
 *  label; 0 for NULL). Thread-safe. */
FLOWRT_API size_t flowrt_flow_context_dim(const flowrt_flow *flow);

/** The number of classes of a label-conditional flow (labels are
 *  0..num_classes-1; the last is the null label of guidance when the model
 *  was trained with label_dropout), 0 otherwise and for NULL. Thread-safe. */
FLOWRT_API size_t flowrt_flow_num_classes(const flowrt_flow *flow);

/** Draws samples first_index, …, first_index + n − 1 of the conditional
 *  model density p(x | c): base samples as flowrt_flow_sample_range (sample
 *  i from the stream (seed, first_index + i)) transported from t = 0 to 1
 *  with their contexts held fixed; with log_prob_out, log p(x_out[i] | c_i)
 *  in the same pass. With guidance w ≠ 0 (label-conditional models only),
 *  the velocity is (1 + w) v(t, x, c) − w v(t, x, ∅), ∅ = the null label
 *  num_classes − 1 (train with label_dropout > 0 so that it means "no
 *  class"); guidance changes the density, so log_prob_out must then be NULL.
 *  @param flow          in, non-NULL.
 *  @param first_index   index of the first sample (≤ 2^62).
 *  @param n             samples (0: an empty batch).
 *  @param seed          base-sample seed.
 *  @param context       in, [context_rows, context_dim] floats, finite (labels:
 *                       integers 0..num_classes-1); NULL only for an
 *                       unconditional flow (then this equals
 *                       flowrt_flow_sample_range).
 *  @param context_rows  n (one context per output point) or 1 (one context
 *                       for all n points).
 *  @param guidance      w (0 = none).
 *  @param params        in, nullable (NULL = defaults).
 *  @param x_out         out, [n, dim].
 *  @param log_prob_out  out, nullable, [n]: log p(x_out[i] | c_i) in nats.
 *  @param stats         out, nullable.
 *  @return as flowrt_flow_sample, plus FLOWRT_INVALID_ARGUMENT (NULL context
 *          for a conditional flow, a context for an unconditional one,
 *          context_rows not n or 1, a label that is not a class, guidance
 *          with log_prob_out or not finite); FLOWRT_NON_FINITE (NaN/Inf in
 *          context); FLOWRT_UNSUPPORTED (guidance without class labels).
 *  Cost: as flowrt_flow_sample; guidance doubles it. Nothing is retained.
 *  Thread-safe. */
FLOWRT_API flowrt_status flowrt_flow_sample_conditional(const flowrt_flow *flow, uint64_t first_index, size_t n,
                                                        uint64_t seed, const float *context, size_t context_rows,
                                                        double guidance, const flowrt_solver_params *params,
                                                        float *x_out, double *log_prob_out,
                                                        flowrt_solver_stats *stats);

/** Transports points with their contexts from t_from to t_to (as
 *  flowrt_flow_transport; context row i goes with point i).
 *  @param context  in, [n, context_dim] floats; NULL only for an
 *                  unconditional flow.
 *  Other parameters and return codes as flowrt_flow_transport, plus
 *  FLOWRT_INVALID_ARGUMENT / FLOWRT_NON_FINITE for the context as
 *  flowrt_flow_sample_conditional. Thread-safe. */
FLOWRT_API flowrt_status flowrt_flow_transport_conditional(const flowrt_flow *flow, size_t n, const float *x_in,
                                                           const float *context, double t_from, double t_to,
                                                           const flowrt_solver_params *params, float *x_out,
                                                           flowrt_solver_stats *stats);

/** Encodes data given their contexts: the transport from t = 1 to 0 (the
 *  base code of x_i given c_i).
 *  @param context  in, [n, context_dim] floats; NULL only for an
 *                  unconditional flow.
 *  Other parameters and return codes as flowrt_flow_encode and
 *  flowrt_flow_transport_conditional. Thread-safe. */
FLOWRT_API flowrt_status flowrt_flow_encode_conditional(const flowrt_flow *flow, size_t n, const float *x,
                                                        const float *context, const flowrt_solver_params *params,
                                                        float *z_out, flowrt_solver_stats *stats);

/** log p_t(x_i | c_i) for t ∈ [0, 1], each context held fixed along its
 *  point's backward trajectory (as flowrt_flow_log_prob: exact or
 *  Hutchinson divergence, error control including Δ). Guidance is not
 *  available here: it changes the density.
 *  @param context  in, [n, context_dim] floats; NULL only for an
 *                  unconditional flow.
 *  Other parameters and return codes as flowrt_flow_log_prob, plus the
 *  context errors of flowrt_flow_sample_conditional. Thread-safe. */
FLOWRT_API flowrt_status flowrt_flow_log_prob_conditional(const flowrt_flow *flow, size_t n, const float *x,
                                                          const float *context, double t,
                                                          const flowrt_solver_params *params, double *log_prob,
                                                          double *std_error, flowrt_solver_stats *stats);

/* (Conditional models: flowrt_model_create_mlp_conditional and _labels, see
 * Models; conditional trainers: flowrt_trainer_create_conditional, see Training.) */

/* ---------------------------------------------------------------------------
 * Built-in datasets
 * ------------------------------------------------------------------------ */

/* 2-D toy datasets for demos and tests, by name: "checkerboard", "8gaussians",
 * "rings" (closed-form densities and known entropies) and "moons" (samples
 * only). Sample i of a call depends only on (seed, i). */

/** Draws n samples of a built-in dataset.
 *  @param name   in, non-NULL: a dataset name (see above).
 *  @param n      samples (0: an empty batch).
 *  @param seed   seed of the draws.
 *  @param x_out  out, [n, dim] (dim = 2 for every built-in dataset; see
 *                flowrt_dataset_info).
 *  @return FLOWRT_OK; FLOWRT_INVALID_ARGUMENT (NULL pointer, unknown name,
 *          n ≥ 2^40).
 *  Thread-safe. */
FLOWRT_API flowrt_status flowrt_dataset_sample(const char *name, size_t n, uint64_t seed, float *x_out);

/* (added after 0.2.0: the sampling calls' one argument order) */
/** Samples first_index, …, first_index + n − 1 of the stream
 *  flowrt_dataset_sample draws for `seed` (which is this with first_index 0):
 *  a batch split into ranges gives the samples of one call.
 *  @param first_index  index of the first sample (≤ 2^62).
 *  Other parameters and return codes as flowrt_dataset_sample. Thread-safe. */
FLOWRT_API flowrt_status flowrt_dataset_sample_range(const char *name, uint64_t first_index, size_t n, uint64_t seed,
                                                     float *x_out);

/** The exact log-density (nats) of a built-in dataset at n points.
 *  @param x         in, [n, dim], finite.
 *  @param log_prob  out, [n]; -inf outside the support (checkerboard).
 *  @return FLOWRT_OK; FLOWRT_INVALID_ARGUMENT (NULL pointer, unknown name,
 *          n ≥ 2^40); FLOWRT_NON_FINITE (NaN/Inf in x); FLOWRT_UNSUPPORTED
 *          (the dataset has no closed-form density: "moons").
 *  Thread-safe. */
FLOWRT_API flowrt_status flowrt_dataset_log_prob(const char *name, size_t n, const float *x, double *log_prob);

/** Dimension and true differential entropy H = −E[log ρ] (nats) of a
 *  built-in dataset, so a model's held-out NLL reads as NLL − H = KL ≥ 0.
 *  @param dim      out, nullable.
 *  @param entropy  out, nullable: NaN when unknown ("moons").
 *  @return FLOWRT_OK; FLOWRT_INVALID_ARGUMENT (NULL name, unknown name).
 *  Thread-safe. */
FLOWRT_API flowrt_status flowrt_dataset_info(const char *name, size_t *dim, double *entropy);

/* ---------------------------------------------------------------------------
 * Training
 * ------------------------------------------------------------------------ */
/* (section: training) */

/** Trains a velocity network with the quadratic interpolant loss
 *  G(v) = E[|v(t, x_t)|^2 - 2 dI/dt . v(t, x_t)], x_t = alpha(t) x0 + beta(t) x1,
 *  x0 ~ N(0, I), x1 from the data, t ~ U[0, 1] (or Beta(a, b)). No ODE is
 *  solved during training. Results depend only on the data, the initial
 *  model and the params (including seed), never on `threads`: the same
 *  inputs give bit-identical weights for any thread count. Used by one
 *  thread at a time. */
typedef struct flowrt_trainer flowrt_trainer;

typedef enum flowrt_optimizer {
    /** Adam; weight_decay is an L2 term added to the gradient. */
    FLOWRT_OPTIMIZER_ADAM = 0,
    /** AdamW; weight_decay is decoupled (p -= lr * weight_decay * p). */
    FLOWRT_OPTIMIZER_ADAMW = 1
} flowrt_optimizer;

typedef enum flowrt_lr_schedule {
    /** learning_rate after warmup. */
    FLOWRT_LR_CONSTANT = 0,
    /** Cosine from learning_rate to learning_rate * lr_min_factor at total_steps. */
    FLOWRT_LR_COSINE = 1,
    /** Multiply by step_factor every step_every steps after warmup. */
    FLOWRT_LR_STEP = 2
} flowrt_lr_schedule;

typedef enum flowrt_coupling {
    /** x0 and x1 drawn independently (the default). */
    FLOWRT_COUPLING_INDEPENDENT = 0,
    /** Mini-batch optimal transport: inside each chunk of 256 samples, x1 is
     *  re-paired to x0 by the exact assignment minimising Σ|x0 − x1|²
     *  (Hungarian, O(256³) per chunk). Straighter paths, fewer solver steps. */
    FLOWRT_COUPLING_EXACT_OT = 1
} flowrt_coupling;

/** Training settings. Obtain from flowrt_trainer_default_params(). */
typedef struct flowrt_trainer_params {
    uint32_t struct_size;      /**< sizeof(flowrt_trainer_params). */
    int32_t interpolant;       /**< flowrt_interpolant (see Flows; default TRIG). */
    double learning_rate;      /**< Peak learning rate (default 1e-3). */
    uint32_t batch_size;       /**< Samples per step (default 1024). */
    int32_t optimizer;         /**< flowrt_optimizer (default ADAM). */
    double weight_decay;       /**< >= 0 (default 0). */
    uint32_t warmup_steps;     /**< Linear warmup from lr / warmup (default 0). */
    int32_t lr_schedule;       /**< flowrt_lr_schedule (default CONSTANT). */
    uint64_t total_steps;      /**< Cosine horizon in steps (required > 0 for COSINE; default 0). */
    double lr_min_factor;      /**< Cosine floor as a fraction of learning_rate, in [0, 1] (default 0.01). */
    uint64_t step_every;       /**< STEP decay period in steps (default 1000). */
    double step_factor;        /**< STEP decay factor in (0, 1] (default 0.5). */
    double grad_clip;          /**< Clip the gradient's Euclidean norm to this; 0 = off (default 0). */
    double ema_decay;          /**< EMA of the weights used by flowrt_trainer_model, in [0, 1); 0 = raw weights (default 0.999). */
    double heldout_fraction;   /**< Fraction of the data held out for the held-out loss, in [0, 1) (default 0.1). */
    uint64_t seed;             /**< Seeds the split, minibatches, times and base draws (default 0). */
    uint32_t threads;          /**< Worker threads; 0 = all processors (default 0). Never changes results. */
    double time_beta_a;        /**< t ~ Beta(a, b) when both are > 0; 0 and 0 = U[0, 1] (default 0). */
    double time_beta_b;        /**< See time_beta_a (default 0). */
    flowrt_schedule_fn schedule_fn; /**< The schedule when interpolant is
                                    FLOWRT_INTERPOLANT_CUSTOM (required then),
                                    NULL otherwise (default NULL); called for
                                    every sample of every step, from worker
                                    threads. (Appended in 0.1: a struct_size
                                    without it is accepted and means NULL.) */
    void *schedule_user_data;  /**< Passed to schedule_fn (default NULL). */
    double label_dropout;      /**< Label dropout p in [0, 1) for guidance, label-conditional
                                    models only (flowrt_trainer_create_conditional): each
                                    training label becomes the null class (the last,
                                    num_classes − 1) with probability p, seeded by `seed`
                                    (default 0 = off). (Appended in 0.2: a struct_size
                                    without it means 0.) */
    int32_t coupling;          /**< flowrt_coupling: how minibatches pair x0 with x1
                                    (default INDEPENDENT); the same as calling
                                    flowrt_trainer_set_coupling after creation,
                                    which stays available to change it between
                                    steps. (Appended after 0.2.0: a struct_size
                                    without it means INDEPENDENT.) */
} flowrt_trainer_params;

/** Fills *params with the defaults, up to params->struct_size bytes (set
 *  struct_size = sizeof(flowrt_trainer_params) first); the field comments give them.
 *  @return FLOWRT_OK; FLOWRT_INVALID_ARGUMENT (NULL, or a struct_size this
 *          library does not know). Thread-safe. */
FLOWRT_API flowrt_status flowrt_trainer_params_init(flowrt_trainer_params *params);

/** The defaults as a value. Header-only: struct_size is the size this
 *  program was compiled with, so a newer library never writes past it. */
static inline flowrt_trainer_params flowrt_trainer_default_params(void) {
    flowrt_trainer_params p;
    memset(&p, 0, sizeof p);
    p.struct_size = (uint32_t)sizeof p;
    (void)flowrt_trainer_params_init(&p);
    return p;
}

/** Creates a trainer that fine-tunes a copy of `init` (a native or
 *  ONNX-imported model; `init` itself is not modified) on `n` samples of
 *  dimension `dim`. The data are copied; a seeded permutation holds out
 *  floor(n * heldout_fraction) rows (at most 8192 are evaluated).
 *  Minibatches draw training rows uniformly with replacement.
 *  @param init    in, non-NULL: the starting model; its dim must equal `dim`.
 *  @param data    in, [n, dim] floats (finite).
 *  @param n       rows (> 0); at least one must remain for training.
 *  @param dim     columns (> 0).
 *  @param params  in, nullable: NULL means the defaults.
 *  @param out     out, non-NULL: the trainer; free with flowrt_trainer_free.
 *  @return FLOWRT_OK; FLOWRT_INVALID_ARGUMENT (NULL pointer, zero size, bad
 *          struct_size, a field out of range, no training rows left,
 *          interpolant and schedule_fn as for flowrt_flow_create);
 *          FLOWRT_SHAPE_MISMATCH (dim differs from the model's);
 *          FLOWRT_NON_FINITE (NaN/Inf in data; schedule_fn failed or was
 *          not finite at a checked time or for the held-out set);
 *          FLOWRT_INVALID_MODEL; FLOWRT_OUT_OF_MEMORY (no room for the
 *          copy of the data and its split: twice n * dim floats);
 *          FLOWRT_INVALID_ARGUMENT for a conditional model (use
 *          flowrt_trainer_create_conditional).
 *  Thread-safe (creates an independent object). */
FLOWRT_API flowrt_status flowrt_trainer_create(const flowrt_model *init, const float *data, size_t n, size_t dim,
                                               const flowrt_trainer_params *params, flowrt_trainer **out);

/** Creates a trainer on 8-bit images (since 0.3): `pixels` [n, dim]
 *  unsigned bytes, each row one image in the model's sample shape
 *  (flowrt_model_shape: [C, H, W] or [H, W], row-major). The last
 *  floor(n * heldout_fraction) images are held out (dequantized once, at
 *  most 8192 evaluated); every training sample draws an image uniformly
 *  with replacement and fresh uniform dequantization noise,
 *  y = (pixel + u) / 128 - 1 with u ~ U[0, 1) (DESIGN.md §5), both from
 *  (params->seed, sample index) only, so results do not depend on the
 *  thread count. The pixels are copied.
 *  @param init    in, non-NULL: the starting model (native U-Net or an
 *                 imported image network); unconditional.
 *  @param pixels  in, [n, dim] bytes.
 *  @param n       images (> 0); at least one must remain for training.
 *  @param dim     values per image (> 0): the model's dimension.
 *  @param params  in, nullable: NULL means the defaults.
 *  @param out     out, non-NULL: the trainer; free with flowrt_trainer_free.
 *  @return FLOWRT_OK; FLOWRT_INVALID_ARGUMENT (NULL pointer, zero size, bad
 *          params, no training image left); FLOWRT_SHAPE_MISMATCH (dim
 *          differs from the model's, or the model's samples are not
 *          images); FLOWRT_UNSUPPORTED (a conditional model: dequantize
 *          and use flowrt_trainer_create_conditional);
 *          FLOWRT_INVALID_MODEL; FLOWRT_OUT_OF_MEMORY.
 *  Thread-safe (creates an independent object). */
FLOWRT_API flowrt_status flowrt_trainer_create_images(const flowrt_model *init, const uint8_t *pixels, size_t n,
                                                      size_t dim, const flowrt_trainer_params *params,
                                                      flowrt_trainer **out);

/** Creates a trainer whose targets x1 are drawn from `target` and whose x0
 *  are drawn from `base` (NULL: N(0, I)): e.g. two empirical densities for
 *  data-to-data transport, or a host density as the base. Sample k of
 *  training draws from the densities with index k (reproducible for any
 *  thread count); `heldout` fresh target samples (independent seed) form
 *  the held-out set (params->heldout_fraction is ignored).
 *  @param init     in, non-NULL: the starting model (copied).
 *  @param target   in, non-NULL; @param base in, nullable. Both may be
 *                  sample-only; their callbacks are called from worker
 *                  threads. The trainer keeps its own references.
 *  @param params   in, nullable (NULL = defaults).
 *  @param out      out, non-NULL; free with flowrt_trainer_free.
 *  @return FLOWRT_OK; FLOWRT_INVALID_ARGUMENT (NULL, bad params);
 *          FLOWRT_SHAPE_MISMATCH (dimensions differ); FLOWRT_NON_FINITE
 *          (schedule_fn, as flowrt_trainer_create); FLOWRT_INVALID_MODEL.
 *  Thread-safe (creates an independent object). */
FLOWRT_API flowrt_status flowrt_trainer_create_from_densities(const flowrt_model *init, const flowrt_density *target,
                                                              const flowrt_density *base, size_t heldout,
                                                              const flowrt_trainer_params *params, flowrt_trainer **out);

/** Creates a trainer of a conditional model on pairs (x_i, c_i): as
 *  flowrt_trainer_create, with row i of `context` going with row i of
 *  `data` in the held-out split and in every minibatch; the loss is the
 *  same with c_i passed through. params->label_dropout > 0 (label models)
 *  replaces labels by the null class for guidance. Checkpoints hold no
 *  contexts (they are data): resume with the same data and contexts.
 *  flowrt_trainer_create refuses conditional models and names this call.
 *  @param init         in, non-NULL: a conditional model (or unconditional,
 *                      with context_dim 0 and context NULL).
 *  @param data         in, [n, dim] floats (finite).
 *  @param context      in, [n, context_dim] floats (finite; labels
 *                      0..num_classes-1); NULL only when context_dim is 0.
 *  @param n            rows (> 0).
 *  @param dim          columns of data (the model's dim).
 *  @param context_dim  columns of context (the model's context_dim).
 *  @param params       in, nullable (NULL = defaults).
 *  @param out          out, non-NULL: free with flowrt_trainer_free.
 *  @return as flowrt_trainer_create, plus FLOWRT_SHAPE_MISMATCH
 *          (context_dim differs from the model's); FLOWRT_INVALID_ARGUMENT
 *          (NULL context for a conditional model, a label that is not a
 *          class, label_dropout outside [0, 1) or without a label model);
 *          FLOWRT_NON_FINITE (NaN/Inf in context). The data and contexts
 *          are copied. Thread-safe (creates an independent object). */
FLOWRT_API flowrt_status flowrt_trainer_create_conditional(const flowrt_model *init, const float *data,
                                                           const float *context, size_t n, size_t dim,
                                                           size_t context_dim, const flowrt_trainer_params *params,
                                                           flowrt_trainer **out);

/** Sets how a trainer pairs x0 and x1 for the following steps.
 *  @return FLOWRT_OK; FLOWRT_INVALID_ARGUMENT (NULL, unknown coupling).
 *  Not thread-safe: one thread at a time per trainer. */
FLOWRT_API flowrt_status flowrt_trainer_set_coupling(flowrt_trainer *trainer, int32_t coupling);

/** Runs one optimisation step.
 *  @param trainer  in/out, non-NULL.
 *  @param loss     out, nullable: the minibatch's mean G before the update.
 *  @return FLOWRT_OK; FLOWRT_INVALID_ARGUMENT (NULL trainer);
 *          FLOWRT_NON_FINITE (the loss or gradient overflowed: the weights
 *          are left unchanged; lower learning_rate or set grad_clip; or a
 *          host schedule_fn failed or gave a non-finite value: the message
 *          names the schedule and t, the weights are left unchanged).
 *  Not thread-safe: one thread at a time per trainer. */
FLOWRT_API flowrt_status flowrt_trainer_step(flowrt_trainer *trainer, double *loss);

/** Runs `steps` optimisation steps, evaluating the held-out loss every 250
 *  steps and after the last. `progress`, if not NULL, is called after every
 *  step with done = steps finished in this call, total = `steps`, value =
 *  the minibatch's G; a non-zero return stops training after that step.
 *  @param trainer    in/out, non-NULL.
 *  @param progress   nullable callback; @param user_data passed to it.
 *  @return FLOWRT_OK; FLOWRT_CANCELLED (the callback stopped it; completed
 *          steps are kept); FLOWRT_INVALID_ARGUMENT; FLOWRT_NON_FINITE (as
 *          flowrt_trainer_step; earlier steps are kept).
 *  Not thread-safe: one thread at a time per trainer. */
FLOWRT_API flowrt_status flowrt_trainer_fit(flowrt_trainer *trainer, uint64_t steps,
                                            flowrt_progress_fn progress, void *user_data);

/** A snapshot of the current model with the EMA weights (the raw weights
 *  when ema_decay is 0): an independent, immutable, thread-safe model that
 *  stays valid and unchanged while training continues and after the
 *  trainer is freed.
 *  @param trainer  in, non-NULL.
 *  @param out      out, non-NULL: free with flowrt_model_free.
 *  @return FLOWRT_OK; FLOWRT_INVALID_ARGUMENT.
 *  Not thread-safe with a concurrent step on the same trainer. */
FLOWRT_API flowrt_status flowrt_trainer_model(const flowrt_trainer *trainer, flowrt_model **out);

/** The latest losses: of the last minibatch (raw weights) and on the
 *  held-out set at the current step (EMA weights; evaluated now if the last
 *  evaluation is older: one forward pass over it), as G and in regression form
 *  E|v - dI/dt|^2 = G + E|dI/dt|^2. A value not available yet (no step,
 *  no held-out set) is NaN. Every output pointer is nullable.
 *  @return FLOWRT_OK; FLOWRT_INVALID_ARGUMENT (NULL trainer). */
FLOWRT_API flowrt_status flowrt_trainer_loss(const flowrt_trainer *trainer, double *train_loss,
                                             double *heldout_loss, double *train_regression,
                                             double *heldout_regression);

/** Steps taken so far, including those restored from a checkpoint (0 for NULL). */
FLOWRT_API uint64_t flowrt_trainer_step_count(const flowrt_trainer *trainer);

/** Saves the complete training state (weights, Adam moments, EMA, step) to
 *  `path`, written to a temporary file and renamed, so `path` is never
 *  left half-written. The data and params are not saved: to resume, create
 *  a trainer with the same model, data and params, then load; training
 *  then continues exactly (bit-identically) as if never interrupted.
 *  @return FLOWRT_OK; FLOWRT_INVALID_ARGUMENT (NULL); FLOWRT_IO_ERROR. */
FLOWRT_API flowrt_status flowrt_trainer_save_checkpoint(const flowrt_trainer *trainer, const char *path);

/** Restores a state saved by flowrt_trainer_save_checkpoint.
 *  @return FLOWRT_OK; FLOWRT_INVALID_ARGUMENT (NULL); FLOWRT_IO_ERROR
 *          (unreadable); FLOWRT_INVALID_MODEL (not a checkpoint, truncated,
 *          CRC mismatch); FLOWRT_SHAPE_MISMATCH (another architecture);
 *          FLOWRT_UNSUPPORTED (a newer format version). On error the
 *          trainer is unchanged. */
FLOWRT_API flowrt_status flowrt_trainer_load_checkpoint(flowrt_trainer *trainer, const char *path);

/** Releases a trainer. NULL is a no-op. Models obtained from it stay valid. */
FLOWRT_API void flowrt_trainer_free(flowrt_trainer *trainer);

/* ----- Path-length optimisation (added after 0.2.0) ------------------------
 * A trainer that also learns its interpolant: the Fourier schedule
 *     α(t) = 1 − t + Σ_k a_k sin(kπt),   β(t) = t + Σ_k b_k sin(kπt),  k = 1..K,
 * moved by Adam ascent on min_v G (alternating with the network's descent),
 * which shortens the path: the kinetic energy ∫ E|v|² dt falls toward
 * W2²(ρ0, ρ1) (DESIGN.md §1 "Path length"). The coefficients start at 0
 * (the linear schedule). flowrt_trainer_flow gives the trained flow with its
 * schedule; flowrt_flow_save_onnx records the coefficients in the metadata
 * (flowrt.interpolant = "fourier", flowrt.fourier.alpha, flowrt.fourier.beta:
 * comma-separated numbers) and flowrt_flow_load_onnx rebuilds the same
 * flow from them. */

/** Settings of the schedule player of a path-length trainer. */
typedef struct flowrt_path_params {
    uint32_t struct_size;       /**< sizeof(flowrt_path_params). */
    uint32_t terms;             /**< Fourier terms K, 1..4096 (default 4). */
    double learning_rate;       /**< Adam step of the coefficients, finite and > 0
                                     (default 0.001). Keep it slow next to the
                                     network's: a schedule that outruns the
                                     network is steered by its errors. */
    uint64_t warmup_steps;      /**< Network-only updates before the schedule
                                     moves (default 300). */
    uint32_t network_steps;     /**< Network updates per schedule update after the
                                     warmup, ≥ 1 (default 8). */
    uint32_t batch_size;        /**< Samples (t, x0, x1) per schedule update,
                                     0..2^24; 0 = the trainer's batch_size (default 0). */
    double coefficient_bound;   /**< Coefficients are kept in [−bound, bound],
                                     finite and > 0 (default 2). */
} flowrt_path_params;

/** Fills *params with the defaults, up to params->struct_size bytes (set
 *  struct_size = sizeof(flowrt_path_params) first); the field comments give them.
 *  @return FLOWRT_OK; FLOWRT_INVALID_ARGUMENT (NULL, or a struct_size this
 *          library does not know). Thread-safe. */
FLOWRT_API flowrt_status flowrt_path_params_init(flowrt_path_params *params);

/** The defaults as a value. Header-only: struct_size is the size this
 *  program was compiled with, so a newer library never writes past it. */
static inline flowrt_path_params flowrt_path_default_params(void) {
    flowrt_path_params p;
    memset(&p, 0, sizeof p);
    p.struct_size = (uint32_t)sizeof p;
    (void)flowrt_path_params_init(&p);
    return p;
}

/** Creates a path-length trainer: as flowrt_trainer_create (same data
 *  handling, same trainer params except the interpolant), with a learned
 *  Fourier schedule of path->terms terms instead of params->interpolant
 *  (ignored). The result is an ordinary flowrt_trainer with these
 *  differences:
 *    - flowrt_trainer_step makes one network update during the warmup, then
 *      path->network_steps network updates and one schedule update; *loss is
 *      the last network minibatch's G. flowrt_trainer_fit(steps) makes
 *      `steps` such steps (progress: done = those steps, value = G).
 *      flowrt_trainer_step_count counts network updates.
 *    - flowrt_trainer_path_state reads the coefficients and the kinetic
 *      energy estimate; flowrt_trainer_flow gives the flow with the current
 *      schedule; flowrt_trainer_model's metadata records the schedule.
 *    - flowrt_trainer_save_checkpoint / _load_checkpoint and
 *      flowrt_trainer_set_coupling return FLOWRT_UNSUPPORTED (a checkpoint
 *      does not hold the schedule's optimiser state; a coupling would train
 *      the network on other pairs than those the schedule is moved with).
 *  Randomness: the schedule batches have their own stream derived from
 *  params->seed; results never depend on params->threads.
 *  @param init    in, non-NULL: the starting model (copied), unconditional.
 *  @param data    in, [n, dim] floats (finite).
 *  @param n       rows (> 0); at least one must remain for training.
 *  @param dim     columns (> 0), the model's dim.
 *  @param params  in, nullable (NULL = defaults); schedule_fn must be NULL.
 *  @param path    in, nullable (NULL = flowrt_path_default_params()).
 *  @param out     out, non-NULL: the trainer (NULL on failure); free with
 *                 flowrt_trainer_free.
 *  @return as flowrt_trainer_create, plus FLOWRT_INVALID_ARGUMENT (bad
 *          path->struct_size, a path field out of range, schedule_fn set,
 *          params->coupling not INDEPENDENT, a conditional model); FLOWRT_NON_FINITE (a non-finite path field).
 *  Thread-safe (creates an independent object). */
FLOWRT_API flowrt_status flowrt_trainer_create_path_length(const flowrt_model *init, const float *data, size_t n,
                                                           size_t dim, const flowrt_trainer_params *params,
                                                           const flowrt_path_params *path, flowrt_trainer **out);

/** The current schedule of a path-length trainer and its last kinetic
 *  energy estimate ∫ E|v̂(t, x_t)|² dt (t uniform, on the last schedule
 *  batch; the path length being shortened).
 *  @param trainer         in, non-NULL, from flowrt_trainer_create_path_length.
 *  @param alpha           out, [capacity]: a_1..a_K; nullable when capacity is 0.
 *  @param beta            out, [capacity]: b_1..b_K; nullable when capacity is 0.
 *  @param capacity        entries available in alpha and beta.
 *  @param terms           out, non-NULL: K.
 *  @param kinetic_energy  out, nullable: the estimate; NaN before the first
 *                         schedule update (during the warmup).
 *  @return FLOWRT_OK; FLOWRT_INVALID_ARGUMENT (NULL trainer or terms, a
 *          trainer that is not a path-length trainer, capacity below K:
 *          *terms is still set, so a first call with capacity 0 asks for K).
 *  Not thread-safe with a concurrent step on the same trainer. */
FLOWRT_API flowrt_status flowrt_trainer_path_state(const flowrt_trainer *trainer, double *alpha, double *beta,
                                                   size_t capacity, size_t *terms, double *kinetic_energy);

/** The flow trained so far: flowrt_trainer_model's snapshot (EMA weights)
 *  with the trainer's interpolant (for a path-length trainer its current
 *  Fourier schedule; a host schedule_fn stays required as for
 *  flowrt_flow_create) and its base density (the standard normal, or the
 *  base given to flowrt_trainer_create_from_densities). Independent of
 *  further training; save it with flowrt_flow_save_onnx.
 *  @param trainer  in, non-NULL.
 *  @param out      out, non-NULL: the flow (NULL on failure); free with flowrt_flow_free.
 *  @return FLOWRT_OK; FLOWRT_INVALID_ARGUMENT (NULL); FLOWRT_UNSUPPORTED (a
 *          sample-only base, which a flow cannot evaluate).
 *  Not thread-safe with a concurrent step on the same trainer. */
FLOWRT_API flowrt_status flowrt_trainer_flow(const flowrt_trainer *trainer, flowrt_flow **out);

/** The Fourier coefficients of a flow's interpolant (a flow from
 *  flowrt_trainer_flow of a path-length trainer, or loaded from a file
 *  recording flowrt.interpolant = "fourier").
 *  @param flow      in, non-NULL.
 *  @param alpha     out, [capacity]: a_1..a_K; nullable when capacity is 0.
 *  @param beta      out, [capacity]: b_1..b_K; nullable when capacity is 0.
 *  @param capacity  entries available in alpha and beta.
 *  @param terms     out, non-NULL: K; 0 when the interpolant is not a
 *                   Fourier schedule (trig, linear, custom).
 *  @return FLOWRT_OK; FLOWRT_INVALID_ARGUMENT (NULL flow or terms, capacity
 *          below K: *terms is still set). Thread-safe. */
FLOWRT_API flowrt_status flowrt_flow_fourier_coefficients(const flowrt_flow *flow, double *alpha, double *beta,
                                                          size_t capacity, size_t *terms);
/* ----- end of path-length optimisation ---------------------------------- */

/* ===========================================================================
 * bfloat16 evaluation (issue 17). An opt-in precision for the dense layers.
 *
 * With FLOWRT_PRECISION_BF16, Linear layers (Gemm, MatMul with constant
 * weights) with at least 32 inputs and 32 outputs, convolutions with at
 * least 32 products per output and 32 output channels per group, and
 * attention's products of two computed operands (Q·K^T, P·V) with at least
 * 32 columns multiply in bfloat16: weights rounded once (to nearest even),
 * each layer's input rounded per block of rows (per panel of positions for
 * convolutions), products accumulated in float32; biases, non-linearities
 * (in a bf16 pass a SiLU fused into any Linear layer takes a division-free
 * float32 form, 2e-6 relative), every other op and the solvers stay
 * float32. A layer's outputs move by
 * about 2^-8 of sum |x_k W_jk|; sampled endpoints of the trained checkerboard
 * flow move by ~1e-3 (bench/bf16/results.md), and wide layers run about 2x
 * faster. Narrow layers multiply in float32. CPUs without AVX512_BF16 run float32
 * and say so (flowrt_solver_stats.precision, the `effective` output below).
 *
 * Two settings per model: one for velocity evaluation (sampling without
 * log-densities, transport, encoding, SDE sampling, flowrt_model_velocity)
 * and one for likelihoods (flowrt_flow_log_prob, sampling with log_prob_out,
 * flowrt_model_divergence). Both default to FLOWRT_PRECISION_FLOAT32; bf16
 * likelihoods are allowed when set explicitly, with log-densities that move
 * by about 1e-3 nats per point on the checkerboard flow (see results.md).
 * ======================================================================== */

/** Arithmetic of the dense layers. */
typedef enum {
    FLOWRT_PRECISION_FLOAT32 = 0, /**< float32 throughout (default). */
    FLOWRT_PRECISION_BF16 = 1,    /**< bf16 products, float32 accumulation. */
} flowrt_precision;

/** Which evaluations a precision setting governs. */
typedef enum {
    FLOWRT_PRECISION_FOR_VELOCITY = 0,   /**< sampling, transport, encode, SDE, velocity. */
    FLOWRT_PRECISION_FOR_LIKELIHOOD = 1, /**< log_prob, sampling with log_prob_out, divergence. */
} flowrt_precision_use;

/** 1 when this CPU runs FLOWRT_PRECISION_BF16 (AVX512_BF16, from cpuid), else 0.
 *  Thread-safe. */
FLOWRT_API int flowrt_bf16_available(void);

/** Requests a precision for one use of a model. It applies to calls that
 *  start afterwards, through this handle and every flow created from it
 *  (not to flowrt_flow_model copies or flows loaded from files: set those
 *  with flowrt_flow_set_precision). The first bf16 request packs bf16
 *  copies of the weights (half the float32 weights' bytes).
 *  @param model      in/out, non-NULL.
 *  @param use        a flowrt_precision_use.
 *  @param precision  a flowrt_precision. On CPUs without AVX512_BF16, BF16
 *                    is accepted and runs float32.
 *  @return FLOWRT_OK; FLOWRT_INVALID_ARGUMENT (NULL model, use or precision
 *          not one of the enum values; the setting is then unchanged).
 *  Not to be called while other threads run calls on the model (they may
 *  see either setting); otherwise thread-safe. */
FLOWRT_API flowrt_status flowrt_model_set_precision(flowrt_model *model, int use, int precision);

/** The precision requested for one use of a model, and the one calls run in.
 *  @param model      in, non-NULL.
 *  @param use        a flowrt_precision_use.
 *  @param requested  out, nullable: the flowrt_precision last set (default FLOAT32).
 *  @param effective  out, nullable: FLOWRT_PRECISION_BF16 only when requested,
 *                    the CPU has AVX512_BF16 and at least one layer has 32 or
 *                    more inputs and outputs; else FLOWRT_PRECISION_FLOAT32.
 *  @return FLOWRT_OK; FLOWRT_INVALID_ARGUMENT (NULL model, bad use).
 *  Thread-safe. */
FLOWRT_API flowrt_status flowrt_model_get_precision(const flowrt_model *model, int use, int *requested,
                                                    int *effective);

/** flowrt_model_set_precision for the flow's network (shared with the model
 *  the flow was created from).
 *  @return as flowrt_model_set_precision, for a NULL flow too. */
FLOWRT_API flowrt_status flowrt_flow_set_precision(flowrt_flow *flow, int use, int precision);

/** flowrt_model_get_precision for the flow's network.
 *  @return as flowrt_model_get_precision, for a NULL flow too. */
FLOWRT_API flowrt_status flowrt_flow_get_precision(const flowrt_flow *flow, int use, int *requested, int *effective);

/* ===================== end of bfloat16 evaluation ======================= */

#ifdef __cplusplus
}
#endif
#endif /* FLOWRT_H */
