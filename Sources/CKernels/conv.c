// 2-D convolution on the GEMM register-tile engine (dense_engine.h); see
// include/ckernels.h for the contract.
//
// Per sample and group, with K = (cin/groups)·kh·kw and k = (ci·kh + ky)·kw + kx:
//   forward          Y[co, pos] = bias[co] + Σ_k W[co, k] · X̂[k, pos]
//   backward input   GX = convᵀ(GY)
//   backward weight  GW[co, k] += Σ_pos GY[co, pos] · X̂[k, pos]
// where X̂ is the im2col of the sample: X̂[k, oy·ow + ox] = x[ci, oy·sh - pt +
// ky·dh, ox·sw - pl + kx·dw], zero outside the image. X̂ is never built
// whole.
//
// Forward: X̂ is gathered one block of 64 output positions (and at most
// ~512 rows of k, whole input channels) at a time, straight into the
// engine's k-major panels of 16 positions; the tile's rows are output
// channels (weights broadcast in place, row-major), so the output lands in
// NCHW directly. With horizontal stride 1 a panel row is one masked load
// per output row it touches; otherwise a masked gather. 1×1, stride-1,
// unpadded convolutions read x in place.
//
// Backward input: at stride 1 the input gradient is itself a stride-1
// convolution of GY by the flipped, transposed kernel and runs as the
// forward pass does (accumulating into gx). Other strides compute
// Ĝ = Wᵀ·GY one block of 64 positions at a time and scatter-add it (col2im).
//
// Backward weight: the tile's rows are k (X̂ gathered as above, read as A)
// and its panels output channels (GY's block transposed: cg × positions
// floats, far fewer than X̂'s), accumulating GWᵀ in scratch over the batch.
#include "ckernels.h"
#include "conv_gather.h"
#include "dense_engine.h"

#include <stdint.h>
#include <string.h>

#ifdef FR_DENSE_HAVE_AVX512
#include <immintrin.h>
#endif

// Block sizes (NB and KC may be overridden with -D for tuning; 32..256 and
// 256..512 measured within noise of each other on the U-Net shapes):
// output positions per forward / backward-input block,
#ifndef FR_CONV_NB
#define FR_CONV_NB 64
#endif
// rows of k per forward block (rounded to whole input channels),
#ifndef FR_CONV_KC
#define FR_CONV_KC 512
#endif
// floats of im2col per backward-weight block (K × positions), and at most
// this many positions per backward-weight block.
#define FR_CONV_COLS 65536
#define FR_CONV_PB 256

static inline size_t fr_min(size_t a, size_t b) { return a < b ? a : b; }
static inline size_t fr_max(size_t a, size_t b) { return a > b ? a : b; }
static inline size_t fr_round16(size_t x) { return (x + 15) / 16 * 16; }

fr_conv_plan fr_conv_plan_of(const fr_conv2d_geometry *g) {
    fr_conv_plan p;
    p.cin_g = g->cin / g->groups;
    p.cout_g = g->cout / g->groups;
    p.khkw = g->kh * g->kw;
    p.k = p.cin_g * p.khkw;
    p.hw = g->h * g->w;
    p.ohw = g->oh * g->ow;
    p.h = (ptrdiff_t)g->h; p.w = (ptrdiff_t)g->w; p.ow = (ptrdiff_t)g->ow;
    p.sh = (ptrdiff_t)g->stride_h; p.sw = (ptrdiff_t)g->stride_w;
    p.dh = (ptrdiff_t)g->dil_h; p.dw = (ptrdiff_t)g->dil_w;
    p.pt = (ptrdiff_t)g->pad_top; p.pl = (ptrdiff_t)g->pad_left;
    p.kw = (ptrdiff_t)g->kw;
    p.direct = g->kh == 1 && g->kw == 1 && g->stride_h == 1 && g->stride_w == 1 && g->pad_top == 0 &&
               g->pad_left == 0 && g->oh == g->h && g->ow == g->w;
    return p;
}

// Input channels per forward block: whole channels, about FR_CONV_KC rows.
static size_t fr_conv_channels_per_block(const fr_conv_plan *p) {
    return fr_min(p->cin_g, fr_max(1, FR_CONV_KC / fr_max(1, p->khkw)));
}

// Positions per backward-weight block: a multiple of 16 with K × positions
// ≤ FR_CONV_COLS (at least 16).
static size_t fr_conv_weight_positions(const fr_conv_plan *p) {
    size_t pb = FR_CONV_COLS / fr_max(1, p->k) / 16 * 16;
    return fr_min(FR_CONV_PB, fr_max(16, pb));
}

// One output row's run of positions inside a block: positions [l, l + len)
// of the block are (oy, ox .. ox + len).
typedef struct { size_t l, len; ptrdiff_t oy, ox; } fr_conv_run;

// Splits positions [p0, p0 + np) into runs along output rows; returns the count.
static size_t fr_conv_runs(const fr_conv_plan *p, size_t p0, size_t np, fr_conv_run *runs) {
    size_t count = 0, l = 0;
    ptrdiff_t oy = (ptrdiff_t)(p0 / (size_t)p->ow), ox = (ptrdiff_t)(p0 % (size_t)p->ow);
    while (l < np) {
        size_t len = fr_min((size_t)(p->ow - ox), np - l);
        runs[count++] = (fr_conv_run){l, len, oy, ox};
        l += len;
        ox = 0;
        oy++;
    }
    return count;
}

// The in-image part of a run for kernel offset (ky, kx): run positions
// [t0, t1) read input row iy at columns ix0 + t·sw. Returns 0 if none.
static inline int fr_conv_clip(const fr_conv_plan *p, const fr_conv_run *run, ptrdiff_t ky, ptrdiff_t kx,
                               ptrdiff_t *iy, ptrdiff_t *ix0, size_t *t0, size_t *t1) {
    *iy = run->oy * p->sh - p->pt + ky * p->dh;
    if (*iy < 0 || *iy >= p->h) return 0;
    *ix0 = run->ox * p->sw - p->pl + kx * p->dw;
    ptrdiff_t lo = *ix0 < 0 ? (-*ix0 + p->sw - 1) / p->sw : 0;
    ptrdiff_t hi = *ix0 >= p->w ? 0 : (p->w - 1 - *ix0) / p->sw + 1;
    if (hi > (ptrdiff_t)run->len) hi = (ptrdiff_t)run->len;
    if (hi <= lo) return 0;
    *t0 = (size_t)lo;
    *t1 = (size_t)hi;
    return 1;
}

// ---------------------------------------------------------------------------
// Gather: X̂ rows k for input channels [c0, c0 + cb) and positions
// [p0, p0 + np), panel by panel: panel q (positions p0 + 16q ...) row kk at
// dst + q·pstride + kk·kstride, 16 lanes, zero past np.

static void fr_gather_portable(const fr_conv_plan *p, const float *xs, size_t p0, size_t np, size_t c0,
                               size_t cb, float *dst, size_t kstride, size_t pstride) {
    fr_conv_run runs[FR_DENSE_PANEL];
    for (size_t q = 0; q * FR_DENSE_PANEL < np; q++) {
        size_t lanes = fr_min(FR_DENSE_PANEL, np - q * FR_DENSE_PANEL);
        size_t nr = fr_conv_runs(p, p0 + q * FR_DENSE_PANEL, lanes, runs);
        float *dq = dst + q * pstride;
        for (size_t ci = 0; ci < cb; ci++) {
            const float *xc = xs + (c0 + ci) * p->hw;
            for (ptrdiff_t ky = 0; ky < (ptrdiff_t)p->khkw / p->kw; ky++)
                for (ptrdiff_t kx = 0; kx < p->kw; kx++) {
                    float *row = dq + ((ci * p->khkw) + (size_t)(ky * p->kw + kx)) * kstride;
                    for (size_t l = 0; l < FR_DENSE_PANEL; l++) row[l] = 0.0f;
                    for (size_t r = 0; r < nr; r++) {
                        ptrdiff_t iy, ix0;
                        size_t t0, t1;
                        if (!fr_conv_clip(p, &runs[r], ky, kx, &iy, &ix0, &t0, &t1)) continue;
                        const float *xr = xc + iy * p->w + ix0;
                        for (size_t t = t0; t < t1; t++) row[runs[r].l + t] = xr[(ptrdiff_t)t * p->sw];
                    }
                }
        }
    }
}

#ifdef FR_DENSE_HAVE_AVX512

static inline __mmask16 fr_lanes(size_t lo, size_t hi) {
    return (__mmask16)(((1u << hi) - 1u) & ~((1u << lo) - 1u));
}

// The rows of cb channels for one panel, in chunks of FR_GATHER_CHUNK
// channels: for each chunk, each kernel offset kk, each channel ci of the
// chunk, lane l of run u reads base[kk·4 + u] + ci·hw4 + 4l under
// mk[kk·4 + u] (a zero mask reads nothing and gives 0). Channel chunks
// outermost: planes lie a multiple of 4 KiB apart at 32 × 32 and 16 × 16,
// so an offset-outer order over all channels evicted each channel's input
// rows from L1 (all in the same few sets) before the next offset read them
// again; a chunk's rows stay in L1 for all offsets. U (the most runs any
// offset uses) is a constant at each call, so the loads unroll.
#define FR_GATHER_CHUNK 4

static inline __attribute__((always_inline)) FR_DENSE_AVX512 void
fr_gather_runs(const int U, size_t cb, size_t khkw, const uintptr_t *base, const __mmask16 *mk, uintptr_t hw4,
               float *dq, size_t kstride) {
    for (size_t c0 = 0; c0 < cb; c0 += FR_GATHER_CHUNK) {
        const size_t cn = fr_min(FR_GATHER_CHUNK, cb - c0);
        for (size_t kk = 0; kk < khkw; kk++) {
            uintptr_t b[4];
            __mmask16 m[4];
            for (int u = 0; u < U; u++) b[u] = base[kk * 4 + u] + c0 * hw4, m[u] = mk[kk * 4 + u];
            float *row = dq + (c0 * khkw + kk) * kstride;
            for (size_t ci = 0; ci < cn; ci++) {
                __m512 v = U > 0 ? _mm512_maskz_loadu_ps(m[0], (const float *)(b[0] + ci * hw4)) : _mm512_setzero_ps();
                for (int u = 1; u < U; u++) v = _mm512_mask_loadu_ps(v, m[u], (const float *)(b[u] + ci * hw4));
                _mm512_storeu_ps(row + ci * khkw * kstride, v);
            }
        }
    }
}

// Kernel offsets per panel on the masked-load path (larger kernels take
// the gather-instruction path).
#define FR_GATHER_MAX_KK 49

static FR_DENSE_AVX512 void fr_gather_avx512(const fr_conv_plan *p, const float *xs, size_t p0, size_t np,
                                             size_t c0, size_t cb, float *dst, size_t kstride, size_t pstride) {
    fr_conv_run runs[FR_DENSE_PANEL];
    const ptrdiff_t kh = (ptrdiff_t)p->khkw / p->kw;
    for (size_t q = 0; q * FR_DENSE_PANEL < np; q++) {
        size_t lanes = fr_min(FR_DENSE_PANEL, np - q * FR_DENSE_PANEL);
        size_t nr = fr_conv_runs(p, p0 + q * FR_DENSE_PANEL, lanes, runs);
        float *dq = dst + q * pstride;
        const float *xc0 = xs + c0 * p->hw;
        if (p->sw == 1 && nr <= 4 && p->khkw <= FR_GATHER_MAX_KK) {
            // One masked load per run: lane l of run r reads base_r[l].
            // Masked-off lanes are not accessed (no fault), so a base may
            // point before the plane: addresses as integers.
            uintptr_t base[FR_GATHER_MAX_KK * 4];
            __mmask16 mk[FR_GATHER_MAX_KK * 4];
            size_t most = 0;
            for (ptrdiff_t ky = 0; ky < kh; ky++)
                for (ptrdiff_t kx = 0; kx < p->kw; kx++) {
                    const size_t kk = (size_t)(ky * p->kw + kx);
                    size_t used = 0;
                    for (size_t r = 0; r < nr; r++) {
                        ptrdiff_t iy, ix0;
                        size_t t0, t1;
                        if (!fr_conv_clip(p, &runs[r], ky, kx, &iy, &ix0, &t0, &t1)) continue;
                        mk[kk * 4 + used] = fr_lanes(runs[r].l + t0, runs[r].l + t1);
                        base[kk * 4 + used] =
                            (uintptr_t)xc0 + (uintptr_t)((iy * p->w + ix0 - (ptrdiff_t)runs[r].l) * 4);
                        used++;
                    }
                    for (size_t u = used; u < 4; u++) mk[kk * 4 + u] = 0, base[kk * 4 + u] = (uintptr_t)xc0;
                    most = fr_max(most, used);
                }
            const uintptr_t hw4 = (uintptr_t)(p->hw * 4);
            switch (most) {
            case 0: fr_gather_runs(0, cb, p->khkw, base, mk, hw4, dq, kstride); break;
            case 1: fr_gather_runs(1, cb, p->khkw, base, mk, hw4, dq, kstride); break;
            case 2: fr_gather_runs(2, cb, p->khkw, base, mk, hw4, dq, kstride); break;
            case 3: fr_gather_runs(3, cb, p->khkw, base, mk, hw4, dq, kstride); break;
            default: fr_gather_runs(4, cb, p->khkw, base, mk, hw4, dq, kstride); break;
            }
        } else {
            int32_t iyb[FR_DENSE_PANEL], ixb[FR_DENSE_PANEL];
            for (size_t r = 0; r < nr; r++)
                for (size_t t = 0; t < runs[r].len; t++) {
                    iyb[runs[r].l + t] = (int32_t)(runs[r].oy * p->sh - p->pt);
                    ixb[runs[r].l + t] = (int32_t)(((ptrdiff_t)t + runs[r].ox) * p->sw - p->pl);
                }
            for (size_t l = lanes; l < FR_DENSE_PANEL; l++) iyb[l] = ixb[l] = -1;
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
                    float *row = dq + (size_t)(ky * p->kw + kx) * kstride;
                    for (size_t ci = 0; ci < cb; ci++) {
                        __m512 v = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), mk, idx, xc0 + ci * p->hw, 4);
                        _mm512_storeu_ps(row + ci * p->khkw * kstride, v);
                    }
                }
            }
        }
    }
}

#endif

void fr_conv_gather(const fr_conv_plan *p, const float *xs, size_t p0, size_t np, size_t c0, size_t cb, float *dst,
                    size_t kstride, size_t pstride, int avx512) {
#ifdef FR_DENSE_HAVE_AVX512
    if (avx512) {
        fr_gather_avx512(p, xs, p0, np, c0, cb, dst, kstride, pstride);
        return;
    }
#else
    (void)avx512;
#endif
    fr_gather_portable(p, xs, p0, np, c0, cb, dst, kstride, pstride);
}

// ---------------------------------------------------------------------------
// Scatter-add (col2im): gxs[ci, iy, ix] += Ĝ[k, pos] for the block's
// positions [p0, p0 + np), Ĝ row k at dcol + k·ldd. The same C body is
// compiled for AVX-512F (auto-vectorised) and for the baseline.

static inline __attribute__((always_inline)) void fr_col2im_body(const fr_conv_plan *p, const float *dcol,
                                                                 size_t ldd, size_t p0, size_t np, float *gxs) {
    fr_conv_run runs[FR_CONV_NB];
    size_t nr = fr_conv_runs(p, p0, np, runs);
    const ptrdiff_t kh = (ptrdiff_t)p->khkw / p->kw;
    for (size_t ci = 0; ci < p->cin_g; ci++) {
        float *gc = gxs + ci * p->hw;
        for (ptrdiff_t ky = 0; ky < kh; ky++)
            for (ptrdiff_t kx = 0; kx < p->kw; kx++) {
                const float *d = dcol + (ci * p->khkw + (size_t)(ky * p->kw + kx)) * ldd;
                for (size_t r = 0; r < nr; r++) {
                    ptrdiff_t iy, ix0;
                    size_t t0, t1;
                    if (!fr_conv_clip(p, &runs[r], ky, kx, &iy, &ix0, &t0, &t1)) continue;
                    float *restrict gr = gc + iy * p->w + ix0;
                    const float *restrict dr = d + runs[r].l;
                    if (p->sw == 1)
                        for (size_t t = t0; t < t1; t++) gr[t] += dr[t];
                    else
                        for (size_t t = t0; t < t1; t++) gr[(ptrdiff_t)t * p->sw] += dr[t];
                }
            }
    }
}

#ifdef FR_DENSE_HAVE_AVX512
static FR_DENSE_AVX512 void fr_col2im_avx512(const fr_conv_plan *p, const float *dcol, size_t ldd, size_t p0,
                                             size_t np, float *gxs) {
    fr_col2im_body(p, dcol, ldd, p0, np, gxs);
}
#endif

static void fr_col2im_portable(const fr_conv_plan *p, const float *dcol, size_t ldd, size_t p0, size_t np,
                               float *gxs) {
    fr_col2im_body(p, dcol, ldd, p0, np, gxs);
}

// ---------------------------------------------------------------------------

// One sample-group of the forward pass under plan p, output positions
// [p0, p1): Y [cout_g, ohw] = init + W·X̂, W [cout_g, K] row-major, init =
// bias (bg, or 0) or, when `accumulate`, Y's current value. A position's
// sum does not depend on the block it falls in, so any [p0, p1) gives the
// whole pass's values there.
static void fr_conv_forward_group(const fr_conv_plan *p, const float *xs, const float *wg, const float *bg,
                                  float *ys, int accumulate, float *scratch, int avx512, size_t p0, size_t p1) {
    const size_t cb = fr_conv_channels_per_block(p);
    for (size_t j0 = p0; j0 < p1; j0 += FR_CONV_NB) {
        size_t nb = fr_min(FR_CONV_NB, p1 - j0);
        for (size_t c0 = 0; c0 < p->cin_g; c0 += cb) {
            size_t cn = fr_min(cb, p->cin_g - c0), kc = cn * p->khkw;
            int init = c0 > 0 || accumulate ? FR_INIT_LOAD : (bg ? FR_INIT_ROW_BIAS : FR_INIT_ZERO);
            const float *wb = wg + c0 * p->khkw;
            if (p->direct) {
                fr_dense_block(p->cout_g, nb, kc, wb, p->k, 0, xs + c0 * p->hw + j0, p->hw, FR_DENSE_PANEL, ys + j0,
                               p->ohw, init, bg);
            } else {
                fr_conv_gather(p, xs, j0, nb, c0, cn, scratch, FR_DENSE_PANEL, kc * FR_DENSE_PANEL, avx512);
                fr_dense_block(p->cout_g, nb, kc, wb, p->k, 0, scratch, FR_DENSE_PANEL, kc * FR_DENSE_PANEL, ys + j0,
                               p->ohw, init, bg);
            }
        }
    }
}

void fr_conv2d_forward(const fr_conv2d_geometry *g, const float *x, const float *w, const float *bias, float *y,
                       size_t n, float *scratch) {
    fr_conv2d_forward_positions(g, x, w, bias, y, n, scratch, 0, g->oh * g->ow);
}

void fr_conv2d_forward_positions(const fr_conv2d_geometry *g, const float *x, const float *w, const float *bias,
                                 float *y, size_t n, float *scratch, size_t p0, size_t p1) {
    const fr_conv_plan p = fr_conv_plan_of(g);
    if (p1 > p.ohw) p1 = p.ohw;
    if (p.ohw == 0 || p.cout_g == 0 || p0 >= p1) return;
    const int avx512 = fr_dense_use_avx512();
    for (size_t s = 0; s < n; s++)
        for (size_t gi = 0; gi < g->groups; gi++) {
            const float *xs = x + (s * g->cin + gi * p.cin_g) * p.hw;
            float *ys = y + (s * g->cout + gi * p.cout_g) * p.ohw;
            const float *bg = bias ? bias + gi * p.cout_g : NULL;
            if (p.k == 0) {  // no input channels: the bias alone
                for (size_t co = 0; co < p.cout_g; co++)
                    for (size_t j = p0; j < p1; j++) ys[co * p.ohw + j] = bg ? bg[co] : 0.0f;
                continue;
            }
            fr_conv_forward_group(&p, xs, w + gi * p.cout_g * p.k, bg, ys, 0, scratch, avx512, p0, p1);
        }
}

// wt[ci, co, j] = wg[co, ci, kk-1-j] for the cin_g × cout_g kernels of a
// group (kk = kh·kw): flipping ky and kx reverses ky·kw + kx. wt is written
// in order; the reads are scattered. (A vectorised reversal measured no
// faster: the copy is bound by the scattered reads.)
static void fr_flip_kernels(const fr_conv_plan *p, const float *wg, float *wt) {
    const size_t kk = p->khkw;
    for (size_t ci = 0; ci < p->cin_g; ci++)
        for (size_t co = 0; co < p->cout_g; co++) {
            const float *src = wg + (co * p->cin_g + ci) * kk;
            float *dst = wt + (ci * p->cout_g + co) * kk;
            for (size_t j = 0; j < kk; j++) dst[j] = src[kk - 1 - j];
        }
}

// With stride 1 the input gradient is itself a stride-1 convolution: of gy
// (cout_g channels, oh × ow) by the flipped, transposed kernel
// W'[ci, co, ky, kx] = w[co, ci, kh-1-ky, kw-1-kx], padded by
// dil·(k - 1) - pad (negative pads crop), giving h × w.
static fr_conv_plan fr_conv_plan_transposed(const fr_conv2d_geometry *g) {
    fr_conv_plan p = fr_conv_plan_of(g), t = p;
    t.cin_g = p.cout_g;
    t.cout_g = p.cin_g;
    t.k = p.cout_g * p.khkw;
    t.hw = p.ohw;
    t.ohw = p.hw;
    t.h = (ptrdiff_t)g->oh; t.w = (ptrdiff_t)g->ow; t.ow = p.w;
    t.sh = t.sw = 1;
    t.pt = p.dh * (ptrdiff_t)(g->kh - 1) - p.pt;
    t.pl = p.dw * (ptrdiff_t)(g->kw - 1) - p.pl;
    t.direct = 0;
    return t;
}

static int fr_conv_input_grad_as_conv(const fr_conv2d_geometry *g, const fr_conv_plan *p) {
    return g->stride_h == 1 && g->stride_w == 1 && !p->direct;
}

void fr_conv2d_backward_input(const fr_conv2d_geometry *g, const float *gy, const float *w, float *gx, size_t n,
                              float *scratch) {
    const fr_conv_plan p = fr_conv_plan_of(g);
    if (p.ohw == 0 || p.cout_g == 0 || p.k == 0) return;
    const int avx512 = fr_dense_use_avx512();
    if (fr_conv_input_grad_as_conv(g, &p)) {
        const fr_conv_plan t = fr_conv_plan_transposed(g);
        float *wt = scratch, *rest = scratch + fr_round16(p.cin_g * t.k);
        for (size_t gi = 0; gi < g->groups; gi++) {
            fr_flip_kernels(&p, w + gi * p.cout_g * p.k, wt);
            for (size_t s = 0; s < n; s++)
                fr_conv_forward_group(&t, gy + (s * g->cout + gi * p.cout_g) * p.ohw, wt, NULL,
                                      gx + (s * g->cin + gi * p.cin_g) * p.hw, 1, rest, avx512, 0, t.ohw);
        }
        return;
    }
    const size_t ldd = FR_CONV_NB;
    for (size_t s = 0; s < n; s++)
        for (size_t gi = 0; gi < g->groups; gi++) {
            const float *gys = gy + (s * g->cout + gi * p.cout_g) * p.ohw;
            float *gxs = gx + (s * g->cin + gi * p.cin_g) * p.hw;
            const float *wg = w + gi * p.cout_g * p.k;
            for (size_t j0 = 0; j0 < p.ohw; j0 += FR_CONV_NB) {
                size_t nb = fr_min(FR_CONV_NB, p.ohw - j0);
                // Rows k of Wᵀ: A[k, co] = w[co·K + k], read in place (transposed).
                if (p.direct) {
                    fr_dense_block(p.k, nb, p.cout_g, wg, p.k, 1, gys + j0, p.ohw, FR_DENSE_PANEL, gxs + j0, p.hw,
                                   FR_INIT_LOAD, NULL);
                    continue;
                }
                fr_dense_block(p.k, nb, p.cout_g, wg, p.k, 1, gys + j0, p.ohw, FR_DENSE_PANEL, scratch, ldd,
                               FR_INIT_ZERO, NULL);
#ifdef FR_DENSE_HAVE_AVX512
                if (avx512) {
                    fr_col2im_avx512(&p, scratch, ldd, j0, nb, gxs);
                    continue;
                }
#else
                (void)avx512;
#endif
                fr_col2im_portable(&p, scratch, ldd, j0, nb, gxs);
            }
        }
}

// GWᵀ [K, cout_g] = Σ X̂ · GYᵀ: rows of the tile are k (X̂ gathered as
// for the forward pass, read in place as A), panels are output channels (a
// block of GY transposed into panels: cout_g × positions floats, far fewer
// than X̂'s). GWᵀ accumulates in scratch over the batch and is added to gw
// once per group.
void fr_conv2d_backward_weight(const fr_conv2d_geometry *g, const float *x, const float *gy, float *gw, size_t n,
                               float *scratch) {
    const fr_conv_plan p = fr_conv_plan_of(g);
    if (p.ohw == 0 || p.cout_g == 0 || p.k == 0) return;
    const int avx512 = fr_dense_use_avx512();
    const size_t pb = fr_conv_weight_positions(&p);
    if (p.direct && p.cin_g < p.cout_g) {
        // 1×1 with fewer inputs than outputs: transposing x costs less than
        // transposing gy, so GW = GY · Xᵀ directly (fr_gemm packs Xᵀ).
        for (size_t s = 0; s < n; s++)
            for (size_t gi = 0; gi < g->groups; gi++)
                for (size_t j0 = 0; j0 < p.ohw; j0 += pb)
                    fr_gemm(0, 1, p.cout_g, p.k, fr_min(pb, p.ohw - j0),
                            gy + (s * g->cout + gi * p.cout_g) * p.ohw + j0, p.ohw,
                            x + (s * g->cin + gi * p.cin_g) * p.hw + j0, p.hw, 1.0f, gw + gi * p.cout_g * p.k, p.k,
                            scratch);
        return;
    }
    float *gwt = scratch, *col = gwt + fr_round16(p.k * p.cout_g), *gyp = col + p.k * pb;
    if (n == 0) return;
    for (size_t gi = 0; gi < g->groups; gi++) {
        for (size_t s = 0; s < n; s++) {
            const float *xs = x + (s * g->cin + gi * p.cin_g) * p.hw;
            const float *gys = gy + (s * g->cout + gi * p.cout_g) * p.ohw;
            for (size_t j0 = 0; j0 < p.ohw; j0 += pb) {
                size_t nb = fr_min(pb, p.ohw - j0);
                const float *a = xs + j0;
                size_t lda = p.hw;
                if (!p.direct) {
                    fr_conv_gather(&p, xs, j0, nb, 0, p.cin_g, col, pb, FR_DENSE_PANEL, avx512);
                    a = col;
                    lda = pb;
                }
                fr_dense_pack_b(1, gys + j0, p.ohw, nb, p.cout_g, gyp);
                fr_dense_block(p.k, p.cout_g, nb, a, lda, 0, gyp, FR_DENSE_PANEL, nb * FR_DENSE_PANEL, gwt, p.cout_g,
                               s == 0 && j0 == 0 ? FR_INIT_ZERO : FR_INIT_LOAD, NULL);
            }
        }
        fr_dense_add_transposed(p.k, p.cout_g, gwt, p.cout_g, gw + gi * p.cout_g * p.k, p.k);
    }
}

size_t fr_conv2d_scratch_floats(const fr_conv2d_geometry *g) {
    fr_conv_plan p = fr_conv_plan_of(g);
    size_t forward = fr_conv_channels_per_block(&p) * p.khkw * FR_CONV_NB;
    size_t backward_input = p.k * FR_CONV_NB;
    if (fr_conv_input_grad_as_conv(g, &p)) {
        fr_conv_plan t = fr_conv_plan_transposed(g);
        backward_input = fr_round16(p.cin_g * t.k) + fr_conv_channels_per_block(&t) * t.khkw * FR_CONV_NB;
    }
    size_t pb = fr_conv_weight_positions(&p);
    size_t backward_weight = fr_round16(p.k * p.cout_g) + p.k * pb + fr_round16(p.cout_g) * pb;
    if (p.direct && p.cin_g < p.cout_g) backward_weight = fr_gemm_scratch_floats(p.cout_g, p.k, pb);
    return fr_max(16, fr_max(forward, fr_max(backward_input, backward_weight)));
}
