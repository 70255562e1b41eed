// 3×3, stride-1 convolution by Winograd's minimal filtering F(2×2, 3×3)
// (Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks", 2016);
// see include/ckernels.h for the contract.
//
// Each 2×2 block of outputs ("tile") of output channel co is
//   Y = Aᵀ [ Σ_ci U[co, ci] ⊙ V[ci] ] A,   U = G w[co, ci] Gᵀ,   V = Bᵀ d B,
// d the 4×4 input patch under the tile (zero outside the image):
//   Bᵀ = [1 0 −1 0; 0 1 1 0; 0 −1 1 0; 0 1 0 −1],
//   G  = [1 0 0; ½ ½ ½; ½ −½ ½; 0 0 1],   Aᵀ = [1 1 1 0; 0 1 −1 −1].
// The sum over ci is 16 independent GEMMs, one per element ξν of the 4×4
// transformed tile: M_ξν [cout, tiles] = U_ξν [cout, cin] · V_ξν [cin, tiles]
// — 16·cin·cout multiply-adds per tile of 4 outputs where the direct form
// takes 36·cin·cout: 2.25× fewer.
//
// Tiles are numbered over the whole batch (sample, tile row, tile column),
// cut into chunks of ≤ 16 consecutive tiles of one tile row (or of two rows
// when rows have 5–8 tiles), one vector each; a block of 64–256 tiles (whole
// chunks) is transformed into V (the engine's k-major panels of 16 tiles),
// multiplied by the 16 U_ξν on the GEMM engine into M, and transformed back
// into y. A tile's arithmetic never depends on which other tiles share its
// block, so a sample's output is the same bits alone or in any batch. The
// input gradient runs the same code on gy with the flipped, transposed
// kernel (accumulating into gx).
//
// Numerics: Bᵀ and Aᵀ have entries 0 and ±1, so the transforms are sums
// and differences of 4 + 4 (input) and 3 + 3 (output) terms, exact up to one
// rounding each; U is G w Gᵀ computed in double and rounded once. The error
// bound grows over the direct form's by a small constant factor (Aᵀ/Bᵀ sum
// magnitudes); test_conv_kernels measures both against a double reference.
#include "ckernels.h"
#include "dense_engine.h"

#include <stdint.h>
#include <string.h>

#ifdef FR_DENSE_HAVE_AVX512
#include <immintrin.h>
#endif

// Most tiles per block (fr_wino_tiles picks 64, 128 or 256).
#define FR_WINO_MAX_NT 256
// Smallest input and output channel counts that take this path: below them
// the 16 GEMMs are too thin (the image's own 1–3 channels, an output conv).
#define FR_WINO_MIN_CHANNELS 16

static inline size_t fr_min(size_t a, size_t b) { return a < b ? a : b; }

// Tiles per block: the more, the fewer GEMM calls and C-tile round trips
// per multiply-add, while V and M (16·(cin + cout) floats a tile) stay
// within about 2 MiB (measured on the U-Net shapes: 256 tiles 5–10 %
// faster than 64 at 32 channels, the same at 64).
static inline size_t fr_wino_tiles(const fr_conv2d_geometry *g) {
    return g->cin + g->cout <= 128 ? 256 : (g->cin + g->cout <= 256 ? 128 : 64);
}

// Floats between the 16 transformed elements ξν of V (channels × nt) and of
// M (output channels × nt): 64 floats more than a whole matrix, so that
// the 16 stores (loads) of one tile's transform fall in different L1 sets —
// unpadded, they lie a multiple of 4 KiB apart and evict each other.
static inline size_t fr_wino_stride(size_t channels, size_t nt) { return channels * nt + 64; }

int fr_conv2d_winograd_applies(const fr_conv2d_geometry *g) {
    return g->kh == 3 && g->kw == 3 && g->stride_h == 1 && g->stride_w == 1 && g->dil_h == 1 && g->dil_w == 1 &&
           g->groups == 1 && g->cin >= FR_WINO_MIN_CHANNELS && g->cout >= FR_WINO_MIN_CHANNELS && g->oh > 0 &&
           g->ow > 0 && fr_dense_use_avx512();
}

size_t fr_conv2d_winograd_packed_floats(const fr_conv2d_geometry *g) { return 16 * g->cout * g->cin; }

// u[ξν][co][ci] = (G k Gᵀ)[ξ][ν] for the cout × cin kernels k of w
// [cout, cin, 3, 3], or with `flip`, of the flipped, transposed kernels of
// w [cin, cout, 3, 3]: k[j] = w[ci, co, 8 − j] (an input gradient's).
static void fr_wino_pack(size_t cout, size_t cin, const float *w, int flip, float *u) {
    static const double G[4][3] = {{1, 0, 0}, {0.5, 0.5, 0.5}, {0.5, -0.5, 0.5}, {0, 0, 1}};
    for (size_t co = 0; co < cout; co++)
        for (size_t ci = 0; ci < cin; ci++) {
            double k[9];
            for (int j = 0; j < 9; j++) k[j] = flip ? w[(ci * cout + co) * 9 + 8 - (size_t)j] : w[(co * cin + ci) * 9 + (size_t)j];
            double gk[4][3];  // G · k
            for (int i = 0; i < 4; i++)
                for (int j = 0; j < 3; j++)
                    gk[i][j] = G[i][0] * k[j] + G[i][1] * k[3 + j] + G[i][2] * k[6 + j];
            for (int i = 0; i < 4; i++)
                for (int j = 0; j < 4; j++) {
                    double v = gk[i][0] * G[j][0] + gk[i][1] * G[j][1] + gk[i][2] * G[j][2];
                    u[((size_t)(i * 4 + j) * cout + co) * cin + ci] = (float)v;
                }
        }
}

void fr_conv2d_winograd_pack(const fr_conv2d_geometry *g, const float *w, float *u) {
    fr_wino_pack(g->cout, g->cin, w, 0, u);
}

size_t fr_conv2d_winograd_scratch_floats(const fr_conv2d_geometry *g) {
    // V (16 strides of cin × nt) and M (of cout × nt), 16 floats of slack
    // for 64-byte alignment.
    const size_t nt = fr_wino_tiles(g);
    return 16 * (fr_wino_stride(g->cin, nt) + fr_wino_stride(g->cout, nt)) + 16;
}

// One chunk: tiles [tw0, tw0 + cnt) of tile row th of sample s — and, when
// rows = 2 (rows of 5–8 tiles: 10×10 to 16×16 outputs, whose vectors would
// otherwise be half empty), the same tiles of row th + 1 — at tiles t …
// t + rows·cnt − 1 of its block, row by row. Chunk tile i is in tile row
// th + i / cnt, column tw0 + i % cnt.
typedef struct { size_t s, th, rows, tw0, cnt, t; } fr_wino_chunk;

// ---------------------------------------------------------------------------
// Portable transforms (one tile at a time); the reference for the vector ones.

static void fr_wino_input_portable(const fr_conv2d_geometry *g, const float *x, const fr_wino_chunk *c,
                                   float *v, size_t nt) {
    const ptrdiff_t h = (ptrdiff_t)g->h, w = (ptrdiff_t)g->w;
    const size_t cin = g->cin, vstride = fr_wino_stride(cin, nt);
    for (size_t ci = 0; ci < cin; ci++) {
        const float *xc = x + (c->s * cin + ci) * g->h * g->w;
        for (size_t l = 0; l < c->rows * c->cnt; l++) {
            const size_t th = c->th + l / c->cnt, tw = c->tw0 + l % c->cnt;
            float d[4][4], hd[4][4];
            for (int i = 0; i < 4; i++)
                for (int j = 0; j < 4; j++) {
                    ptrdiff_t iy = (ptrdiff_t)(2 * th) - (ptrdiff_t)g->pad_top + i;
                    ptrdiff_t ix = (ptrdiff_t)(2 * tw) - (ptrdiff_t)g->pad_left + j;
                    d[i][j] = iy >= 0 && iy < h && ix >= 0 && ix < w ? xc[iy * w + ix] : 0.0f;
                }
            for (int i = 0; i < 4; i++) {
                hd[i][0] = d[i][0] - d[i][2];
                hd[i][1] = d[i][1] + d[i][2];
                hd[i][2] = d[i][2] - d[i][1];
                hd[i][3] = d[i][1] - d[i][3];
            }
            size_t t = c->t + l;
            float *dst = v + (t / 16) * 16 * cin + ci * 16 + t % 16;
            for (int j = 0; j < 4; j++) {
                dst[(size_t)(0 * 4 + j) * vstride] = hd[0][j] - hd[2][j];
                dst[(size_t)(1 * 4 + j) * vstride] = hd[1][j] + hd[2][j];
                dst[(size_t)(2 * 4 + j) * vstride] = hd[2][j] - hd[1][j];
                dst[(size_t)(3 * 4 + j) * vstride] = hd[1][j] - hd[3][j];
            }
        }
    }
}

static void fr_wino_output_portable(const fr_conv2d_geometry *g, const float *m, const float *bias,
                                    const fr_wino_chunk *c, float *y, size_t nt, int accumulate) {
    const size_t cout = g->cout;
    for (size_t co = 0; co < cout; co++) {
        float *yc = y + (c->s * cout + co) * g->oh * g->ow;
        const float b = bias ? bias[co] : 0.0f;
        for (size_t l = 0; l < c->rows * c->cnt; l++) {
            const size_t th = c->th + l / c->cnt, tw = c->tw0 + l % c->cnt;
            const float *src = m + co * nt + c->t + l;
            float mm[4][4], a[4][2];
            for (int e = 0; e < 16; e++) mm[e / 4][e % 4] = src[(size_t)e * fr_wino_stride(cout, nt)];
            for (int i = 0; i < 4; i++) {
                a[i][0] = mm[i][0] + mm[i][1] + mm[i][2];
                a[i][1] = mm[i][1] - mm[i][2] - mm[i][3];
            }
            for (size_t u = 0; u < 2; u++) {
                size_t oy = 2 * th + u;
                if (oy >= g->oh) break;
                for (size_t vv = 0; vv < 2; vv++) {
                    size_t ox = 2 * tw + vv;
                    if (ox >= g->ow) break;
                    float r = u == 0 ? a[0][vv] + a[1][vv] + a[2][vv] : a[1][vv] - a[2][vv] - a[3][vv];
                    yc[oy * g->ow + ox] = accumulate ? yc[oy * g->ow + ox] + (r + b) : r + b;
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------
// AVX-512 transforms: a chunk's tiles in one vector. One row: tile tw0 + l
// in lane l. Two rows (cnt ≤ 8): row th in lanes 0 … cnt − 1, row th + 1 in
// lanes 8 … 8 + cnt − 1 while reading the input (each half of the 32-float
// window is one row), compacted to lanes cnt … 2·cnt − 1 when stored.

#ifdef FR_DENSE_HAVE_AVX512

// Lanes [lo, hi) of 16 (clipped), as a mask.
static inline __mmask16 fr_wino_lanes(ptrdiff_t lo, ptrdiff_t hi) {
    if (lo < 0) lo = 0;
    if (hi > 16) hi = 16;
    if (hi <= lo) return 0;
    return (__mmask16)(((1u << (hi - lo)) - 1u) << lo);
}

// Where the chunk's tiles go among the panels when the chunk starts at tile
// t: chunk tile i to panel (t + i) / 16, lane (t + i) % 16, i.e. the lanes
// of panel t / 16 (mask first) and of the next panel (mask second). The
// deinterleaving permutes (even, odd) put them there as they read the
// window: lane k takes window lane src(k) = the chunk tile's lane in the
// window (rotating by t % 16, and for two rows moving window lanes 8 … 8 +
// cnt − 1 to cnt … 2·cnt − 1), so no permute is left for the stores.
typedef struct {
    size_t panel;
    __m512i even, odd;  // window floats 2·src(k) and 2·src(k) + 1
    __mmask16 first, second;
} fr_wino_lanes_at;

static FR_DENSE_AVX512 inline fr_wino_lanes_at fr_wino_place(const fr_wino_chunk *c) {
    const size_t l0 = c->t % 16, n = c->rows * c->cnt;
    fr_wino_lanes_at at;
    at.panel = c->t / 16;
    int32_t idx[16];
    for (size_t k = 0; k < 16; k++) {
        const size_t i = (k + 16 - l0) % 16;  // the chunk tile panel lane k receives
        idx[k] = (int32_t)(i < c->cnt ? i : i - c->cnt + 8);
    }
    at.even = _mm512_slli_epi32(_mm512_loadu_si512(idx), 1);
    at.odd = _mm512_add_epi32(at.even, _mm512_set1_epi32(1));
    at.first = fr_wino_lanes((ptrdiff_t)l0, (ptrdiff_t)(l0 + n));
    at.second = fr_wino_lanes(0, (ptrdiff_t)(l0 + n) - 16);
    return at;
}

static FR_DENSE_AVX512 inline void fr_wino_store(float *panel, size_t pstride, const fr_wino_lanes_at *at, __m512 v) {
    _mm512_mask_storeu_ps(panel, at->first, v);
    if (at->second) _mm512_mask_storeu_ps(panel + pstride, at->second, v);
}

static FR_DENSE_AVX512 void fr_wino_input_avx512(const fr_conv2d_geometry *g, const float *x,
                                                 const fr_wino_chunk *c, float *v, size_t nt) {
    const ptrdiff_t h = (ptrdiff_t)g->h, w = (ptrdiff_t)g->w;
    const size_t cin = g->cin, vstride = fr_wino_stride(cin, nt), pstride = 16 * cin, plane = g->h * g->w;
    const fr_wino_lanes_at at = fr_wino_place(c);
    const __m512i even = at.even, odd = at.odd;
    const ptrdiff_t c0 = 2 * (ptrdiff_t)c->tw0 - (ptrdiff_t)g->pad_left;  // first input column
    // The 32-float window of patch row i is two loads, a (lanes 0–7's
    // columns) and b (lanes 8–15's), and the same two columns on (a2, b2).
    // One row: b continues a's row 16 columns on. Two rows: b is the same
    // columns of the next tile row (two input rows down), and only the
    // chunk's 2·cnt columns are read. Masks: in-image lanes; a row outside
    // the image loads nothing.
    const ptrdiff_t span = c->rows == 2 ? 2 * (ptrdiff_t)c->cnt : 32;
    const __mmask16 m0 = fr_wino_lanes(-c0, w - c0) & fr_wino_lanes(0, span),
                    m2 = fr_wino_lanes(-c0 - 2, w - c0 - 2) & fr_wino_lanes(0, span);
    const ptrdiff_t bcol = c->rows == 2 ? 0 : 16;  // b's first column past c0
    const __mmask16 m16 = c->rows == 2 ? m0 : fr_wino_lanes(-c0 - 16, w - c0 - 16),
                    m18 = c->rows == 2 ? m2 : fr_wino_lanes(-c0 - 18, w - c0 - 18);
    const ptrdiff_t r0 = 2 * (ptrdiff_t)c->th - (ptrdiff_t)g->pad_top, rb = c->rows == 2 ? r0 + 2 : r0;
    __mmask16 rm0[4], rm16[4], rm2[4], rm18[4];
    ptrdiff_t off[4], offb[4];  // floats from the plane to a's and b's first column
    for (int i = 0; i < 4; i++) {
        const int in = r0 + i >= 0 && r0 + i < h, inb = rb + i >= 0 && rb + i < h;
        rm0[i] = in ? m0 : 0, rm2[i] = in ? m2 : 0, rm16[i] = inb ? m16 : 0, rm18[i] = inb ? m18 : 0;
        off[i] = in ? (r0 + i) * w + c0 : 0;
        offb[i] = inb ? (rb + i) * w + c0 + bcol : 0;
    }
    const float *xs = x + c->s * cin * plane;
    float *dst = v + at.panel * pstride;
    for (size_t ci = 0; ci < cin; ci++, xs += plane, dst += 16) {
        __m512 hd[4][4];
        for (int i = 0; i < 4; i++) {
            // Masked-off lanes are not read: the address may lie outside x.
            const float *row = (const float *)((uintptr_t)xs + (uintptr_t)(off[i] * (ptrdiff_t)sizeof(float)));
            const float *rowb = (const float *)((uintptr_t)xs + (uintptr_t)(offb[i] * (ptrdiff_t)sizeof(float)));
            const __m512 a = _mm512_maskz_loadu_ps(rm0[i], row), b = _mm512_maskz_loadu_ps(rm16[i], rowb);
            const __m512 a2 = _mm512_maskz_loadu_ps(rm2[i], row + 2), b2 = _mm512_maskz_loadu_ps(rm18[i], rowb + 2);
            const __m512 d0 = _mm512_permutex2var_ps(a, even, b), d1 = _mm512_permutex2var_ps(a, odd, b);
            const __m512 d2 = _mm512_permutex2var_ps(a2, even, b2), d3 = _mm512_permutex2var_ps(a2, odd, b2);
            hd[i][0] = _mm512_sub_ps(d0, d2);
            hd[i][1] = _mm512_add_ps(d1, d2);
            hd[i][2] = _mm512_sub_ps(d2, d1);
            hd[i][3] = _mm512_sub_ps(d1, d3);
        }
        for (int j = 0; j < 4; j++) {
            fr_wino_store(dst + (size_t)(0 * 4 + j) * vstride, pstride, &at, _mm512_sub_ps(hd[0][j], hd[2][j]));
            fr_wino_store(dst + (size_t)(1 * 4 + j) * vstride, pstride, &at, _mm512_add_ps(hd[1][j], hd[2][j]));
            fr_wino_store(dst + (size_t)(2 * 4 + j) * vstride, pstride, &at, _mm512_sub_ps(hd[2][j], hd[1][j]));
            fr_wino_store(dst + (size_t)(3 * 4 + j) * vstride, pstride, &at, _mm512_sub_ps(hd[1][j], hd[3][j]));
        }
    }
}

// Stores v (lanes under mk) at p, or adds it to what is there.
static FR_DENSE_AVX512 inline void fr_wino_put(float *p, __mmask16 mk, __m512 v, int accumulate) {
    if (accumulate) v = _mm512_add_ps(_mm512_maskz_loadu_ps(mk, p), v);
    _mm512_mask_storeu_ps(p, mk, v);
}

static FR_DENSE_AVX512 void fr_wino_output_avx512(const fr_conv2d_geometry *g, const float *m, const float *bias,
                                                  const fr_wino_chunk *c, float *y, size_t nt, int accumulate) {
    const size_t cout = g->cout, mstride = fr_wino_stride(cout, nt);
    const __mmask16 lanes = fr_wino_lanes(0, (ptrdiff_t)(c->rows * c->cnt));
    // Output columns 2·tw0 + k of a row's two stores (one when cnt ≤ 8),
    // clipped to the image.
    const ptrdiff_t ox0 = 2 * (ptrdiff_t)c->tw0, ow = (ptrdiff_t)g->ow;
    const ptrdiff_t end = ox0 + 2 * (ptrdiff_t)c->cnt < ow ? ox0 + 2 * (ptrdiff_t)c->cnt : ow;
    const __mmask16 s0 = fr_wino_lanes(0, end - ox0), s16 = fr_wino_lanes(0, end - ox0 - 16);
    const __m512i lo = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    const __m512i hi = _mm512_add_epi32(lo, _mm512_set1_epi32(8));
    // The second tile row's tiles (two-row chunks) start at lane cnt.
    const __m512i lo1 = _mm512_add_epi32(lo, _mm512_set1_epi32((int)c->cnt));
    const size_t rows = fr_min(2, g->oh - 2 * c->th);
    const size_t rows1 = c->rows == 2 ? fr_min(2, g->oh - 2 * (c->th + 1)) : 0;
    for (size_t co = 0; co < cout; co++) {
        const float *src = m + co * nt + c->t;
        __m512 a[4][2];
        for (int i = 0; i < 4; i++) {
            const __m512 q0 = _mm512_maskz_loadu_ps(lanes, src + (size_t)(i * 4 + 0) * mstride);
            const __m512 q1 = _mm512_maskz_loadu_ps(lanes, src + (size_t)(i * 4 + 1) * mstride);
            const __m512 q2 = _mm512_maskz_loadu_ps(lanes, src + (size_t)(i * 4 + 2) * mstride);
            const __m512 q3 = _mm512_maskz_loadu_ps(lanes, src + (size_t)(i * 4 + 3) * mstride);
            a[i][0] = _mm512_add_ps(_mm512_add_ps(q0, q1), q2);
            a[i][1] = _mm512_sub_ps(_mm512_sub_ps(q1, q2), q3);
        }
        const __m512 b = _mm512_set1_ps(bias ? bias[co] : 0.0f);
        float *yc = y + (c->s * cout + co) * g->oh * g->ow + 2 * c->th * g->ow + (size_t)ox0;
        // y[u][v]: output row u, column v of every tile.
        const __m512 y00 = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(a[0][0], a[1][0]), a[2][0]), b);
        const __m512 y01 = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(a[0][1], a[1][1]), a[2][1]), b);
        const __m512 y10 = _mm512_add_ps(_mm512_sub_ps(_mm512_sub_ps(a[1][0], a[2][0]), a[3][0]), b);
        const __m512 y11 = _mm512_add_ps(_mm512_sub_ps(_mm512_sub_ps(a[1][1], a[2][1]), a[3][1]), b);
        for (size_t u = 0; u < rows; u++) {
            const __m512 y0 = u == 0 ? y00 : y10, y1 = u == 0 ? y01 : y11;
            float *yr = yc + u * g->ow;
            fr_wino_put(yr, s0, _mm512_permutex2var_ps(y0, lo, y1), accumulate);
            if (s16) fr_wino_put(yr + 16, s16, _mm512_permutex2var_ps(y0, hi, y1), accumulate);
        }
        for (size_t u = 0; u < rows1; u++)
            fr_wino_put(yc + (2 + u) * g->ow, s0, _mm512_permutex2var_ps(u == 0 ? y00 : y10, lo1, u == 0 ? y01 : y11),
                        accumulate);
    }
}

#endif

// ---------------------------------------------------------------------------

// y = bias + conv(x) (accumulate: y += …) under g, kernels u, on tile rows
// [t0, t1) of every sample (output rows 2·t0 … 2·t1 − 1, clipped to oh).
static void fr_wino_run(const fr_conv2d_geometry *g, const float *x, const float *u, const float *bias, float *y,
                        size_t n, float *scratch, int accumulate, size_t t0, size_t t1) {
    const size_t cin = g->cin, cout = g->cout;
    const size_t tile_rows = (g->oh + 1) / 2, tiles_per_row = (g->ow + 1) / 2;
    if (t1 > tile_rows) t1 = tile_rows;
    if (n == 0 || t0 >= t1 || tiles_per_row == 0) return;
    const int avx512 = fr_dense_use_avx512();
    float *v = (float *)(((uintptr_t)scratch + 63) & ~(uintptr_t)63);
    const size_t nt = fr_wino_tiles(g), vstride = fr_wino_stride(cin, nt), mstride = fr_wino_stride(cout, nt);
    float *m = v + 16 * vstride;
    // Rows of 5–8 tiles go two to a chunk (fewer would not fill a vector).
    const size_t rows_per_chunk = tiles_per_row >= 5 && tiles_per_row <= 8 ? 2 : 1;
    fr_wino_chunk chunks[FR_WINO_MAX_NT];
    // Walk (sample, tile row, first tile column) in order, a block at a time.
    size_t s = 0, th = t0, tw = 0;
    while (s < n) {
        size_t nc = 0, t = 0;
        while (s < n) {
            const size_t cnt = fr_min(16, tiles_per_row - tw), rows = fr_min(rows_per_chunk, t1 - th);
            if (t + rows * cnt > nt) break;
            chunks[nc++] = (fr_wino_chunk){s, th, rows, tw, cnt, t};
            t += rows * cnt;
            tw += cnt;
            if (tw == tiles_per_row) {
                tw = 0;
                th += rows;
                if (th == t1) th = t0, s++;
            }
        }
        for (size_t i = 0; i < nc; i++) {
#ifdef FR_DENSE_HAVE_AVX512
            if (avx512) fr_wino_input_avx512(g, x, &chunks[i], v, nt);
            else
#endif
                fr_wino_input_portable(g, x, &chunks[i], v, nt);
        }
        for (size_t e = 0; e < 16; e++)
            fr_dense_block(cout, t, cin, u + e * cout * cin, cin, 0, v + e * vstride, FR_DENSE_PANEL,
                           FR_DENSE_PANEL * cin, m + e * mstride, nt, FR_INIT_ZERO, NULL);
        for (size_t i = 0; i < nc; i++) {
#ifdef FR_DENSE_HAVE_AVX512
            if (avx512) fr_wino_output_avx512(g, m, bias, &chunks[i], y, nt, accumulate);
            else
#endif
                fr_wino_output_portable(g, m, bias, &chunks[i], y, nt, accumulate);
        }
    }
}

void fr_conv2d_forward_winograd(const fr_conv2d_geometry *g, const float *x, const float *u, const float *bias,
                                float *y, size_t n, float *scratch) {
    fr_wino_run(g, x, u, bias, y, n, scratch, 0, 0, (g->oh + 1) / 2);
}

void fr_conv2d_forward_winograd_rows(const fr_conv2d_geometry *g, const float *x, const float *u, const float *bias,
                                     float *y, size_t n, float *scratch, size_t r0, size_t r1) {
    // Output rows [r0, r1) are tile rows [r0 / 2, ⌈r1 / 2⌉) when r0 is even
    // and r1 even or oh (the contract).
    if (r1 > g->oh) r1 = g->oh;
    fr_wino_run(g, x, u, bias, y, n, scratch, 0, r0 / 2, (r1 + 1) / 2);
}

// The input gradient as a stride-1 convolution of gy by the flipped,
// transposed kernel w'[ci, co, ky, kx] = w[co, ci, 2 − ky, 2 − kx], padded
// by 2 − pad, giving h × w (conv.c does the same on the direct path).
static fr_conv2d_geometry fr_wino_transposed(const fr_conv2d_geometry *g) {
    return (fr_conv2d_geometry){g->cout, g->oh, g->ow, g->cin, 3, 3, 1, 1, 2 - g->pad_top, 2 - g->pad_left,
                                1, 1, 1, g->h, g->w};
}

int fr_conv2d_winograd_input_grad_applies(const fr_conv2d_geometry *g) {
    return fr_conv2d_winograd_applies(g) && g->pad_top <= 2 && g->pad_left <= 2 && g->h > 0 && g->w > 0;
}

void fr_conv2d_winograd_pack_input_grad(const fr_conv2d_geometry *g, const float *w, float *ut) {
    fr_wino_pack(g->cin, g->cout, w, 1, ut);
}

void fr_conv2d_backward_input_winograd(const fr_conv2d_geometry *g, const float *gy, const float *ut, float *gx,
                                       size_t n, float *scratch) {
    const fr_conv2d_geometry t = fr_wino_transposed(g);
    fr_wino_run(&t, gy, ut, NULL, gx, n, scratch, 1, 0, (t.oh + 1) / 2);
}
