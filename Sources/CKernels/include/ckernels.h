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
#include <stdint.h>

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
    FR_HARD_SIGMOID = 22, // max(0, min(1, p1·x + p2)) (ONNX HardSigmoid: alpha, beta)
    FR_HARD_SWISH = 23,   // x · max(0, min(1, x/6 + 1/2))
    FR_CLIP = 24,         // min(max(x, p1), p2); NaN stays NaN
    FR_MISH = 25,         // x · tanh(softplus(x)), softplus as PyTorch's (threshold 20)
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

/// The index of the first inf or NaN among x[0..<n], or n when all are
/// finite (input validation at the API boundary: a vector scan).
size_t fr_first_nonfinite(const float *x, size_t n);

/// Names the calling thread (at most 15 bytes show; Linux: /proc/self/task/*/comm).
/// 0 on success. FlowRuntime's team helpers call themselves "flowrt-team".
int fr_name_this_thread(const char *name);

/// Row-wise broadcasting binary op, one IEEE operation per element (the
/// same values as a scalar loop): for r < rows, i < n,
///   y[r*n + i] = A op B,  A = a[r*a_row + (a_unit ? i : 0)],
///                         B = b[r*b_row + (b_unit ? i : 0)];
/// op 0 add, 1 sub, 2 mul, 3 div. y may alias a or b exactly (same
/// element positions), nothing else.
void fr_binary_rows(int op, const float *a, ptrdiff_t a_row, int a_unit, const float *b, ptrdiff_t b_row,
                    int b_unit, float *y, size_t rows, size_t n);

/// Tangent broadcast product used by the k-tangent JVP:
/// out[(r*k + j)*m + i] = d[r*m + i] * in[(r*k + j)*m + i]
/// for r < rows, j < k, i < m. in and out may alias exactly.
void fr_mul_rows_k(const float *d, const float *in, float *out,
                   size_t rows, size_t k, size_t m);

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


/* ======================================================================
 * Dense kernels: general GEMM, 2-D convolution, row softmax, GroupNorm
 * (gemm.c, conv.c, normalize.c). All float32, row-major; images NCHW.
 *
 * Every kernel has an AVX-512F path, chosen at run time, and a portable
 * path; for GEMM and convolutions it computes the same sums in the same
 * order of k with separate multiply and add, so the two agree within float
 * rounding. Scratch buffers are the caller's: sizes from the
 * *_scratch_floats functions, not shared between concurrent calls, contents
 * undefined on return. No output may alias an input unless a function says
 * so. Thread-safe for distinct outputs and scratch buffers.
 * ====================================================================== */

/// Forces the portable paths of the dense kernels below (nonzero) or lets
/// them use AVX-512F where the CPU has it (0, the default); returns the
/// previous setting. For tests and benchmarks: not to be changed while any
/// dense kernel runs on another thread.
int fr_dense_force_portable(int force);

/// Whether the dense kernels below currently take their AVX-512F path.
int fr_dense_avx512_active(void);

/// C = op(A)·op(B) + beta·C with op(A) [m, k], op(B) [k, n], C [m, n]:
/// op(A)[i, p] = trans_a ? a[p*lda + i] : a[i*lda + p], and likewise b.
/// beta = 0: C is only written (may hold NaN on entry); beta = 1: C is
/// accumulated into; other beta scale C first. Each C[i, j] is beta·C (or 0)
/// followed by one multiply-add per p in increasing p, so row i does not
/// depend on m nor on the other rows. k = 0 gives beta·C.
/// scratch: fr_gemm_scratch_floats(m, n, k) floats (64-byte alignment
/// recommended); B is packed into it block by block (at most 256 k × 256 n:
/// 256 KiB). A is read in place (broadcast), never packed: a transposed A
/// is read as 8 contiguous floats per k. C must not overlap A, B or scratch.
void fr_gemm(int trans_a, int trans_b, size_t m, size_t n, size_t k,
             const float *a, size_t lda, const float *b, size_t ldb,
             float beta, float *c, size_t ldc, float *scratch);
size_t fr_gemm_scratch_floats(size_t m, size_t n, size_t k);

/// fr_gemm with B packed once for many products with the same B (the row
/// blocks of a fused attention): fr_gemm_pack_b packs op(B) [k, n] (trans_b
/// and ldb as for fr_gemm) into bp, fr_gemm_packed_b_floats(n, k) floats;
/// fr_gemm_prepacked then computes C = A·op(B) for A [m, k] row-major (lda),
/// C written (beta = 0), with the same values as fr_gemm bit for bit.
size_t fr_gemm_packed_b_floats(size_t n, size_t k);
/// dst[j*ldd + i] = src[i*lds + j] for i < rows, j < cols: a matrix
/// transposed (16 × 16 blocks in registers with AVX-512F). dst must not
/// overlap src.
void fr_transpose(size_t rows, size_t cols, const float *src, size_t lds, float *dst, size_t ldd);
/// A permuted copy whose innermost `run` floats stay contiguous: dst, in
/// order, gets src's rows of `run` floats at offsets Σ_d i_d·src_stride[d]
/// (in floats) over the index i of extents [rank] (row-major, i_0 slowest);
/// rank ≤ 8 (larger: nothing is copied). A Transpose that keeps its
/// innermost axis (attention's head split [T, H, D] → [H, T, D]). dst must
/// not overlap src.
void fr_permute_rows(const float *src, float *dst, size_t rank, const size_t *extents,
                     const ptrdiff_t *src_strides, size_t run);
void fr_gemm_pack_b(int trans_b, size_t n, size_t k, const float *b, size_t ldb, float *bp);
void fr_gemm_prepacked(size_t m, size_t n, size_t k, const float *a, size_t lda, const float *bp, float *c,
                       size_t ldc);
/// C = A·B for B [k, n] row-major, read in place (row stride ldb ≥ n; no
/// packing, nothing read past column n): for a B used by one product only
/// (attention's V, per head). C written; the values of fr_gemm and
/// fr_gemm_prepacked bit for bit. C must not overlap A or B.
void fr_gemm_b_in_place(size_t m, size_t n, size_t k, const float *a, size_t lda, const float *b, size_t ldb,
                        float *c, size_t ldc);
/// C[m, n] += A[m, k]·B[k, n], A row-major (lda), B packed by
/// fr_gemm_pack_b(trans_b, n, k, ...) (gemm.c; the training backward pass's
/// g_x). Each C[i, j] is its value on entry followed by one multiply-add per
/// p in increasing p, so row i does not depend on m nor on the other rows.
/// C must not overlap A or bp.
void fr_gemm_prepacked_acc(size_t m, size_t n, size_t k, const float *a, size_t lda, const float *bp, float *c,
                           size_t ldc);

/// Geometry of a 2-D convolution (Conv1d: h = 1, kh = 1). Every field is a
/// count of elements. cin and cout are divisible by groups; the caller gives
/// oh and ow, which imply the bottom and right padding (input positions out
/// of [0, h) × [0, w) read as zero). Strides and dilations are ≥ 1.
typedef struct {
    size_t cin, h, w, cout, kh, kw, stride_h, stride_w, pad_top, pad_left, dil_h, dil_w, groups, oh, ow;
} fr_conv2d_geometry;

/// Scratch floats any of the three conv kernels needs for g, whatever the
/// batch size (K = (cin/groups)·kh·kw, cg = cout/groups): the largest of
///   forward: one im2col tile, min(K, ~512 rounded to whole channels) × 64
///     output positions;
///   backward input: stride 1: the flipped kernel (K·cg) plus a forward
///     tile of the transposed problem; other strides: K × 64;
///   backward weight: K·cg + K·P + cg·P with P ≤ 256 positions, K·P ≤ 65536
///     (1×1, stride 1, unpadded, cin < cout: one 256 × 256 GEMM block).
/// Never O(n), never a whole image's im2col beyond those caps. Alignment to
/// 64 bytes is recommended (speed), not required.
size_t fr_conv2d_scratch_floats(const fr_conv2d_geometry *g);

/// y[n, cout, oh, ow] = bias + conv(x, w), overwritten.
/// x [n, cin, h, w]; w [cout, cin/groups, kh, kw] (PyTorch/ONNX layout);
/// bias [cout] or NULL. Each output is bias (or 0) then one multiply-add per
/// (ci, ky, kx) in increasing order, so a sample's output is bitwise the
/// same alone or in any batch. No aliasing.
void fr_conv2d_forward(const fr_conv2d_geometry *g, const float *x, const float *w, const float *bias,
                       float *y, size_t n, float *scratch);

/// fr_conv2d_forward on output positions [p0, p1) (of oh·ow, row-major) of
/// every sample only (others are not written; p1 is clipped to oh·ow):
/// each output there gets the whole call's value, so a call's positions
/// split over threads give the same bits as one call.
void fr_conv2d_forward_positions(const fr_conv2d_geometry *g, const float *x, const float *w, const float *bias,
                                 float *y, size_t n, float *scratch, size_t p0, size_t p1);

/// gx[n, cin, h, w] += convᵀ(gy, w): the gradient of fr_conv2d_forward with
/// respect to x, ACCUMULATED into gx (zero it first for a plain result).
/// gy [n, cout, oh, ow]. No aliasing. Also ConvTranspose's forward pass: for
/// ConvTranspose2d(in C, out D, weight [C, D/groups, kh, kw]) use g.cout = C,
/// g.cin = D, (g.oh, g.ow) = its input size, (g.h, g.w) = its output size,
/// pads = its pads (output_padding shows up as a larger h or w), gy = its
/// input, gx = its output zeroed (add its bias afterwards).
void fr_conv2d_backward_input(const fr_conv2d_geometry *g, const float *gy, const float *w, float *gx,
                              size_t n, float *scratch);

/// gw[cout, cin/groups, kh, kw] += Σ_n gy ⋆ x: the weight gradient,
/// ACCUMULATED into gw. x [n, cin, h, w], gy [n, cout, oh, ow]. The bias
/// gradient is the plain sum of gy over n, oh, ow (not computed here).
void fr_conv2d_backward_weight(const fr_conv2d_geometry *g, const float *x, const float *gy, float *gw,
                               size_t n, float *scratch);

/// 3×3, stride-1, dilation-1, ungrouped convolution by Winograd's F(2×2, 3×3)
/// (conv_winograd.c): 16·cin multiply-adds per output channel and 2×2 tile
/// of outputs where the direct form takes 36·cin, 2.25× fewer.
/// fr_conv2d_winograd_applies(g): whether g qualifies (3×3, stride 1,
/// dilation 1, groups 1, cin and cout ≥ 16, the AVX-512F path taken). Pack
/// the weights once, and after every change, with fr_conv2d_winograd_pack
/// into fr_conv2d_winograd_packed_floats(g) floats (16·cout·cin: G w Gᵀ per
/// channel pair, computed in double, rounded once). Scratch:
/// fr_conv2d_winograd_scratch_floats(g) floats (one block of 64–256 tiles,
/// transformed: 16·(cin + cout)·tiles + 2064; never O(n)). y as
/// fr_conv2d_forward computes it, overwritten, but each output is summed in
/// another order (the transformed products over ci, then Aᵀ·Aᵀ of 3 + 3
/// terms, then the bias), so its rounding error is a small multiple of the
/// direct form's (test_conv_kernels checks 4× the direct form's tolerance of
/// Σ|w·x|; measured ≈ 2×). A sample's output is the same bits alone or in
/// any batch. No aliasing.
int fr_conv2d_winograd_applies(const fr_conv2d_geometry *g);
size_t fr_conv2d_winograd_packed_floats(const fr_conv2d_geometry *g);
void fr_conv2d_winograd_pack(const fr_conv2d_geometry *g, const float *w, float *u);
size_t fr_conv2d_winograd_scratch_floats(const fr_conv2d_geometry *g);
void fr_conv2d_forward_winograd(const fr_conv2d_geometry *g, const float *x, const float *u, const float *bias,
                                float *y, size_t n, float *scratch);
/// fr_conv2d_forward_winograd on output rows [r0, r1) of every sample only
/// (same bits as the whole call there, nothing written elsewhere); r0
/// even, r1 even or ≥ oh (whole 2×2 tiles).
void fr_conv2d_forward_winograd_rows(const fr_conv2d_geometry *g, const float *x, const float *u, const float *bias,
                                     float *y, size_t n, float *scratch, size_t r0, size_t r1);
/// The input gradient the same way (gx += convᵀ(gy, w), as
/// fr_conv2d_backward_input, accumulated): at stride 1 it is a 3×3 stride-1
/// convolution of gy by the flipped, transposed kernel, padded by 2 − pad.
/// fr_conv2d_winograd_input_grad_applies(g): fr_conv2d_winograd_applies(g)
/// and pads ≤ 2. fr_conv2d_winograd_pack_input_grad packs that kernel into
/// fr_conv2d_winograd_packed_floats(g) floats; fr_conv2d_backward_input_winograd
/// takes fr_conv2d_winograd_scratch_floats(g) floats of scratch.
int fr_conv2d_winograd_input_grad_applies(const fr_conv2d_geometry *g);
void fr_conv2d_winograd_pack_input_grad(const fr_conv2d_geometry *g, const float *w, float *ut);
void fr_conv2d_backward_input_winograd(const fr_conv2d_geometry *g, const float *gy, const float *ut, float *gx,
                                       size_t n, float *scratch);

/// y[r, :] = softmax(x[r, :]) = exp(x - max) · (1 / Σ exp(x - max)) for
/// r < rows; exp is kernels.c's polynomial (< 2 ulp; the AVX-512F path
/// keeps denormal results that fr_unary_forward flushes to 0 below -87.3).
/// Entries of -inf give 0; a row of -inf gives NaN, as PyTorch does.
/// x and y may alias exactly.
void fr_softmax_rows(const float *x, float *y, size_t rows, size_t cols);

/// Attention for `rows` query rows (16 or 32): Y[i, :] = softmax((c·Q[i, :])
/// ·Kᵀ)·V for i < rows, with Q [rows, depth] (row stride lq), c =
/// q_scale[0] (1 when NULL), K [keys, depth] (lk; [depth, keys] when
/// trans_k is 0, as fr_gemm's B), V [keys, width] (lv), Y [rows, width]
/// (ly), all row-major and read in place. The scores are kept key-major
/// (16 queries in a vector's lanes). The values of fr_binary_rows (c·Q,
/// op 2) → fr_gemm_prepacked → fr_softmax_rows → fr_gemm_prepacked bit for
/// bit. scratch: fr_attention_key_major_scratch_floats(keys, depth) floats.
/// Only where fr_attention_key_major_applies (AVX-512F active, 1 ≤ keys ≤
/// FR_ATTENTION_KEY_MAJOR_KEYS); elsewhere, or for other `rows`, it writes
/// nothing.
#define FR_ATTENTION_KEY_MAJOR_KEYS 256
#define FR_ATTENTION_KEY_MAJOR_ROWS 32
int fr_attention_key_major_applies(size_t keys, size_t depth, size_t width);
size_t fr_attention_key_major_scratch_floats(size_t keys, size_t depth);
void fr_attention_key_major(size_t rows, size_t keys, size_t depth, size_t width, int trans_k, const float *q,
                            size_t lq, const float *q_scale, const float *k, size_t lk, const float *v, size_t lv,
                            float *y, size_t ly, float *scratch);

/// LayerNorm of `rows` rows of m floats: per row mean μ and biased variance
/// (float sums in 16 interleaved partial sums), r = 1/sqrt(var + eps),
/// stats[2r] = μ, stats[2r + 1] = r, y = (x - μ)·r·gamma + beta (gamma and
/// beta [m] or NULL for 1 and 0). x and y may alias exactly.
void fr_layer_norm_rows(const float *x, const float *gamma, const float *beta, float *y, float *stats, size_t rows,
                        size_t m, float eps);

/// GroupNorm over x [n, c, spatial] with `groups` groups of c/groups
/// channels (c divisible by groups): per (sample, group) mean μ and
/// rstd = 1/sqrt(var + eps) (biased variance, two passes, sums in double),
/// written to stats[(s*groups + g)*2] = μ, [.. + 1] = rstd when stats is not
/// NULL; then
/// v = (x - μ)·rstd·gamma[ch] + beta[ch] (gamma/beta [c] or NULL for 1/0),
/// pre_activation_or_null[i] = v if not NULL, and y = silu ? v·σ(v) : v
/// (SiLU from fr_unary_forward(FR_SILU)). x and y may alias exactly; the
/// other buffers must not overlap.
void fr_group_norm_forward(const float *x, const float *gamma, const float *beta, float *y, float *stats,
                           float *pre_activation_or_null, size_t n, size_t c, size_t spatial, size_t groups,
                           float eps, int silu);

/* ===================== end of dense kernels =========================== */


/* ======================================================================
 * bfloat16 linear layers (gemm_bf16.c): weights packed once as bf16 pairs,
 * activations rounded to bf16 per block of rows, float32 accumulation.
 * ====================================================================== */

/// Whether the CPU has AVX512_BF16 (with AVX-512F/BW and OS zmm support),
/// from cpuid, whatever fr_bf16_force_unavailable says.
int fr_bf16_hardware(void);

/// Whether fr_gemm_bf16 runs its AVX512_BF16 kernel: the hardware has it and
/// it is not forced off. Callers take their float32 path when this is 0.
int fr_bf16_supported(void);

/// Makes fr_bf16_supported report 0 and fr_gemm_bf16 take its portable
/// path (nonzero), or restores detection (0); returns the previous setting.
/// For tests and benchmarks: not to be changed while a kernel runs.
int fr_bf16_force_unavailable(int force);

/// f rounded to bfloat16, to nearest with ties to even; NaN stays NaN
/// (quiet), zeros and denormals give a signed zero (as vcvtne2ps2bf16).
uint16_t fr_float_to_bf16(float f);
/// The float32 value of a bfloat16 (exact).
float fr_bf16_to_float(uint16_t h);

/// Packed bf16 weights for fr_gemm_bf16: panels of 16 outputs holding pairs
/// of consecutive k, wp[(p·k2 + kk)·32 + 2c + e] = bf16(W[16p + c, 2kk + e])
/// with k2 = ⌈in/2⌉, zero past out and in. W is [out, in] row-major, or
/// [in, out] when in_out_layout is nonzero. fr_bf16_packed_count gives the
/// uint16 values needed; the buffer should be 64-byte aligned.
size_t fr_bf16_packed_count(size_t out, size_t in);
void fr_pack_weights_bf16(const float *w, int in_out_layout, uint16_t *wp, size_t out, size_t in);

/// Scratch bytes fr_gemm_bf16 needs for rows of `in` features (the bf16
/// copy of a block of rows; any alignment).
size_t fr_gemm_bf16_scratch_bytes(size_t in);

/// y[r*out + j] = bias[j] (or 0) + Σ_k bf16(x[r*in + k])·W[j, k] in float32,
/// one vdpbf16ps per pair of k in increasing k (within a pair the odd
/// product is added first), so rows do not depend on m or on the other
/// rows. Products are exact; each addition rounds to float32 (denormal
/// inputs and results flush to zero). wp from fr_pack_weights_bf16;
/// scratch of fr_gemm_bf16_scratch_bytes(in) bytes; no aliasing.
/// Then y = f(y) with fr_unary_forward(activation, p1, p2) unless
/// activation is FR_IDENTITY, block by block while the outputs are in cache
/// (the same values as a separate pass).
/// Relative to the float32 product the error is about 2^-8 of Σ|x_k·W_jk|.
void fr_gemm_bf16(const float *x, const uint16_t *wp, const float *bias, float *y, size_t m, size_t out, size_t in,
                  void *scratch, int activation, float p1, float p2);

/// y = SiLU(y) in place, the form fr_gemm_bf16 fuses (no division; ≤ 2e-6
/// relative where |SiLU| ≥ 1e-6) when fr_bf16_supported(), else
/// fr_unary_forward(FR_SILU). For float32 layers of a bf16 pass (an MLP's
/// 3-input first layer), whose outputs the next bf16 layer rounds to 2^-9.
void fr_silu_bf16_path(float *y, size_t n);

/// 2-D convolution with bf16 products (conv_bf16.c): y as fr_conv2d_forward
/// computes it, but each output is bias (or 0) followed by one vdpbf16ps per
/// pair of k = (ci·kh + ky)·kw + kx in increasing order, the products of
/// bf16(w) and bf16(x) (round to nearest even) accumulated in float32; a
/// sample's output is the same bits alone or in any batch. wp from
/// fr_conv2d_pack_bf16 (fr_conv2d_bf16_packed_count uint16: per output
/// channel, its cin/groups·kh·kw weights as bf16, padded to even); scratch
/// of fr_conv2d_bf16_scratch_bytes bytes (⌈K/2⌉·384 + 128: one float32 panel of
/// im2col and the bf16 panels of 64 positions). Without AVX512_BF16
/// (fr_bf16_supported() == 0) a scalar path computes the same sums.
size_t fr_conv2d_bf16_packed_count(const fr_conv2d_geometry *g);
void fr_conv2d_pack_bf16(const fr_conv2d_geometry *g, const float *w, uint16_t *wp);
size_t fr_conv2d_bf16_scratch_bytes(const fr_conv2d_geometry *g);
void fr_conv2d_forward_bf16(const fr_conv2d_geometry *g, const float *x, const uint16_t *wp, const float *bias,
                            float *y, size_t n, void *scratch);

/* ===================== end of bfloat16 kernels ======================== */

/* ======================================================================
 * Dense-layer backward pass (gemm_backward.c): the two GEMMs of a Linear
 * layer's VJP on the register-tile engine, accumulating into gradients.
 * ====================================================================== */

/// W of a layer y = f(x·Wᵀ + b) packed for its input gradient: W [out, in]
/// row-major, or [in, out] when w_in_out_layout is nonzero, into wt_packed
/// of fr_linear_backward_packed_floats(out, in) floats (64-byte alignment
/// recommended). Pack once per weight update; chunks share it read-only.
size_t fr_linear_backward_packed_floats(size_t out, size_t in);
void fr_linear_backward_pack(const float *w, int w_in_out_layout, size_t out, size_t in, float *wt_packed);

/// The VJP GEMMs of that layer over `rows` samples, given g_z [rows, out]
/// (the output gradient times f'(z)) and x [rows, in]:
///   gx [rows, in] += g_z · W            (skipped when gx is NULL)
///   gw += g_zᵀ · x  ([out, in]), or xᵀ · g_z ([in, out]) when w_in_out_layout
///                                         (skipped when gw is NULL)
/// Both accumulate (C on entry, then one multiply-add per summed index in
/// increasing order). wt_packed from fr_linear_backward_pack (read only when
/// gx is given); scratch of fr_linear_backward_scratch_floats(rows, out, in)
/// floats (used for layers with 1024 or more inputs, or outputs in the
/// [in, out] layout). Outputs must not overlap inputs or scratch.
size_t fr_linear_backward_scratch_floats(size_t rows, size_t out, size_t in);
void fr_linear_backward(const float *gz, const float *x, const float *wt_packed, float *gx, float *gw, size_t rows,
                        size_t out, size_t in, int w_in_out_layout, float *scratch);

/* =================== end of dense-layer backward ====================== */

// dit13
/// fr_layer_norm_rows followed by an adaLN modulation, y = LN(x)·scale +
/// shift, each a separate rounding (the values of LayerNorm, then Mul, then
/// Add). scale and shift (either may be NULL) are rows of m floats used by
/// `group` consecutive rows each (a DiT's per-sample [1, m] over its [T, m]
/// tokens: group = T), so row r reads row r / group of them. x and y may
/// alias exactly; stats as for fr_layer_norm_rows (of the normalised,
/// unmodulated rows).
void fr_layer_norm_mod_rows(const float *x, const float *gamma, const float *beta, const float *mod_scale,
                            const float *mod_shift, size_t group, float *y, float *stats, size_t rows, size_t m,
                            float eps);

/// C[m, 8] = A[m, k]·op(B)[k, 8] (A row-major, lda; C rows ldc ≥ 8 apart)
/// for products with 8 columns (attention P·V with 8-wide heads): two rows
/// of C per 16-lane vector. B is packed first by fr_gemm_n8_pack (trans_b
/// and ldb as for fr_gemm) into 16·k floats. Each C value is 0 followed by
/// one multiply-add per p in increasing p: the values of fr_gemm and
/// fr_gemm_prepacked bit for bit. Only fast where fr_packed_supported().
void fr_gemm_n8_pack(int trans_b, size_t k, const float *b, size_t ldb, float *bd);
void fr_gemm_n8(size_t m, size_t k, const float *a, size_t lda, const float *bd, float *c, size_t ldc);

#ifdef __cplusplus
}
#endif
#endif
