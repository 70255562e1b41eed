// CKernels: vectorised elementwise kernels for FlowRuntime.
//
// This target provides no stable API: it is an implementation detail of the
// Swift module FlowRuntime (the way _NumericsShims serves swift-numerics).
// Each kernel is compiled for AVX-512, AVX2+FMA and baseline x86-64 and the
// best one is chosen once when the library loads (GNU ifunc).
//
// Accuracy: exp, log and erf are polynomial approximations with a maximum
// relative error below 4 ulp (exp, log) and an absolute error below 2e-7
// (erf) over float32; NaN propagates; exp overflows to +inf and underflows
// to 0 without denormals.
#ifndef FLOWRT_CKERNELS_H
#define FLOWRT_CKERNELS_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/// The pointwise functions the graph IR knows. Values are stable inside one
/// build only; Swift mirrors them in `UnaryFunction`.
typedef enum {
    FR_IDENTITY = 0,
    FR_RELU = 1,
    FR_LEAKY_RELU = 2,  // p1 = negative slope
    FR_ELU = 3,         // p1 = alpha
    FR_SELU = 4,
    FR_SIGMOID = 5,
    FR_TANH = 6,
    FR_SILU = 7,
    FR_SOFTPLUS = 8,    // p1 = beta, p2 = threshold (x*beta > threshold -> x)
    FR_GELU = 9,        // erf form
    FR_ERF = 10,
    FR_EXP = 11,
    FR_LOG = 12,
    FR_SQRT = 13,
    FR_NEG = 14,
    FR_SIN = 15,
    FR_COS = 16,
    FR_SQUARE = 17,
    FR_RECIPROCAL = 18,
    FR_ABS = 19,
    FR_POW = 20,        // p1 = exponent (constant)
    FR_GELU_TANH = 21,  // tanh approximation
} fr_unary_kind;

/// y[i] = f(x[i]) for i < n. x and y may alias exactly.
void fr_unary_forward(int kind, float p1, float p2,
                      const float *x, float *y, size_t n);

/// d[i] = f'(x[i]). x and d may alias exactly.
void fr_unary_derivative(int kind, float p1, float p2,
                         const float *x, float *d, size_t n);

/// y[i] = f(x[i]) and d[i] = f'(x[i]) in one pass; x may alias y.
void fr_unary_forward_derivative(int kind, float p1, float p2,
                                 const float *x, float *y, float *d, size_t n);

/// Tangent broadcast product used by the k-tangent JVP:
/// out[(r*k + j)*m + i] = d[r*m + i] * in[(r*k + j)*m + i]
/// for r < rows, j < k, i < m. in and out may alias exactly.
void fr_mul_rows_k(const float *d, const float *in, float *out,
                   size_t rows, size_t k, size_t m);

/// y[r*n + i] += b[i] for r < rows, i < n (bias over a batch).
void fr_add_row_vector(float *y, const float *b, size_t rows, size_t n);

/// y[r*out + j] = Σ_k x[r*in + k] w[j*in + k] (+ bias[j] if bias is not NULL)
/// for r < m, j < out (row-major W [out, in]), for small m; no aliasing.
/// The Linear kernel where fr_gemm_packed is not available.
void fr_gemm_small(const float *x, const float *w, const float *bias, float *y, size_t m, size_t out, size_t in);

/// Prepacked weights for fr_gemm_packed: W in column panels of 16 outputs,
/// k-major (see gemm_packed.c). W is [out, in] row-major, or [in, out] when
/// in_out_layout is nonzero. fr_packed_count gives the floats needed (out
/// rounded up to 16, times in); the buffer should be 64-byte aligned.
size_t fr_packed_count(size_t out, size_t in);
void fr_pack_weights(const float *w, int in_out_layout, float *wp, size_t out, size_t in);

/// Whether fr_gemm_packed has a fast kernel on this CPU (AVX-512F).
int fr_packed_supported(void);

/// y[r*out + j] = bias[j] (or 0) + Σ_k x[r*in + k] W[j, k], each output summed
/// by fused multiply-adds in increasing k, so rows do not depend on m.
/// wp from fr_pack_weights; no aliasing.
void fr_gemm_packed(const float *x, const float *wp, const float *bias, float *y,
                    size_t m, size_t out, size_t in);

/// Sum of squares of x (double accumulator, fixed order).
double fr_sum_squares(const float *x, size_t n);

#ifdef __cplusplus
}
#endif
#endif
