// Small-batch linear layers on prepacked weights; see include/ckernels.h.
//
// W [out, in] (PyTorch layout; or [in, out], MatMul's) is packed once into column panels of 16
// outputs, k-major: panel p holds wp[(p·in + k)·16 + c] = W[16p + c, k]
// (zero for c past `out`). A tile of MR rows × NP panels keeps MR·NP
// accumulators in zmm registers; each k step loads NP weight vectors and
// broadcasts MR inputs, so the weights stream through L1 once per row block
// and the FMA units, not the loads, set the pace.
//
// Every output is bias[j] (or 0) followed by one fused multiply-add per k in
// increasing k: the same sequence of roundings whatever the tile shape, so a
// sample's outputs are bitwise identical alone or inside any batch.
#include "ckernels.h"

#include <stdint.h>
#include <string.h>

#if defined(__x86_64__) && defined(__clang__) && !defined(FLOWRT_NO_CLONES)
#define FR_HAVE_AVX512_KERNEL 1
#include <immintrin.h>
#endif

#define FR_PANEL 16

size_t fr_packed_count(size_t out, size_t in) {
    return (out + FR_PANEL - 1) / FR_PANEL * FR_PANEL * in;
}

void fr_pack_weights(const float *w, int in_out_layout, float *wp, size_t out, size_t in) {
    size_t panels = (out + FR_PANEL - 1) / FR_PANEL;
    for (size_t p = 0; p < panels; p++) {
        float *dst = wp + p * in * FR_PANEL;
        for (size_t k = 0; k < in; k++) {
            for (size_t c = 0; c < FR_PANEL; c++) {
                size_t j = p * FR_PANEL + c;
                float v = 0.0f;
                if (j < out) v = in_out_layout ? w[k * out + j] : w[j * in + k];
                dst[k * FR_PANEL + c] = v;
            }
        }
    }
}

#ifdef FR_HAVE_AVX512_KERNEL

int fr_packed_supported(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f");
}

#define FR_AVX512 __attribute__((target("avx512f")))

// One tile: rows [0, MR) of x (row stride in) times panels [0, NP) of wp
// (panel stride in·16) into y (row stride ldy); `cols` (≤ NP·16) outputs are
// valid. MR and NP are constants at every call site, so clang unrolls the
// r and p loops and keeps c[][] in registers.
static inline __attribute__((always_inline)) FR_AVX512
void fr_tile(const float *restrict x, const float *restrict wp, const float *restrict bias,
             float *restrict y, size_t in, size_t ldy, size_t cols, const int MR, const int NP) {
    __m512 c[8][8];
    __mmask16 mask[8];
    for (int p = 0; p < NP; p++) {
        size_t left = cols > (size_t)p * FR_PANEL ? cols - (size_t)p * FR_PANEL : 0;
        mask[p] = left >= FR_PANEL ? (__mmask16)0xffff : (__mmask16)((1u << left) - 1u);
        __m512 b = bias ? _mm512_maskz_loadu_ps(mask[p], bias + p * FR_PANEL) : _mm512_setzero_ps();
        for (int r = 0; r < MR; r++) c[r][p] = b;
    }
    const size_t pstride = in * FR_PANEL;
    for (size_t k = 0; k < in; k++) {
        __m512 w[8];
        for (int p = 0; p < NP; p++) w[p] = _mm512_loadu_ps(wp + p * pstride + k * FR_PANEL);
        for (int r = 0; r < MR; r++) {
            __m512 a = _mm512_set1_ps(x[r * in + k]);
            for (int p = 0; p < NP; p++) c[r][p] = _mm512_fmadd_ps(a, w[p], c[r][p]);
        }
    }
    for (int r = 0; r < MR; r++)
        for (int p = 0; p < NP; p++)
            _mm512_mask_storeu_ps(y + r * ldy + p * FR_PANEL, mask[p], c[r][p]);
}

#define FR_TILE_CASE(MR_, NP_) \
    case (MR_) * 16 + (NP_): fr_tile(x, wp, bias, y, in, ldy, cols, MR_, NP_); return;

// Runtime (MR, NP) → the unrolled instance. Accumulators: MR·NP ≤ 16, and
// at least 8 where the shape allows, to cover the FMA latency.
static FR_AVX512 void fr_tile_dispatch(int mr, int np, const float *x, const float *wp, const float *bias,
                                        float *y, size_t in, size_t ldy, size_t cols) {
    switch (mr * 16 + np) {
    FR_TILE_CASE(1, 8) FR_TILE_CASE(1, 4) FR_TILE_CASE(1, 2) FR_TILE_CASE(1, 1)
    FR_TILE_CASE(2, 4) FR_TILE_CASE(2, 2) FR_TILE_CASE(2, 1)
    FR_TILE_CASE(3, 4) FR_TILE_CASE(3, 2) FR_TILE_CASE(3, 1)
    FR_TILE_CASE(4, 2) FR_TILE_CASE(4, 1)
    FR_TILE_CASE(5, 2) FR_TILE_CASE(5, 1)
    FR_TILE_CASE(6, 2) FR_TILE_CASE(6, 1)
    FR_TILE_CASE(7, 2) FR_TILE_CASE(7, 1)
    FR_TILE_CASE(8, 2) FR_TILE_CASE(8, 1)
    default: __builtin_unreachable();
    }
}

#undef FR_TILE_CASE

// Widest panel group for a row block of `mr` rows.
static inline int fr_panels_for(int mr) { return mr == 1 ? 8 : (mr <= 3 ? 4 : 2); }

// `blocks` row blocks of `mr` rows over every panel, panel groups outermost
// so that a group's weights stay in L1 while the row blocks pass over them.
static FR_AVX512 void fr_gemm_rows(const float *x, const float *wp, const float *bias, float *y,
                                   size_t blocks, int mr, size_t out, size_t in) {
    const size_t panels = (out + FR_PANEL - 1) / FR_PANEL;
    for (size_t p = 0; p < panels;) {
        int np = fr_panels_for(mr);
        while ((size_t)np > panels - p) np /= 2;
        size_t j = p * FR_PANEL;
        size_t cols = out - j < (size_t)np * FR_PANEL ? out - j : (size_t)np * FR_PANEL;
        for (size_t b = 0; b < blocks; b++)
            fr_tile_dispatch(mr, np, x + b * (size_t)mr * in, wp + p * in * FR_PANEL, bias ? bias + j : NULL,
                             y + b * (size_t)mr * out + j, in, out, cols);
        p += (size_t)np;
    }
}

FR_AVX512
void fr_gemm_packed(const float *restrict x, const float *restrict wp, const float *restrict bias,
                    float *restrict y, size_t m, size_t out, size_t in) {
    // ⌈m / 8⌉ row blocks with the rows spread evenly (as gemm.c's engine):
    // a last block of one or two rows over few panels would be a latency-
    // bound chain of multiply-adds. Short blocks take the wider panel groups
    // they need to cover FMA latency.
    if (m == 0) return;
    const size_t blocks = (m + 7) / 8, rows = m / blocks, wide = m % blocks;
    if (wide) fr_gemm_rows(x, wp, bias, y, wide, (int)rows + 1, out, in);
    fr_gemm_rows(x + wide * (rows + 1) * in, wp, bias, y + wide * (rows + 1) * out, blocks - wide, (int)rows, out, in);
}

// ---------------------------------------------------------------------------
// C = A·B for B with 8 columns (attention P·V with 8-wide heads, dit13):
// a 16-lane panel would leave half of every multiply-add idle, so two rows
// of C share one vector, lanes 0-7 row r and 8-15 row r + 1, against B's
// row duplicated into both halves (packed once by fr_gemm_n8_pack, at the
// end of this file: it is plain C, built with or without the AVX-512 path).

// Row pairs [i, i + 2·NPAIR) (the last pair's second row absent when
// `odd`): NPAIR accumulators, each C value 0 then one multiply-add per p in
// increasing p, as fr_gemm.
static inline __attribute__((always_inline)) FR_AVX512
void fr_n8_pairs(size_t k, const float *restrict a, size_t lda, const float *restrict bd, float *restrict c,
                 size_t ldc, const int NPAIR, int odd) {
    __m512 acc[8];
    for (int q = 0; q < NPAIR; q++) acc[q] = _mm512_setzero_ps();
    const float *lo[8], *hi[8];
    for (int q = 0; q < NPAIR; q++) {
        lo[q] = a + (size_t)(2 * q) * lda;
        hi[q] = (odd && q == NPAIR - 1) ? lo[q] : lo[q] + lda;
    }
    for (size_t p = 0; p < k; p++) {
        const __m512 bv = _mm512_loadu_ps(bd + p * 16);
        for (int q = 0; q < NPAIR; q++) {
            __m512 av = _mm512_mask_broadcastss_ps(_mm512_set1_ps(lo[q][p]), (__mmask16)0xff00, _mm_load_ss(hi[q] + p));
            acc[q] = _mm512_fmadd_ps(av, bv, acc[q]);
        }
    }
    for (int q = 0; q < NPAIR; q++) {
        float *r0 = c + (size_t)(2 * q) * ldc;
        _mm512_mask_storeu_ps(r0, (__mmask16)0x00ff, acc[q]);
        if (!(odd && q == NPAIR - 1)) _mm512_mask_storeu_ps(r0 + ldc - 8, (__mmask16)0xff00, acc[q]);
    }
}

FR_AVX512
void fr_gemm_n8(size_t m, size_t k, const float *restrict a, size_t lda, const float *restrict bd, float *restrict c,
                size_t ldc) {
    size_t i = 0;
    for (; i + 16 <= m; i += 16) fr_n8_pairs(k, a + i * lda, lda, bd, c + i * ldc, ldc, 8, 0);
    const size_t left = m - i;
    if (left == 0) return;
    const int pairs = (int)((left + 1) / 2), odd = (int)(left & 1);
    const float *ai = a + i * lda;
    float *ci = c + i * ldc;
    switch (pairs) {
    case 1: fr_n8_pairs(k, ai, lda, bd, ci, ldc, 1, odd); break;
    case 2: fr_n8_pairs(k, ai, lda, bd, ci, ldc, 2, odd); break;
    case 3: fr_n8_pairs(k, ai, lda, bd, ci, ldc, 3, odd); break;
    case 4: fr_n8_pairs(k, ai, lda, bd, ci, ldc, 4, odd); break;
    case 5: fr_n8_pairs(k, ai, lda, bd, ci, ldc, 5, odd); break;
    case 6: fr_n8_pairs(k, ai, lda, bd, ci, ldc, 6, odd); break;
    case 7: fr_n8_pairs(k, ai, lda, bd, ci, ldc, 7, odd); break;
    default: fr_n8_pairs(k, ai, lda, bd, ci, ldc, 8, odd); break;
    }
}

#else

int fr_packed_supported(void) { return 0; }


void fr_gemm_n8(size_t m, size_t k, const float *restrict a, size_t lda, const float *restrict bd, float *restrict c,
                size_t ldc) {
    for (size_t r = 0; r < m; r++)
        for (size_t j = 0; j < 8; j++) {
            float s = 0.0f;
            for (size_t p = 0; p < k; p++) s = __builtin_fmaf(a[r * lda + p], bd[p * 16 + j], s);
            c[r * ldc + j] = s;
        }
}

void fr_gemm_packed(const float *restrict x, const float *restrict wp, const float *restrict bias,
                    float *restrict y, size_t m, size_t out, size_t in) {
    // Reference order (bias, then one fused multiply-add per k); only reached
    // if a caller ignores fr_packed_supported().
    for (size_t r = 0; r < m; r++)
        for (size_t j = 0; j < out; j++) {
            const float *w = wp + (j / FR_PANEL) * in * FR_PANEL + j % FR_PANEL;
            float s = bias ? bias[j] : 0.0f;
            for (size_t k = 0; k < in; k++) s = __builtin_fmaf(x[r * in + k], w[k * FR_PANEL], s);
            y[r * out + j] = s;
        }
}

#endif

// bd[p·16 + c] = bd[p·16 + 8 + c] = op(B)[p, c] for p < k, c < 8.
void fr_gemm_n8_pack(int trans_b, size_t k, const float *b, size_t ldb, float *bd) {
    for (size_t p = 0; p < k; p++)
        for (size_t c = 0; c < 8; c++) {
            const float v = trans_b ? b[c * ldb + p] : b[p * ldb + c];
            bd[p * 16 + c] = v;
            bd[p * 16 + 8 + c] = v;
        }
}
