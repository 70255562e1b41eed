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
// positions is gathered in float32 by conv.c's gather (K rows × 16 lanes)
// and then converted to the vdpbf16ps operand layout, 32 bf16 per pair of rows
// (lane l holds rows 2kk and 2kk+1 of position l). The register tile's
// rows are output channels (one broadcast weight pair each) and its columns
// panels, so the result lands in NCHW. Every output is bias (or 0) and then
// one vdpbf16ps per pair in increasing kk, whatever the tile or batch: a
// sample's output is bitwise the same alone or in any batch.
#include "ckernels.h"
#include "conv_gather.h"
#include "dense_engine.h"

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

static inline size_t fr_cb_pairs(const fr_conv_plan *p) { return (p->k + 1) / 2; }

size_t fr_conv2d_bf16_packed_count(const fr_conv2d_geometry *g) {
    fr_conv_plan p = fr_conv_plan_of(g);
    return g->groups * p.cout_g * 2 * fr_cb_pairs(&p);
}

void fr_conv2d_pack_bf16(const fr_conv2d_geometry *g, const float *w, uint16_t *wp) {
    fr_conv_plan p = fr_conv_plan_of(g);
    const size_t k2 = fr_cb_pairs(&p);
    for (size_t co = 0; co < g->cout; co++)  // groups are consecutive output channels
        for (size_t k = 0; k < 2 * k2; k++)
            wp[co * 2 * k2 + k] = k < p.k ? fr_float_to_bf16(w[co * p.k + k]) : 0;
}

size_t fr_conv2d_bf16_scratch_bytes(const fr_conv2d_geometry *g) {
    fr_conv_plan p = fr_conv_plan_of(g);
    const size_t k2 = fr_cb_pairs(&p);
    // float32 staging of one panel (2·k2 rows × 16) + the block's bf16 panels + alignment.
    return 2 * k2 * FR_CB_PANEL * sizeof(float) + (FR_CB_NB / FR_CB_PANEL) * k2 * 2 * FR_CB_PANEL * 2 + 128;
}

// st[k·16 + l] = X̂[k, p0 + l] for k < K, l < lanes; 0 elsewhere, including
// the pad row k = K when K is odd.
static void fr_cb_stage(const fr_conv_plan *p, const float *xs, size_t p0, size_t lanes, float *st, int avx512) {
    fr_conv_gather(p, xs, p0, lanes, 0, p->cin_g, st, FR_CB_PANEL, p->k * FR_CB_PANEL, avx512);
    if (p->k % 2) memset(st + p->k * FR_CB_PANEL, 0, FR_CB_PANEL * sizeof(float));
}

#ifdef FR_CB_HAVE_KERNEL

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

static FR_CB void fr_cb_forward_group(const fr_conv_plan *p, const float *xs, const uint16_t *wg, const float *bg,
                                      float *ys, float *st, uint16_t *xp, int avx512) {
    const size_t k2 = fr_cb_pairs(p), pstride = k2 * 2 * FR_CB_PANEL, ldw = 2 * k2;
    for (size_t j0 = 0; j0 < p->ohw; j0 += FR_CB_NB) {
        const size_t nb = fr_cb_min(FR_CB_NB, p->ohw - j0), panels = (nb + FR_CB_PANEL - 1) / FR_CB_PANEL;
        for (size_t q = 0; q < panels; q++) {
            fr_cb_stage(p, xs, j0 + q * FR_CB_PANEL, fr_cb_min(FR_CB_PANEL, nb - q * FR_CB_PANEL), st, avx512);
            fr_cb_interleave(st, k2, xp + q * pstride);
        }
        for (size_t co = 0; co < p->cout_g;) {
            int mr = (int)fr_cb_min(6, p->cout_g - co);
            fr_cb_tile_dispatch(mr, (int)panels, wg + co * ldw, ldw, xp, pstride, k2, bg ? bg + co : NULL, 0,
                                ys + co * p->ohw + j0, p->ohw, nb);
            co += (size_t)mr;
        }
    }
}

#endif

// The same sums in scalar code: per pair, the odd product then the even one
// (the order fr_gemm_bf16's portable path uses), each with one rounding.
static void fr_cb_forward_group_portable(const fr_conv_plan *p, const float *xs, const uint16_t *wg, const float *bg,
                                         float *ys, float *st) {
    const size_t k2 = fr_cb_pairs(p);
    for (size_t j0 = 0; j0 < p->ohw; j0 += FR_CB_PANEL) {
        const size_t lanes = fr_cb_min(FR_CB_PANEL, p->ohw - j0);
        fr_cb_stage(p, xs, j0, lanes, st, 0);
        for (size_t co = 0; co < p->cout_g; co++)
            for (size_t l = 0; l < lanes; l++) {
                float s = bg ? bg[co] : 0.0f;
                for (size_t kk = 0; kk < k2; kk++) {
                    const uint16_t *w = wg + co * 2 * k2 + 2 * kk;
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
    const fr_conv_plan p = fr_conv_plan_of(g);
    if (p.ohw == 0 || p.cout_g == 0) return;
    const size_t k2 = fr_cb_pairs(&p);
    float *st = (float *)(((uintptr_t)scratch + 63) & ~(uintptr_t)63);
    uint16_t *xp = (uint16_t *)(st + 2 * k2 * FR_CB_PANEL);
#ifdef FR_CB_HAVE_KERNEL
    const int hardware = fr_bf16_supported(), avx512 = fr_dense_use_avx512();
#endif
    for (size_t s = 0; s < n; s++)
        for (size_t gi = 0; gi < g->groups; gi++) {
            const float *xs = x + (s * g->cin + gi * p.cin_g) * p.hw;
            float *ys = y + (s * g->cout + gi * p.cout_g) * p.ohw;
            const float *bg = bias ? bias + gi * p.cout_g : NULL;
            const uint16_t *wg = wp + gi * p.cout_g * 2 * k2;
            if (p.k == 0) {  // no input channels: the bias alone
                for (size_t co = 0; co < p.cout_g; co++)
                    for (size_t j = 0; j < p.ohw; j++) ys[co * p.ohw + j] = bg ? bg[co] : 0.0f;
                continue;
            }
#ifdef FR_CB_HAVE_KERNEL
            if (hardware) {
                fr_cb_forward_group(&p, xs, wg, bg, ys, st, xp, avx512);
                continue;
            }
#endif
            fr_cb_forward_group_portable(&p, xs, wg, bg, ys, st);
        }
    (void)xp;
}
