// General GEMM on the register-tile engine of gemm_packed.c; see
// include/ckernels.h for the contract and dense_engine.h for the engine.
//
// C = op(A)·op(B) + beta·C. B is packed block by block (at most 256 k ×
// 256 n) into k-major panels of 16 columns; A is never packed: a tile of
// MR ≤ 8 rows × NP panels broadcasts MR values of A per k (from rows
// i*lda + p, or from one contiguous run p*lda + i when A is transposed) and
// loads NP panel vectors, keeping MR·NP accumulators in zmm registers. Panel
// groups run outermost inside a block, so a group's 16·NP × kc floats of B
// stay in L1 while the row blocks stream A past them.
//
// Every C[i, j] starts as 0, C or a row bias and then receives one
// multiply-add per p in increasing p (blocks of k in increasing order, the
// partial sum stored to and reloaded from C in between, which is exact):
// results do not depend on m, on the tile a row falls in, or on blocking.
#include "ckernels.h"
#include "dense_engine.h"

#include <stdint.h>
#include <string.h>

#ifdef FR_DENSE_HAVE_AVX512
#include <immintrin.h>
#endif

#define FR_GEMM_KC 256  // k per packed B block
#define FR_GEMM_NC 256  // columns per packed B block

static int fr_dense_portable_forced = 0;

int fr_dense_force_portable(int force) {
    int previous = fr_dense_portable_forced;
    fr_dense_portable_forced = force != 0;
    return previous;
}

int fr_dense_use_avx512(void) {
#ifdef FR_DENSE_HAVE_AVX512
    if (fr_dense_portable_forced) return 0;
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f");
#else
    return 0;
#endif
}

int fr_dense_avx512_active(void) { return fr_dense_use_avx512(); }

static inline size_t fr_min(size_t a, size_t b) { return a < b ? a : b; }
static inline size_t fr_round16(size_t x) { return (x + 15) / 16 * 16; }

// ---------------------------------------------------------------------------
// Portable engine: the same tiles and order of p, separate multiply and add.

static void fr_tile_portable(size_t mr, size_t cols, size_t kc, const float *a, size_t lda, int a_trans,
                             const float *b, size_t bks, size_t bps, float *c, size_t ldc, int init,
                             const float *row_bias) {
    float acc[8 * FR_DENSE_PANEL];
    const size_t panels = (cols + FR_DENSE_PANEL - 1) / FR_DENSE_PANEL;
    for (size_t r = 0; r < mr; r++) {
        for (size_t j = 0; j < cols; j++)
            acc[j] = init == FR_INIT_LOAD ? c[r * ldc + j] : (init == FR_INIT_ROW_BIAS ? row_bias[r] : 0.0f);
        for (size_t j = cols; j < panels * FR_DENSE_PANEL; j++) acc[j] = 0.0f;
        for (size_t p = 0; p < kc; p++) {
            const float av = a_trans ? a[p * lda + r] : a[r * lda + p];
            for (size_t q = 0; q < panels; q++) {
                const float *bq = b + q * bps + p * bks;
                float *aq = acc + q * FR_DENSE_PANEL;
                size_t lanes = fr_min(FR_DENSE_PANEL, cols - q * FR_DENSE_PANEL);
                for (size_t l = 0; l < lanes; l++) aq[l] = aq[l] + av * bq[l];
            }
        }
        for (size_t j = 0; j < cols; j++) c[r * ldc + j] = acc[j];
    }
}

static void fr_block_portable(size_t m, size_t cols, size_t kc, const float *a, size_t lda, int a_trans,
                              const float *b, size_t bks, size_t bps, float *c, size_t ldc, int init,
                              const float *row_bias) {
    const size_t group = 8 * FR_DENSE_PANEL;
    for (size_t j = 0; j < cols; j += group) {
        size_t w = fr_min(group, cols - j);
        const float *bj = b + j / FR_DENSE_PANEL * bps;
        for (size_t i = 0; i < m; i += 8) {
            size_t mr = fr_min(8, m - i);
            const float *ai = a_trans ? a + i : a + i * lda;
            fr_tile_portable(mr, w, kc, ai, lda, a_trans, bj, bks, bps, c + i * ldc + j, ldc, init,
                             row_bias ? row_bias + i : NULL);
        }
    }
}

// ---------------------------------------------------------------------------
// AVX-512F engine.

#ifdef FR_DENSE_HAVE_AVX512

// Widest panel group for a row block of `mr` rows (MR·NP ≤ 16 accumulators,
// at least 8 where the columns allow, to cover the FMA latency).
static inline int fr_panels_for(int mr) { return mr == 1 ? 8 : (mr <= 4 ? 4 : 2); }

// One tile: MR rows × NP panels; `cols` valid columns with (NP-1)·16 < cols
// ≤ NP·16, so only the last panel can be partial. MR, NP and AT are
// constants at every call site: clang unrolls r and p and keeps acc[][] in
// registers.
static inline __attribute__((always_inline)) FR_DENSE_AVX512
void fr_tile(const int MR, const int NP, const int AT, size_t kc, const float *restrict a, size_t lda,
             const float *restrict b, size_t bks, size_t bps, float *restrict c, size_t ldc, size_t cols,
             int init, const float *restrict row_bias) {
    __m512 acc[8][8];
    const size_t left = cols - (size_t)(NP - 1) * FR_DENSE_PANEL;
    const __mmask16 last = left >= FR_DENSE_PANEL ? (__mmask16)0xffff : (__mmask16)((1u << left) - 1u);
    for (int r = 0; r < MR; r++) {
        for (int p = 0; p < NP; p++) {
            __mmask16 mk = p == NP - 1 ? last : (__mmask16)0xffff;
            if (init == FR_INIT_LOAD) acc[r][p] = _mm512_maskz_loadu_ps(mk, c + r * ldc + p * FR_DENSE_PANEL);
            else if (init == FR_INIT_ROW_BIAS) acc[r][p] = _mm512_set1_ps(row_bias[r]);
            else acc[r][p] = _mm512_setzero_ps();
        }
    }
    for (size_t k = 0; k < kc; k++) {
        __m512 bv[8];
        for (int p = 0; p < NP; p++) {
            const float *src = b + p * bps + k * bks;
            bv[p] = p == NP - 1 ? _mm512_maskz_loadu_ps(last, src) : _mm512_loadu_ps(src);
        }
        for (int r = 0; r < MR; r++) {
            __m512 av = _mm512_set1_ps(AT ? a[k * lda + r] : a[r * lda + k]);
            for (int p = 0; p < NP; p++) acc[r][p] = _mm512_fmadd_ps(av, bv[p], acc[r][p]);
        }
    }
    for (int r = 0; r < MR; r++)
        for (int p = 0; p < NP; p++)
            _mm512_mask_storeu_ps(c + r * ldc + p * FR_DENSE_PANEL, p == NP - 1 ? last : (__mmask16)0xffff,
                                  acc[r][p]);
}

#define FR_TILE_CASE(MR_, NP_)                                                                       \
    case (MR_) * 16 + (NP_):                                                                         \
        if (a_trans) fr_tile(MR_, NP_, 1, kc, a, lda, b, bks, bps, c, ldc, cols, init, row_bias);   \
        else fr_tile(MR_, NP_, 0, kc, a, lda, b, bks, bps, c, ldc, cols, init, row_bias);           \
        return;

static FR_DENSE_AVX512 void fr_tile_dispatch(int mr, int np, size_t kc, const float *a, size_t lda, int a_trans,
                                             const float *b, size_t bks, size_t bps, float *c, size_t ldc,
                                             size_t cols, int init, const float *row_bias) {
    switch (mr * 16 + np) {
    FR_TILE_CASE(1, 8) FR_TILE_CASE(1, 4) FR_TILE_CASE(1, 2) FR_TILE_CASE(1, 1)
    FR_TILE_CASE(2, 4) FR_TILE_CASE(2, 2) FR_TILE_CASE(2, 1)
    FR_TILE_CASE(3, 4) FR_TILE_CASE(3, 2) FR_TILE_CASE(3, 1)
    FR_TILE_CASE(4, 4) FR_TILE_CASE(4, 2) FR_TILE_CASE(4, 1)
    FR_TILE_CASE(5, 2) FR_TILE_CASE(5, 1)
    FR_TILE_CASE(6, 2) FR_TILE_CASE(6, 1)
    FR_TILE_CASE(7, 2) FR_TILE_CASE(7, 1)
    FR_TILE_CASE(8, 2) FR_TILE_CASE(8, 1)
    default: __builtin_unreachable();
    }
}

#undef FR_TILE_CASE

// Row blocks of `mr` rows (`blocks` of them, starting at row i0) over every
// panel of the block, panel groups outermost.
static FR_DENSE_AVX512 void fr_rows_avx512(size_t i0, size_t blocks, int mr, size_t cols, size_t kc,
                                           const float *a, size_t lda, int a_trans, const float *b, size_t bks,
                                           size_t bps, float *c, size_t ldc, int init, const float *row_bias) {
    const size_t panels = (cols + FR_DENSE_PANEL - 1) / FR_DENSE_PANEL;
    for (size_t q = 0; q < panels;) {
        int np = fr_panels_for(mr);
        while ((size_t)np > panels - q) np /= 2;
        size_t j = q * FR_DENSE_PANEL;
        size_t w = fr_min(cols - j, (size_t)np * FR_DENSE_PANEL);
        for (size_t blk = 0; blk < blocks; blk++) {
            size_t i = i0 + blk * (size_t)mr;
            const float *ai = a_trans ? a + i : a + i * lda;
            fr_tile_dispatch(mr, np, kc, ai, lda, a_trans, b + q * bps, bks, bps, c + i * ldc + j, ldc, w, init,
                             row_bias ? row_bias + i : NULL);
        }
        q += (size_t)np;
    }
}

static FR_DENSE_AVX512 void fr_block_avx512(size_t m, size_t cols, size_t kc, const float *a, size_t lda,
                                            int a_trans, const float *b, size_t bks, size_t bps, float *c,
                                            size_t ldc, int init, const float *row_bias) {
    // 4 rows × 4 panels where there are 4 panels (4 broadcasts and 4 loads
    // per 16 multiply-adds: 2-3% faster on the U-Nets' convolutions and
    // attention scores than 8 × 2's 8 + 2), else 8 rows × 2 panels.
    // The rows are spread evenly over the tiles, ⌈m / mr⌉ of them: a tail
    // of one row and one panel is a single chain of multiply-adds, latency-
    // bound (4 cycles each where 8 rows take 8 cycles for 8), and attention's
    // P·V at 49 tokens with 16-float heads spent 40% of its time in it as
    // 6 × 8 + 1 rows; 7 × 7 has no such chain. Values do not depend on the
    // tile a row falls in.
    if (m == 0) return;
    const int mr = cols > 3 * FR_DENSE_PANEL ? 4 : 8;
    const size_t tiles = (m + (size_t)mr - 1) / (size_t)mr;
    const size_t rows = m / tiles, wide = m % tiles;  // `wide` tiles of rows + 1, the rest of `rows`
    if (wide) fr_rows_avx512(0, wide, (int)rows + 1, cols, kc, a, lda, a_trans, b, bks, bps, c, ldc, init, row_bias);
    fr_rows_avx512(wide * (rows + 1), tiles - wide, (int)rows, cols, kc, a, lda, a_trans, b, bks, bps, c, ldc, init,
                   row_bias);
}

// bp[q][p][l] = B[p, 16q + l] from row-major b [kc, nc] (row stride ldb),
// zero for columns ≥ nc.
static FR_DENSE_AVX512 void fr_pack_b_rows_avx512(const float *b, size_t ldb, size_t kc, size_t nc, float *bp) {
    const size_t panels = (nc + FR_DENSE_PANEL - 1) / FR_DENSE_PANEL;
    for (size_t q = 0; q < panels; q++) {
        size_t lanes = fr_min(FR_DENSE_PANEL, nc - q * FR_DENSE_PANEL);
        __mmask16 mk = (__mmask16)(lanes >= 16 ? 0xffffu : (1u << lanes) - 1u);
        const float *src = b + q * FR_DENSE_PANEL;
        float *dst = bp + q * kc * FR_DENSE_PANEL;
        for (size_t p = 0; p < kc; p++)
            _mm512_storeu_ps(dst + p * FR_DENSE_PANEL, _mm512_maskz_loadu_ps(mk, src + p * ldb));
    }
}

// In-register transpose of 16 rows of 16 floats: out[t][l] = in[l][t].
static inline __attribute__((always_inline)) FR_DENSE_AVX512 void fr_transpose16(__m512 v[16]) {
    __m512 t[16], u[16];
    for (int i = 0; i < 8; i++) {
        t[2 * i] = _mm512_unpacklo_ps(v[2 * i], v[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_ps(v[2 * i], v[2 * i + 1]);
    }
    // u[4g + s]: rows 4g..4g+3 at column 4·lane128 + s.
    for (int g = 0; g < 4; g++) {
        __m512d lo = _mm512_castps_pd(t[4 * g]), lo2 = _mm512_castps_pd(t[4 * g + 2]);
        __m512d hi = _mm512_castps_pd(t[4 * g + 1]), hi2 = _mm512_castps_pd(t[4 * g + 3]);
        u[4 * g + 0] = _mm512_castpd_ps(_mm512_unpacklo_pd(lo, lo2));
        u[4 * g + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(lo, lo2));
        u[4 * g + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(hi, hi2));
        u[4 * g + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(hi, hi2));
    }
    for (int s = 0; s < 4; s++) {
        __m512 vlo = _mm512_shuffle_f32x4(u[s], u[4 + s], 0x88), vhi = _mm512_shuffle_f32x4(u[s], u[4 + s], 0xdd);
        __m512 wlo = _mm512_shuffle_f32x4(u[8 + s], u[12 + s], 0x88);
        __m512 whi = _mm512_shuffle_f32x4(u[8 + s], u[12 + s], 0xdd);
        v[s] = _mm512_shuffle_f32x4(vlo, wlo, 0x88);
        v[8 + s] = _mm512_shuffle_f32x4(vlo, wlo, 0xdd);
        v[4 + s] = _mm512_shuffle_f32x4(vhi, whi, 0x88);
        v[12 + s] = _mm512_shuffle_f32x4(vhi, whi, 0xdd);
    }
}

// bp[q][p][l] = B[p, 16q + l] = b[(16q + l)*ldb + p] (B transposed in
// memory), zero for columns ≥ nc: 16 × 16 blocks transposed in registers.
static FR_DENSE_AVX512 void fr_pack_b_cols_avx512(const float *b, size_t ldb, size_t kc, size_t nc, float *bp) {
    const size_t panels = (nc + FR_DENSE_PANEL - 1) / FR_DENSE_PANEL;
    for (size_t q = 0; q < panels; q++) {
        size_t lanes = fr_min(FR_DENSE_PANEL, nc - q * FR_DENSE_PANEL);
        float *dst = bp + q * kc * FR_DENSE_PANEL;
        for (size_t p0 = 0; p0 < kc; p0 += 16) {
            size_t kt = fr_min(16, kc - p0);
            __mmask16 mk = (__mmask16)(kt >= 16 ? 0xffffu : (1u << kt) - 1u);
            __m512 v[16];
            for (size_t l = 0; l < 16; l++)
                v[l] = l < lanes ? _mm512_maskz_loadu_ps(mk, b + (q * FR_DENSE_PANEL + l) * ldb + p0)
                                 : _mm512_setzero_ps();
            fr_transpose16(v);
            for (size_t t = 0; t < kt; t++) _mm512_storeu_ps(dst + (p0 + t) * FR_DENSE_PANEL, v[t]);
        }
    }
}

// dst[j·ldd + i] (+)= src[i·lds + j] through 16 × 16 blocks transposed in
// registers; `add` accumulates into dst (constant at each call site).
static inline __attribute__((always_inline)) FR_DENSE_AVX512
void fr_transpose_blocks_avx512(size_t rows, size_t cols, const float *src, size_t lds, float *dst, size_t ldd,
                                const int add) {
    for (size_t i0 = 0; i0 < rows; i0 += 16) {
        size_t it = fr_min(16, rows - i0);
        __mmask16 mi = (__mmask16)(it >= 16 ? 0xffffu : (1u << it) - 1u);
        for (size_t j0 = 0; j0 < cols; j0 += 16) {
            size_t jt = fr_min(16, cols - j0);
            __mmask16 mj = (__mmask16)(jt >= 16 ? 0xffffu : (1u << jt) - 1u);
            __m512 v[16];
            for (size_t l = 0; l < 16; l++)
                v[l] = l < it ? _mm512_maskz_loadu_ps(mj, src + (i0 + l) * lds + j0) : _mm512_setzero_ps();
            fr_transpose16(v);
            for (size_t t = 0; t < jt; t++) {
                float *d = dst + (j0 + t) * ldd + i0;
                _mm512_mask_storeu_ps(d, mi, add ? _mm512_add_ps(_mm512_maskz_loadu_ps(mi, d), v[t]) : v[t]);
            }
        }
    }
}

static FR_DENSE_AVX512 void fr_add_transposed_avx512(size_t rows, size_t cols, const float *src, size_t lds,
                                                     float *dst, size_t ldd) {
    fr_transpose_blocks_avx512(rows, cols, src, lds, dst, ldd, 1);
}

static FR_DENSE_AVX512 void fr_transpose_avx512(size_t rows, size_t cols, const float *src, size_t lds, float *dst,
                                                size_t ldd) {
    fr_transpose_blocks_avx512(rows, cols, src, lds, dst, ldd, 0);
}

#endif  // FR_DENSE_HAVE_AVX512

// dst[j·ldd + i] (+)= src[i·lds + j] in strips of 16 rows (the portable path).
static void fr_transpose_portable(size_t rows, size_t cols, const float *src, size_t lds, float *dst, size_t ldd,
                                  int add) {
    for (size_t i0 = 0; i0 < rows; i0 += 16)
        for (size_t j = 0; j < cols; j++)
            for (size_t i = i0; i < fr_min(rows, i0 + 16); i++)
                dst[j * ldd + i] = add ? dst[j * ldd + i] + src[i * lds + j] : src[i * lds + j];
}

void fr_transpose(size_t rows, size_t cols, const float *src, size_t lds, float *dst, size_t ldd) {
#ifdef FR_DENSE_HAVE_AVX512
    if (fr_dense_use_avx512()) {
        fr_transpose_avx512(rows, cols, src, lds, dst, ldd);
        return;
    }
#endif
    fr_transpose_portable(rows, cols, src, lds, dst, ldd, 0);
}

// One row of `run` floats: 16-float vector moves, the tail masked.
#ifdef FR_DENSE_HAVE_AVX512
static FR_DENSE_AVX512 void fr_permute_rows_avx512(const float *src, float *dst, size_t rank, const size_t *ext,
                                                   const ptrdiff_t *st, size_t run, size_t rows) {
    size_t idx[8] = {0};
    ptrdiff_t off = 0;
    const __mmask16 tail = (__mmask16)((1u << (run % 16)) - 1u);
    for (size_t r = 0; r < rows; r++) {
        const float *s = src + off;
        float *d = dst + r * run;
        size_t j = 0;
        for (; j + 16 <= run; j += 16) _mm512_storeu_ps(d + j, _mm512_loadu_ps(s + j));
        if (j < run) _mm512_mask_storeu_ps(d + j, tail, _mm512_maskz_loadu_ps(tail, s + j));
        for (size_t a = rank; a-- > 0;) {
            off += st[a];
            if (++idx[a] < ext[a]) break;
            off -= st[a] * (ptrdiff_t)ext[a];
            idx[a] = 0;
        }
    }
}
#endif

void fr_permute_rows(const float *src, float *dst, size_t rank, const size_t *extents, const ptrdiff_t *src_strides,
                     size_t run) {
    if (rank > 8 || run == 0) return;
    size_t rows = 1;
    for (size_t a = 0; a < rank; a++) rows *= extents[a];
    if (rows == 0) return;
#ifdef FR_DENSE_HAVE_AVX512
    if (fr_dense_use_avx512()) {
        fr_permute_rows_avx512(src, dst, rank, extents, src_strides, run, rows);
        return;
    }
#endif
    size_t idx[8] = {0};
    ptrdiff_t off = 0;
    for (size_t r = 0; r < rows; r++) {
        memcpy(dst + r * run, src + off, run * sizeof(float));
        for (size_t a = rank; a-- > 0;) {
            off += src_strides[a];
            if (++idx[a] < extents[a]) break;
            off -= src_strides[a] * (ptrdiff_t)extents[a];
            idx[a] = 0;
        }
    }
}

void fr_dense_add_transposed(size_t rows, size_t cols, const float *src, size_t lds, float *dst, size_t ldd) {
#ifdef FR_DENSE_HAVE_AVX512
    if (fr_dense_use_avx512()) {
        fr_add_transposed_avx512(rows, cols, src, lds, dst, ldd);
        return;
    }
#endif
    fr_transpose_portable(rows, cols, src, lds, dst, ldd, 1);
}

static void fr_pack_b(int trans_b, const float *b, size_t ldb, size_t p0, size_t j0, size_t kc, size_t nc,
                      float *bp, int avx512);

void fr_dense_pack_b(int trans_b, const float *b, size_t ldb, size_t kc, size_t nc, float *bp) {
    fr_pack_b(trans_b, b, ldb, 0, 0, kc, nc, bp, fr_dense_use_avx512());
}

void fr_dense_block(size_t m, size_t cols, size_t kc, const float *a, size_t lda, int a_trans, const float *b,
                    size_t bks, size_t bps, float *c, size_t ldc, int init, const float *row_bias) {
    if (m == 0 || cols == 0) return;
#ifdef FR_DENSE_HAVE_AVX512
    if (fr_dense_use_avx512()) {
        fr_block_avx512(m, cols, kc, a, lda, a_trans, b, bks, bps, c, ldc, init, row_bias);
        return;
    }
#endif
    fr_block_portable(m, cols, kc, a, lda, a_trans, b, bks, bps, c, ldc, init, row_bias);
}

// Packs op(B)[p0 .. p0+kc, j0 .. j0+nc] into bp (panels of 16, zero-padded).
static void fr_pack_b(int trans_b, const float *b, size_t ldb, size_t p0, size_t j0, size_t kc, size_t nc,
                      float *bp, int avx512) {
    const float *src = trans_b ? b + j0 * ldb + p0 : b + p0 * ldb + j0;
#ifdef FR_DENSE_HAVE_AVX512
    if (avx512) {
        if (trans_b) fr_pack_b_cols_avx512(src, ldb, kc, nc, bp);
        else fr_pack_b_rows_avx512(src, ldb, kc, nc, bp);
        return;
    }
#else
    (void)avx512;
#endif
    const size_t panels = (nc + FR_DENSE_PANEL - 1) / FR_DENSE_PANEL;
    for (size_t q = 0; q < panels; q++)
        for (size_t p = 0; p < kc; p++)
            for (size_t l = 0; l < FR_DENSE_PANEL; l++) {
                size_t j = q * FR_DENSE_PANEL + l;
                bp[(q * kc + p) * FR_DENSE_PANEL + l] =
                    j < nc ? (trans_b ? src[j * ldb + p] : src[p * ldb + j]) : 0.0f;
            }
}

// Blocks of n: as many as FR_GEMM_NC requires, of equal width (rounded up
// to a panel), so that n = 784 runs as 4 × 208 - 160 rather than 3 × 256 + 16.
static size_t fr_gemm_nc(size_t n) {
    size_t blocks = (n + FR_GEMM_NC - 1) / FR_GEMM_NC;
    return fr_round16((n + blocks - 1) / blocks);
}

size_t fr_gemm_scratch_floats(size_t m, size_t n, size_t k) {
    (void)m;
    size_t kc = k == 0 ? 1 : fr_min(k, FR_GEMM_KC);
    size_t nc = n == 0 ? FR_DENSE_PANEL : fr_gemm_nc(n);
    return kc * nc;
}

void fr_gemm(int trans_a, int trans_b, size_t m, size_t n, size_t k, const float *a, size_t lda, const float *b,
             size_t ldb, float beta, float *c, size_t ldc, float *scratch) {
    if (m == 0 || n == 0) return;
    if (beta != 0.0f && beta != 1.0f) {
        for (size_t i = 0; i < m; i++)
            for (size_t j = 0; j < n; j++) c[i * ldc + j] *= beta;
    }
    if (k == 0) {
        if (beta == 0.0f)
            for (size_t i = 0; i < m; i++) memset(c + i * ldc, 0, n * sizeof(float));
        return;
    }
    const int avx512 = fr_dense_use_avx512();
    const size_t ncb = fr_gemm_nc(n);
    for (size_t j0 = 0; j0 < n; j0 += ncb) {
        size_t nc = fr_min(ncb, n - j0);
        for (size_t p0 = 0; p0 < k; p0 += FR_GEMM_KC) {
            size_t kc = fr_min(FR_GEMM_KC, k - p0);
            fr_pack_b(trans_b, b, ldb, p0, j0, kc, nc, scratch, avx512);
            int init = p0 == 0 && beta == 0.0f ? FR_INIT_ZERO : FR_INIT_LOAD;
            const float *ap = trans_a ? a + p0 * lda : a + p0;
            fr_dense_block(m, nc, kc, ap, lda, trans_a, scratch, FR_DENSE_PANEL, kc * FR_DENSE_PANEL, c + j0, ldc,
                           init, NULL);
        }
    }
}

// B packed whole, in fr_gemm's blocks and order: for each block of n (j0),
// for each block of k (p0), kc × round16(nc) floats.
size_t fr_gemm_packed_b_floats(size_t n, size_t k) {
    if (n == 0 || k == 0) return 1;
    const size_t ncb = fr_gemm_nc(n);
    size_t total = 0;
    for (size_t j0 = 0; j0 < n; j0 += ncb) total += k * fr_round16(fr_min(ncb, n - j0));
    return total;
}

void fr_gemm_pack_b(int trans_b, size_t n, size_t k, const float *b, size_t ldb, float *bp) {
    if (n == 0 || k == 0) return;
    const int avx512 = fr_dense_use_avx512();
    const size_t ncb = fr_gemm_nc(n);
    for (size_t j0 = 0; j0 < n; j0 += ncb) {
        size_t nc = fr_min(ncb, n - j0);
        for (size_t p0 = 0; p0 < k; p0 += FR_GEMM_KC) {
            size_t kc = fr_min(FR_GEMM_KC, k - p0);
            fr_pack_b(trans_b, b, ldb, p0, j0, kc, nc, bp, avx512);
            bp += kc * fr_round16(nc);
        }
    }
}

// C = (accumulate ? C : 0) + A·op(B), B walked in fr_gemm_pack_b's block order.
static void fr_gemm_prepacked_into(size_t m, size_t n, size_t k, const float *a, size_t lda, const float *bp,
                                   float *c, size_t ldc, int accumulate) {
    if (m == 0 || n == 0) return;
    if (k == 0) {
        if (!accumulate)
            for (size_t i = 0; i < m; i++) memset(c + i * ldc, 0, n * sizeof(float));
        return;
    }
    const size_t ncb = fr_gemm_nc(n);
    for (size_t j0 = 0; j0 < n; j0 += ncb) {
        size_t nc = fr_min(ncb, n - j0);
        for (size_t p0 = 0; p0 < k; p0 += FR_GEMM_KC) {
            size_t kc = fr_min(FR_GEMM_KC, k - p0);
            fr_dense_block(m, nc, kc, a + p0, lda, 0, bp, FR_DENSE_PANEL, kc * FR_DENSE_PANEL, c + j0, ldc,
                           p0 == 0 && !accumulate ? FR_INIT_ZERO : FR_INIT_LOAD, NULL);
            bp += kc * fr_round16(nc);
        }
    }
}

void fr_gemm_prepacked(size_t m, size_t n, size_t k, const float *a, size_t lda, const float *bp, float *c,
                       size_t ldc) {
    fr_gemm_prepacked_into(m, n, k, a, lda, bp, c, ldc, 0);
}

void fr_gemm_prepacked_acc(size_t m, size_t n, size_t k, const float *a, size_t lda, const float *bp, float *c,
                           size_t ldc) {
    fr_gemm_prepacked_into(m, n, k, a, lda, bp, c, ldc, 1);
}

void fr_gemm_b_in_place(size_t m, size_t n, size_t k, const float *a, size_t lda, const float *b, size_t ldb,
                        float *c, size_t ldc) {
    if (m == 0 || n == 0) return;
    if (k == 0) {
        for (size_t i = 0; i < m; i++) memset(c + i * ldc, 0, n * sizeof(float));
        return;
    }
    fr_dense_block(m, n, k, a, lda, 0, b, ldb, FR_DENSE_PANEL, c, ldc, FR_INIT_ZERO, NULL);
}
