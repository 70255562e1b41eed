// 2-D convolution with bfloat16 products and float32 accumulation; see
// include/ckernels.h. The bf16 counterpart of conv.c's forward pass, for
// velocity evaluation under Precision.bf16 (forward and JVP only).
//
// Per sample and group, with K = (cin/groups)·kh·kw, k2 = ⌈K/2⌉ pairs and
// X̂ the implicit im2col (conv.c):
//   Y[co, pos] = bias[co] + Σ_kk bf16(W[co, 2kk..2kk+1]) · bf16(X̂[2kk..2kk+1, pos])
// Weights are packed once, row-major by output channel as bf16 pairs
// (wp[(g·cg + co)·2·k2 + 2kk + e] = bf16(W[co, 2kk + e]), zero at k = K).
// X̂ is built one block of 64 output positions at a time: each panel of 16
// positions is gathered in float32 (K rows × 16 lanes, as conv.c does) and
// then converted to the vdpbf16ps operand layout, 32 bf16 per pair of rows
// (lane l holds rows 2kk and 2kk+1 of position l). The register tile's
// rows are output channels (one broadcast weight pair each) and its columns
// panels, so the result lands in NCHW. Every output is bias (or 0) and then
// one vdpbf16ps per pair in increasing kk, whatever the tile or batch: a
// sample's output is bitwise the same alone or in any batch.
#include "ckernels.h"

#include <stdint.h>
#include <string.h>

#if defined(__x86_64__) && defined(__clang__) && !defined(FLOWRT_NO_CLONES)
#define FR_CB_HAVE_KERNEL 1
#include <immintrin.h>
#define FR_CB __attribute__((target("avx512f,avx512bw,avx512bf16")))
#endif

#define FR_CB_PANEL 16
#define FR_CB_NB 64  // output positions per block: 4 panels

static inline size_t fr_cb_min(size_t a, size_t b) { return a < b ? a : b; }

typedef struct {
    size_t cin_g, cout_g, khkw, k, k2, hw, ohw;
    ptrdiff_t h, w, ow, sh, sw, dh, dw, pt, pl, kw;
} fr_cb_plan;

static fr_cb_plan fr_cb_plan_of(const fr_conv2d_geometry *g) {
    fr_cb_plan p;
    p.cin_g = g->cin / g->groups;
    p.cout_g = g->cout / g->groups;
    p.khkw = g->kh * g->kw;
    p.k = p.cin_g * p.khkw;
    p.k2 = (p.k + 1) / 2;
    p.hw = g->h * g->w;
    p.ohw = g->oh * g->ow;
    p.h = (ptrdiff_t)g->h; p.w = (ptrdiff_t)g->w; p.ow = (ptrdiff_t)g->ow;
    p.sh = (ptrdiff_t)g->stride_h; p.sw = (ptrdiff_t)g->stride_w;
    p.dh = (ptrdiff_t)g->dil_h; p.dw = (ptrdiff_t)g->dil_w;
    p.pt = (ptrdiff_t)g->pad_top; p.pl = (ptrdiff_t)g->pad_left;
    p.kw = (ptrdiff_t)g->kw;
    return p;
}

size_t fr_conv2d_bf16_packed_count(const fr_conv2d_geometry *g) {
    fr_cb_plan p = fr_cb_plan_of(g);
    return g->groups * p.cout_g * 2 * p.k2;
}

void fr_conv2d_pack_bf16(const fr_conv2d_geometry *g, const float *w, uint16_t *wp) {
    fr_cb_plan p = fr_cb_plan_of(g);
    for (size_t co = 0; co < g->cout; co++)  // groups are consecutive output channels
        for (size_t k = 0; k < 2 * p.k2; k++)
            wp[co * 2 * p.k2 + k] = k < p.k ? fr_float_to_bf16(w[co * p.k + k]) : 0;
}

size_t fr_conv2d_bf16_scratch_bytes(const fr_conv2d_geometry *g) {
    fr_cb_plan p = fr_cb_plan_of(g);
    // float32 staging of one panel (2·k2 rows × 16) + the block's bf16 panels + alignment.
    return 2 * p.k2 * FR_CB_PANEL * sizeof(float) + (FR_CB_NB / FR_CB_PANEL) * p.k2 * 2 * FR_CB_PANEL * 2 + 128;
}

// ---------------------------------------------------------------------------
// Gather: st[k·16 + l] = X̂[k, p0 + l] for k < K and l < lanes, 0 elsewhere
// (rows up to 2·k2, lanes up to 16). Scalar, for any geometry.

static void fr_cb_gather_portable(const fr_cb_plan *p, const float *xs, size_t p0, size_t lanes, float *st) {
    memset(st, 0, 2 * p->k2 * FR_CB_PANEL * sizeof(float));
    for (size_t l = 0; l < lanes; l++) {
        ptrdiff_t oy = (ptrdiff_t)((p0 + l) / (size_t)p->ow), ox = (ptrdiff_t)((p0 + l) % (size_t)p->ow);
        for (size_t k = 0; k < p->k; k++) {
            size_t ci = k / p->khkw, kk = k % p->khkw;
            ptrdiff_t ky = (ptrdiff_t)kk / p->kw, kx = (ptrdiff_t)kk % p->kw;
            ptrdiff_t iy = oy * p->sh - p->pt + ky * p->dh, ix = ox * p->sw - p->pl + kx * p->dw;
            if (iy >= 0 && iy < p->h && ix >= 0 && ix < p->w) st[k * FR_CB_PANEL + l] = xs[ci * p->hw + (size_t)(iy * p->w + ix)];
        }
    }
}

#ifdef FR_CB_HAVE_KERNEL

// The same with AVX-512: per kernel offset (ky, kx), one index vector and
// mask for the 16 lanes, then one masked gather per input channel. With
// horizontal stride 1 and a panel spanning at most 4 output rows, masked
// loads of contiguous runs replace the gather.
static FR_CB void fr_cb_gather_avx512(const fr_cb_plan *p, const float *xs, size_t p0, size_t lanes, float *st) {
    // Positions of the panel split into runs along output rows.
    size_t run_l[FR_CB_PANEL], run_len[FR_CB_PANEL], runs = 0;
    ptrdiff_t run_oy[FR_CB_PANEL], run_ox[FR_CB_PANEL];
    {
        size_t l = 0;
        ptrdiff_t oy = (ptrdiff_t)(p0 / (size_t)p->ow), ox = (ptrdiff_t)(p0 % (size_t)p->ow);
        while (l < lanes) {
            size_t len = fr_cb_min((size_t)(p->ow - ox), lanes - l);
            run_l[runs] = l; run_len[runs] = len; run_oy[runs] = oy; run_ox[runs] = ox;
            runs++;
            l += len;
            ox = 0;
            oy++;
        }
    }
    const ptrdiff_t kh = (ptrdiff_t)p->khkw / p->kw;
    const size_t rstride = p->khkw * FR_CB_PANEL;  // floats between channels' rows
    if (p->k % 2) _mm512_storeu_ps(st + p->k * FR_CB_PANEL, _mm512_setzero_ps());  // the pad row
    if (p->sw == 1 && runs <= 4) {
        for (ptrdiff_t ky = 0; ky < kh; ky++)
            for (ptrdiff_t kx = 0; kx < p->kw; kx++) {
                __mmask16 mk[4] = {0, 0, 0, 0};
                const float *base[4] = {xs, xs, xs, xs};
                for (size_t r = 0; r < runs; r++) {
                    ptrdiff_t iy = run_oy[r] * p->sh - p->pt + ky * p->dh;
                    if (iy < 0 || iy >= p->h) continue;
                    ptrdiff_t ix0 = run_ox[r] - p->pl + kx * p->dw;  // input column of the run's first lane
                    ptrdiff_t lo = ix0 < 0 ? -ix0 : 0, hi = p->w - ix0;
                    if (hi > (ptrdiff_t)run_len[r]) hi = (ptrdiff_t)run_len[r];
                    if (hi <= lo) continue;
                    size_t a = run_l[r] + (size_t)lo, b = run_l[r] + (size_t)hi;
                    mk[r] = (__mmask16)(((1u << b) - 1u) & ~((1u << a) - 1u));
                    // Lane l reads base[l]: masked-off lanes are never touched,
                    // so the base may lie before the plane (integer arithmetic).
                    base[r] = (const float *)((uintptr_t)xs + (uintptr_t)((iy * p->w + ix0 - (ptrdiff_t)run_l[r]) * 4));
                }
                float *row = st + (size_t)(ky * p->kw + kx) * FR_CB_PANEL;
                for (size_t ci = 0; ci < p->cin_g; ci++) {
                    const size_t off = ci * p->hw;
                    __m512 v = _mm512_maskz_loadu_ps(mk[0], base[0] + off);
                    v = _mm512_mask_loadu_ps(v, mk[1], base[1] + off);
                    v = _mm512_mask_loadu_ps(v, mk[2], base[2] + off);
                    v = _mm512_mask_loadu_ps(v, mk[3], base[3] + off);
                    _mm512_storeu_ps(row + ci * rstride, v);
                }
            }
        return;
    }
    int32_t iyb[FR_CB_PANEL], ixb[FR_CB_PANEL];
    for (size_t r = 0; r < runs; r++)
        for (size_t t = 0; t < run_len[r]; t++) {
            iyb[run_l[r] + t] = (int32_t)(run_oy[r] * p->sh - p->pt);
            ixb[run_l[r] + t] = (int32_t)(((ptrdiff_t)t + run_ox[r]) * p->sw - p->pl);
        }
    for (size_t l = lanes; l < FR_CB_PANEL; l++) iyb[l] = ixb[l] = -1 - (int32_t)(p->dh * kh + p->dw * p->kw);
    const __m512i viy = _mm512_loadu_si512(iyb), vix = _mm512_loadu_si512(ixb);
    const __m512i vh = _mm512_set1_epi32((int32_t)p->h), vw = _mm512_set1_epi32((int32_t)p->w);
    const __m512i zero = _mm512_setzero_si512();
    for (ptrdiff_t ky = 0; ky < kh; ky++) {
        __m512i iy = _mm512_add_epi32(viy, _mm512_set1_epi32((int32_t)(ky * p->dh)));
        __mmask16 mrow = _mm512_cmpge_epi32_mask(iy, zero) & _mm512_cmplt_epi32_mask(iy, vh);
        __m512i rowoff = _mm512_mullo_epi32(iy, vw);
        for (ptrdiff_t kx = 0; kx < p->kw; kx++) {
            __m512i ix = _mm512_add_epi32(vix, _mm512_set1_epi32((int32_t)(kx * p->dw)));
            __mmask16 mk = mrow & _mm512_cmpge_epi32_mask(ix, zero) & _mm512_cmplt_epi32_mask(ix, vw);
            __m512i idx = _mm512_add_epi32(rowoff, ix);
            float *row = st + (size_t)(ky * p->kw + kx) * FR_CB_PANEL;
            for (size_t ci = 0; ci < p->cin_g; ci++)
                _mm512_storeu_ps(row + ci * rstride,
                                 _mm512_mask_i32gather_ps(_mm512_setzero_ps(), mk, idx, xs + ci * p->hw, 4));
        }
    }
}

// xp[kk·32 + 2l + e] = bf16(st[(2kk + e)·16 + l]): pairs of float32 rows to
// the vdpbf16ps operand (round to nearest even, as fr_float_to_bf16).
static FR_CB void fr_cb_interleave(const float *st, size_t k2, uint16_t *xp) {
    const __m512i order = _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8, 23, 7, 22, 6,
                                           21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
    for (size_t kk = 0; kk < k2; kk++) {
        __m512 even = _mm512_loadu_ps(st + 2 * kk * FR_CB_PANEL), odd = _mm512_loadu_ps(st + (2 * kk + 1) * FR_CB_PANEL);
        __m512i both = (__m512i)_mm512_cvtne2ps_pbh(odd, even);  // even in the low 16 words, odd in the high
        _mm512_storeu_si512(xp + kk * 2 * FR_CB_PANEL, _mm512_permutexvar_epi16(order, both));
    }
}

// One tile: MR output channels (weight pairs wr + r·ldw) × NP panels of xp
// (panel stride pstride uint16) over k2 pairs, into y (row stride ldy) at
// `cols` ≤ NP·16 valid positions; init from bias (or 0), or y when `load`.
static inline __attribute__((always_inline)) FR_CB void
fr_cb_tile(const uint16_t *restrict wr, size_t ldw, const uint16_t *restrict xp, size_t pstride, size_t k2,
           const float *restrict bias, int load, float *restrict y, size_t ldy, size_t cols, const int MR,
           const int NP) {
    __m512 c[6][4];
    __mmask16 mask[4];
    for (int q = 0; q < NP; q++) {
        size_t left = cols > (size_t)q * FR_CB_PANEL ? cols - (size_t)q * FR_CB_PANEL : 0;
        mask[q] = left >= FR_CB_PANEL ? (__mmask16)0xffff : (__mmask16)((1u << left) - 1u);
    }
    for (int r = 0; r < MR; r++)
        for (int q = 0; q < NP; q++)
            c[r][q] = load ? _mm512_maskz_loadu_ps(mask[q], y + r * ldy + q * FR_CB_PANEL)
                           : _mm512_set1_ps(bias ? bias[r] : 0.0f);
    for (size_t kk = 0; kk < k2; kk++) {
        __m512bh xv[4];
        for (int q = 0; q < NP; q++) xv[q] = (__m512bh)_mm512_loadu_si512(xp + q * pstride + kk * 2 * FR_CB_PANEL);
        for (int r = 0; r < MR; r++) {
            int32_t pair;
            memcpy(&pair, wr + r * ldw + 2 * kk, sizeof pair);
            __m512bh a = (__m512bh)_mm512_set1_epi32(pair);
            for (int q = 0; q < NP; q++) c[r][q] = _mm512_dpbf16_ps(c[r][q], a, xv[q]);
        }
    }
    for (int r = 0; r < MR; r++)
        for (int q = 0; q < NP; q++) _mm512_mask_storeu_ps(y + r * ldy + q * FR_CB_PANEL, mask[q], c[r][q]);
}

#define FR_CB_CASE(MR_, NP_) \
    case (MR_) * 8 + (NP_): fr_cb_tile(wr, ldw, xp, pstride, k2, bias, load, y, ldy, cols, MR_, NP_); return;

static FR_CB void fr_cb_tile_dispatch(int mr, int np, const uint16_t *wr, size_t ldw, const uint16_t *xp,
                                      size_t pstride, size_t k2, const float *bias, int load, float *y, size_t ldy,
                                      size_t cols) {
    switch (mr * 8 + np) {
    FR_CB_CASE(6, 4) FR_CB_CASE(5, 4) FR_CB_CASE(4, 4) FR_CB_CASE(3, 4) FR_CB_CASE(2, 4) FR_CB_CASE(1, 4)
    FR_CB_CASE(6, 3) FR_CB_CASE(5, 3) FR_CB_CASE(4, 3) FR_CB_CASE(3, 3) FR_CB_CASE(2, 3) FR_CB_CASE(1, 3)
    FR_CB_CASE(6, 2) FR_CB_CASE(5, 2) FR_CB_CASE(4, 2) FR_CB_CASE(3, 2) FR_CB_CASE(2, 2) FR_CB_CASE(1, 2)
    FR_CB_CASE(6, 1) FR_CB_CASE(5, 1) FR_CB_CASE(4, 1) FR_CB_CASE(3, 1) FR_CB_CASE(2, 1) FR_CB_CASE(1, 1)
    default: __builtin_unreachable();
    }
}

#undef FR_CB_CASE

static FR_CB void fr_cb_forward_group(const fr_cb_plan *p, const float *xs, const uint16_t *wg, const float *bg,
                                      float *ys, float *st, uint16_t *xp) {
    const size_t pstride = p->k2 * 2 * FR_CB_PANEL, ldw = 2 * p->k2;
    for (size_t j0 = 0; j0 < p->ohw; j0 += FR_CB_NB) {
        const size_t nb = fr_cb_min(FR_CB_NB, p->ohw - j0), panels = (nb + FR_CB_PANEL - 1) / FR_CB_PANEL;
        for (size_t q = 0; q < panels; q++) {
            fr_cb_gather_avx512(p, xs, j0 + q * FR_CB_PANEL, fr_cb_min(FR_CB_PANEL, nb - q * FR_CB_PANEL), st);
            fr_cb_interleave(st, p->k2, xp + q * pstride);
        }
        for (size_t co = 0; co < p->cout_g;) {
            int mr = (int)fr_cb_min(6, p->cout_g - co);
            fr_cb_tile_dispatch(mr, (int)panels, wg + co * ldw, ldw, xp, pstride, p->k2, bg ? bg + co : NULL, 0,
                                ys + co * p->ohw + j0, p->ohw, nb);
            co += (size_t)mr;
        }
    }
}

#endif

// The same sums in scalar code: per pair, the odd product then the even one
// (the order fr_gemm_bf16's portable path uses), each with one rounding.
static void fr_cb_forward_group_portable(const fr_cb_plan *p, const float *xs, const uint16_t *wg, const float *bg,
                                         float *ys, float *st) {
    for (size_t j0 = 0; j0 < p->ohw; j0 += FR_CB_PANEL) {
        const size_t lanes = fr_cb_min(FR_CB_PANEL, p->ohw - j0);
        fr_cb_gather_portable(p, xs, j0, lanes, st);
        for (size_t co = 0; co < p->cout_g; co++)
            for (size_t l = 0; l < lanes; l++) {
                float s = bg ? bg[co] : 0.0f;
                for (size_t kk = 0; kk < p->k2; kk++) {
                    const uint16_t *w = wg + co * 2 * p->k2 + 2 * kk;
                    float a0 = fr_bf16_to_float(fr_float_to_bf16(st[2 * kk * FR_CB_PANEL + l]));
                    float a1 = fr_bf16_to_float(fr_float_to_bf16(st[(2 * kk + 1) * FR_CB_PANEL + l]));
                    s = __builtin_fmaf(fr_bf16_to_float(w[1]), a1, s);
                    s = __builtin_fmaf(fr_bf16_to_float(w[0]), a0, s);
                }
                ys[co * p->ohw + j0 + l] = s;
            }
    }
}

void fr_conv2d_forward_bf16(const fr_conv2d_geometry *g, const float *x, const uint16_t *wp, const float *bias,
                            float *y, size_t n, void *scratch) {
    const fr_cb_plan p = fr_cb_plan_of(g);
    if (p.ohw == 0 || p.cout_g == 0) return;
    float *st = (float *)(((uintptr_t)scratch + 63) & ~(uintptr_t)63);
    uint16_t *xp = (uint16_t *)(st + 2 * p.k2 * FR_CB_PANEL);
#ifdef FR_CB_HAVE_KERNEL
    const int hardware = fr_bf16_supported();
#endif
    for (size_t s = 0; s < n; s++)
        for (size_t gi = 0; gi < g->groups; gi++) {
            const float *xs = x + (s * g->cin + gi * p.cin_g) * p.hw;
            float *ys = y + (s * g->cout + gi * p.cout_g) * p.ohw;
            const float *bg = bias ? bias + gi * p.cout_g : NULL;
            const uint16_t *wg = wp + gi * p.cout_g * 2 * p.k2;
            if (p.k == 0) {  // no input channels: the bias alone
                for (size_t co = 0; co < p.cout_g; co++)
                    for (size_t j = 0; j < p.ohw; j++) ys[co * p.ohw + j] = bg ? bg[co] : 0.0f;
                continue;
            }
#ifdef FR_CB_HAVE_KERNEL
            if (hardware) {
                fr_cb_forward_group(&p, xs, wg, bg, ys, st, xp);
                continue;
            }
#endif
            fr_cb_forward_group_portable(&p, xs, wg, bg, ys, st);
        }
    (void)xp;
}
