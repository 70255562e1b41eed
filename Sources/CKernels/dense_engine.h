// Private to CKernels: the register-tile engine gemm.c provides to conv.c.
// Not installed, not part of any API.
#ifndef FLOWRT_DENSE_ENGINE_H
#define FLOWRT_DENSE_ENGINE_H

#include <stddef.h>

#if defined(__x86_64__) && defined(__clang__) && !defined(FLOWRT_NO_CLONES)
#define FR_DENSE_HAVE_AVX512 1
#define FR_DENSE_AVX512 __attribute__((target("avx512f")))
#endif

/// Width of a B panel (one zmm of floats).
#define FR_DENSE_PANEL 16

/// How a C tile starts before the first multiply-add.
enum {
    FR_INIT_ZERO = 0,     // 0 (C is not read)
    FR_INIT_LOAD = 1,     // C's current value
    FR_INIT_ROW_BIAS = 2, // row_bias[i] for row i (C is not read)
};

/// Nonzero when the AVX-512F path is to be taken (CPU has it and the
/// portable paths are not forced).
int fr_dense_use_avx512(void);

/// C[i, j] = init + Σ_{p < kc} A[i, p]·B[p, j] for i < m, j < cols, one
/// multiply-add per p in increasing p.
///   A[i, p] = a_trans ? a[p*lda + i] : a[i*lda + p]  (read in place)
///   B[p, j] = b[(j / 16)*b_panel_stride + p*b_k_stride + j % 16]
/// B is never read at j ≥ cols, so it may be a packed, zero-padded block
/// (b_k_stride = 16, b_panel_stride = 16·kc) or a row-major matrix read in
/// place (b_k_stride = its row stride, b_panel_stride = 16).
void fr_dense_block(size_t m, size_t cols, size_t kc, const float *a, size_t lda, int a_trans,
                    const float *b, size_t b_k_stride, size_t b_panel_stride,
                    float *c, size_t ldc, int init, const float *row_bias);

/// dst[j*ldd + i] += src[i*lds + j] for i < rows, j < cols (a transposed add).
void fr_dense_add_transposed(size_t rows, size_t cols, const float *src, size_t lds, float *dst, size_t ldd);

/// Packs op(B) [kc, nc] into bp: bp[(q·kc + p)·16 + l] = op(B)[p, 16q + l],
/// zero for columns ≥ nc; op(B)[p, j] = trans_b ? b[j*ldb + p] : b[p*ldb + j].
/// bp holds kc × (nc rounded up to 16) floats.
void fr_dense_pack_b(int trans_b, const float *b, size_t ldb, size_t kc, size_t nc, float *bp);

#endif
