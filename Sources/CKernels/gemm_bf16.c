// Linear layers in bfloat16 with float32 accumulation; see include/ckernels.h.
//
// Weights are packed once into column panels of 16 outputs holding bf16
// pairs of consecutive k, the operand layout of vdpbf16ps:
//   wp[(p·k2 + kk)·32 + 2c + e] = bf16(W[16p + c, 2kk + e]),  k2 = ⌈in/2⌉,
// zero past `out` and past `in`. Rows of x are converted to bf16 (round to
// nearest even) a block of FR_BF16_ROWS rows at a time into the caller's
// scratch, row length 2·k2 (a zero appended to odd rows). A tile of MR rows
// × NP panels keeps MR·NP float32 accumulators in zmm registers; each pair
// step loads NP weight vectors and broadcasts one bf16 pair per row, and one
// vdpbf16ps adds two products into 16 outputs: twice the multiply-adds of an
// FMA per instruction.
//
// Every output is bias[j] (or 0) followed by one vdpbf16ps per pair in
// increasing k, whatever the tile: a row's outputs do not depend on m, on
// the rows around it, or on how a caller splits the batch.
//
// The AVX512_BF16 code is compiled with function-level target attributes,
// so the library builds for and runs on any x86-64; fr_bf16_supported()
// checks cpuid at run time, and callers take the float32 path when it is 0.
// The portable fr_gemm_bf16 below computes the same sums in scalar code
// (for a caller that ignores fr_bf16_supported, and for other CPUs).
#include "ckernels.h"

#include <stdint.h>
#include <string.h>

#if defined(__x86_64__) && defined(__clang__) && !defined(FLOWRT_NO_CLONES)
#define FR_HAVE_BF16_KERNEL 1
#include <cpuid.h>
#include <immintrin.h>
#define FR_BF16 __attribute__((target("avx512f,avx512bw,avx512bf16")))
#endif

#define FR_PANEL 16
/// Rows of x converted to bf16 per block (scratch: rows × 2·k2 uint16).
#define FR_BF16_ROWS 48

static inline size_t fr_pairs(size_t in) { return (in + 1) / 2; }

uint16_t fr_float_to_bf16(float f) {
    uint32_t bits;
    memcpy(&bits, &f, sizeof bits);
    if ((bits & 0x7f800000u) == 0x7f800000u && (bits & 0x007fffffu) != 0)
        return (uint16_t)((bits >> 16) | 0x0040u);  // NaN stays a (quiet) NaN
    if ((bits & 0x7f800000u) == 0) return (uint16_t)((bits >> 16) & 0x8000u);  // ±0, denormals → ±0
    uint32_t rounding = 0x7fffu + ((bits >> 16) & 1u);  // round to nearest, ties to even
    return (uint16_t)((bits + rounding) >> 16);
}

float fr_bf16_to_float(uint16_t h) {
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

size_t fr_bf16_packed_count(size_t out, size_t in) {
    return (out + FR_PANEL - 1) / FR_PANEL * FR_PANEL * 2 * fr_pairs(in);
}

void fr_pack_weights_bf16(const float *w, int in_out_layout, uint16_t *wp, size_t out, size_t in) {
    const size_t panels = (out + FR_PANEL - 1) / FR_PANEL, k2 = fr_pairs(in);
    for (size_t p = 0; p < panels; p++)
        for (size_t kk = 0; kk < k2; kk++) {
            uint16_t *dst = wp + (p * k2 + kk) * 2 * FR_PANEL;
            for (size_t c = 0; c < FR_PANEL; c++)
                for (size_t e = 0; e < 2; e++) {
                    size_t j = p * FR_PANEL + c, k = 2 * kk + e;
                    float v = j < out && k < in ? (in_out_layout ? w[k * out + j] : w[j * in + k]) : 0.0f;
                    dst[2 * c + e] = fr_float_to_bf16(v);
                }
        }
}

size_t fr_gemm_bf16_scratch_bytes(size_t in) { return FR_BF16_ROWS * 2 * fr_pairs(in) * sizeof(uint16_t) + 64; }

static int fr_bf16_disabled = 0;

int fr_bf16_force_unavailable(int force) {
    int previous = fr_bf16_disabled;
    fr_bf16_disabled = force != 0;
    return previous;
}

#ifdef FR_HAVE_BF16_KERNEL

// AVX-512F and BW with the OS saving zmm state (compiler-rt checks XGETBV),
// and AVX512_BF16: cpuid leaf 7, sub-leaf 1, EAX bit 5.
static int fr_cpu_has_bf16(void) {
    __builtin_cpu_init();
    if (!__builtin_cpu_supports("avx512f") || !__builtin_cpu_supports("avx512bw")) return 0;
    unsigned a, b, c, d;
    if (__get_cpuid_max(0, NULL) < 7) return 0;
    __cpuid_count(7, 1, a, b, c, d);
    (void)b; (void)c; (void)d;
    return (a >> 5) & 1u;
}

int fr_bf16_hardware(void) {
    static int cached = -1;
    if (cached < 0) cached = fr_cpu_has_bf16();
    return cached;
}

int fr_bf16_supported(void) { return !fr_bf16_disabled && fr_bf16_hardware(); }

// xb[r·ldx + k] = bf16(x[r·in + k]) for r < rows, k < 2·k2 (zero at k = in
// when in is odd), 32 values per vcvtne2ps2bf16.
static FR_BF16 void fr_convert_rows(const float *x, size_t rows, size_t in, uint16_t *xb, size_t ldx) {
    for (size_t r = 0; r < rows; r++) {
        const float *src = x + r * in;
        uint16_t *dst = xb + r * ldx;
        for (size_t k = 0; k < ldx; k += 32) {
            size_t left = in > k ? in - k : 0;
            __mmask16 lo = (__mmask16)(left >= 16 ? 0xffffu : (1u << left) - 1u);
            __mmask16 hi = (__mmask16)(left >= 32 ? 0xffffu : left > 16 ? (1u << (left - 16)) - 1u : 0u);
            __m512 a = _mm512_maskz_loadu_ps(lo, src + k), b = _mm512_maskz_loadu_ps(hi, src + k + 16);
            __m512i v = (__m512i)_mm512_cvtne2ps_pbh(b, a);
            size_t n = ldx - k < 32 ? ldx - k : 32;
            __mmask32 m = n >= 32 ? (__mmask32)0xffffffffu : (__mmask32)((1u << n) - 1u);
            _mm512_mask_storeu_epi16(dst + k, m, v);
        }
    }
}

// SiLU of 16 lanes for the bf16 path, on registers, without a division.
// e = 2^t = e^−|x| with t = −|x|·log2 e (|x| clamped at 200, where e is
// 0 in float32): n = round(t), 2^(t−n) by a degree-5 polynomial fitted to
// the relative error on [−½, ½] (1.6e-7 with float32 coefficients), 2^n by
// vscalefps (exact, underflows to 0). q = 1/(1 + e) by vrcp14ps and one
// Newton step (≈ 2^-27). Then x ≥ 0: x·q = x·σ(x); x < 0: x·q·e.
// Error: ≤ 2e-6 relative where |SiLU(x)| ≥ 1e-6 (the float32 path's:
// ~3e-7; the rounding of t, |t|·2^-24, is most of it); below that, for
// large negative x, it grows (~1e-5 relative, and for x < −87, where e is
// denormal, only ~1e-36 absolute is promised). The next bf16 layer rounds these
// values to 2^-9 anyway. About 0.6× the cost of the float32 path's exp and
// vdivps (bench: 0.24 against 0.40 ns per value), and no separate pass.
// +∞ gives +∞, NaN gives NaN, −∞ gives NaN (−∞·0, as in float32).
static inline __attribute__((always_inline)) FR_BF16 __m512 fr_silu_lanes(__m512 x) {
    const __m512 one = _mm512_set1_ps(1.0f);
    // vminps returns its second operand when either is NaN: a NaN x stays NaN.
    __m512 t = _mm512_mul_ps(_mm512_min_ps(_mm512_set1_ps(200.0f), _mm512_abs_ps(x)),
                             _mm512_set1_ps(-1.44269504088896341f));
    __m512 n = _mm512_roundscale_ps(t, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 f = _mm512_sub_ps(t, n);
    __m512 p = _mm512_set1_ps(1.3276465470e-3f);
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(9.6755412825e-3f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(5.5507132937e-2f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(2.4022119725e-1f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(6.9314696705e-1f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.0000000717e+00f));
    __m512 e = _mm512_scalef_ps(p, n);
    __m512 d = _mm512_add_ps(e, one);
    __m512 q = _mm512_rcp14_ps(d);
    q = _mm512_fmadd_ps(q, _mm512_fnmadd_ps(d, q, one), q);
    __m512 xq = _mm512_mul_ps(x, q);
    return _mm512_mask_mul_ps(xq, _mm512_cmp_ps_mask(x, _mm512_setzero_ps(), _CMP_LT_OQ), xq, e);
}

// One tile: MR rows of xb (row stride ldx) times NP panels of wp (panel
// stride pstride uint16) over k2 pairs into y (row stride ldy); `cols`
// (≤ NP·16) outputs valid; SiLU applied on the accumulators when `silu`.
// MR, NP and silu are constants at each call site.
static inline __attribute__((always_inline)) FR_BF16
void fr_tile_bf16(const uint16_t *restrict xb, size_t ldx, const uint16_t *restrict wp, size_t pstride,
                  const float *restrict bias, float *restrict y, size_t ldy, size_t k2, size_t cols, const int MR,
                  const int NP, const int silu) {
    __m512 c[24][4];
    __mmask16 mask[4];
    for (int p = 0; p < NP; p++) {
        size_t left = cols > (size_t)p * FR_PANEL ? cols - (size_t)p * FR_PANEL : 0;
        mask[p] = left >= FR_PANEL ? (__mmask16)0xffff : (__mmask16)((1u << left) - 1u);
        __m512 b = bias ? _mm512_maskz_loadu_ps(mask[p], bias + p * FR_PANEL) : _mm512_setzero_ps();
        for (int r = 0; r < MR; r++) c[r][p] = b;
    }
    for (size_t kk = 0; kk < k2; kk++) {
        __m512bh w[4];
        for (int p = 0; p < NP; p++) w[p] = (__m512bh)_mm512_loadu_si512(wp + p * pstride + kk * 2 * FR_PANEL);
        for (int r = 0; r < MR; r++) {
            int32_t pair;
            memcpy(&pair, xb + r * ldx + 2 * kk, sizeof pair);
            __m512bh a = (__m512bh)_mm512_set1_epi32(pair);
            for (int p = 0; p < NP; p++) c[r][p] = _mm512_dpbf16_ps(c[r][p], a, w[p]);
        }
    }
    for (int r = 0; r < MR; r++)
        for (int p = 0; p < NP; p++)
            _mm512_mask_storeu_ps(y + r * ldy + p * FR_PANEL, mask[p], silu ? fr_silu_lanes(c[r][p]) : c[r][p]);
}

#define FR_TILE_CASE(MR_, NP_) \
    case (MR_) * 16 + (NP_): \
        if (silu) fr_tile_bf16(xb, ldx, wp, pstride, bias, y, ldy, k2, cols, MR_, NP_, 1); \
        else fr_tile_bf16(xb, ldx, wp, pstride, bias, y, ldy, k2, cols, MR_, NP_, 0); \
        return;

// Runtime (MR, NP) → the unrolled instance. Full tiles hold 24 accumulators
// (6 × 4, 12 × 2, 24 × 1 panels: enough independent vdpbf16ps chains to
// cover its latency on both ports) plus NP weight vectors, within the 32
// zmm registers; the leftover rows of a block run in tiles of 16, 8, 4, 2, 1.
static FR_BF16 void fr_tile_bf16_dispatch(int mr, int np, const uint16_t *xb, size_t ldx, const uint16_t *wp,
                                          size_t pstride, const float *bias, float *y, size_t ldy, size_t k2,
                                          size_t cols, int silu) {
    switch (mr * 16 + np) {
    FR_TILE_CASE(6, 4) FR_TILE_CASE(4, 4) FR_TILE_CASE(2, 4) FR_TILE_CASE(1, 4)
    FR_TILE_CASE(12, 2) FR_TILE_CASE(8, 2) FR_TILE_CASE(4, 2) FR_TILE_CASE(2, 2) FR_TILE_CASE(1, 2)
    FR_TILE_CASE(24, 1) FR_TILE_CASE(16, 1) FR_TILE_CASE(8, 1) FR_TILE_CASE(4, 1) FR_TILE_CASE(2, 1)
    FR_TILE_CASE(1, 1)
    default: __builtin_unreachable();
    }
}

#undef FR_TILE_CASE

/// Rows of a full tile for a group of np panels (24 accumulators).
static inline int fr_bf16_rows_for(int np) { return np == 4 ? 6 : (np == 2 ? 12 : 24); }

/// The largest tile height ≤ left for np panels: the full height, else a power of two.
static inline int fr_bf16_tile_rows(int np, size_t left) {
    int full = fr_bf16_rows_for(np);
    if (left >= (size_t)full) return full;
    int mr = 16;
    while ((size_t)mr > left || mr >= full) mr /= 2;
    return mr;
}

static FR_BF16 void fr_gemm_bf16_avx512(const float *x, const uint16_t *wp, const float *bias, float *y, size_t m,
                                        size_t out, size_t in, void *scratch, int activation, float p1, float p2) {
    const size_t k2 = fr_pairs(in), ldx = 2 * k2, pstride = k2 * 2 * FR_PANEL;
    const size_t panels = (out + FR_PANEL - 1) / FR_PANEL;
    uint16_t *xb = (uint16_t *)(((uintptr_t)scratch + 63) & ~(uintptr_t)63);
    for (size_t r0 = 0; r0 < m; r0 += FR_BF16_ROWS) {
        const size_t rows = m - r0 < FR_BF16_ROWS ? m - r0 : FR_BF16_ROWS;
        fr_convert_rows(x + r0 * in, rows, in, xb, ldx);
        // Panel groups outermost: a group's weights stay in cache while the
        // converted rows pass over them.
        for (size_t p = 0; p < panels;) {
            int np = 4;
            while ((size_t)np > panels - p) np /= 2;
            const size_t j = p * FR_PANEL;
            const size_t cols = out - j < (size_t)np * FR_PANEL ? out - j : (size_t)np * FR_PANEL;
            for (size_t r = 0; r < rows;) {
                int mr = fr_bf16_tile_rows(np, rows - r);
                fr_tile_bf16_dispatch(mr, np, xb + r * ldx, ldx, wp + p * pstride, pstride, bias ? bias + j : NULL,
                                      y + (r0 + r) * out + j, out, k2, cols, activation == FR_SILU);
                r += (size_t)mr;
            }
            p += (size_t)np;
        }
        // The block's outputs are still in cache: apply f now, not in a
        // second pass over all m rows (the same elementwise function).
        // (SiLU, the common case, was applied on the accumulators.)
        if (activation != FR_IDENTITY && activation != FR_SILU)
            fr_unary_forward(activation, p1, p2, y + r0 * out, y + r0 * out, rows * out);
    }
}

static FR_BF16 void fr_silu_bf16_path_avx512(float *y, size_t n) {
    size_t i = 0;
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(y + i, fr_silu_lanes(_mm512_loadu_ps(y + i)));
    if (i < n) {
        __mmask16 m = (__mmask16)((1u << (n - i)) - 1u);
        _mm512_mask_storeu_ps(y + i, m, fr_silu_lanes(_mm512_maskz_loadu_ps(m, y + i)));
    }
}

#else

int fr_bf16_hardware(void) { return 0; }
int fr_bf16_supported(void) { return 0; }

#endif

void fr_silu_bf16_path(float *y, size_t n) {
#ifdef FR_HAVE_BF16_KERNEL
    if (fr_bf16_hardware() && !fr_bf16_disabled) {
        fr_silu_bf16_path_avx512(y, n);
        return;
    }
#endif
    fr_unary_forward(FR_SILU, 0, 0, y, y, n);
}

// The same sums in scalar code: per pair, the odd product then the even one
// (as vdpbf16ps orders them), each added with one rounding (products of two
// bf16 values are exact in float32).
static void fr_gemm_bf16_portable(const float *x, const uint16_t *wp, const float *bias, float *y, size_t m,
                                  size_t out, size_t in) {
    const size_t k2 = fr_pairs(in);
    for (size_t r = 0; r < m; r++)
        for (size_t j = 0; j < out; j++) {
            const uint16_t *w = wp + (j / FR_PANEL) * k2 * 2 * FR_PANEL + 2 * (j % FR_PANEL);
            float s = bias ? bias[j] : 0.0f;
            for (size_t kk = 0; kk < k2; kk++) {
                float a0 = fr_bf16_to_float(fr_float_to_bf16(x[r * in + 2 * kk]));
                float a1 = 2 * kk + 1 < in ? fr_bf16_to_float(fr_float_to_bf16(x[r * in + 2 * kk + 1])) : 0.0f;
                const uint16_t *wk = w + kk * 2 * FR_PANEL;
                s = __builtin_fmaf(a1, fr_bf16_to_float(wk[1]), s);
                s = __builtin_fmaf(a0, fr_bf16_to_float(wk[0]), s);
            }
            y[r * out + j] = s;
        }
}

void fr_gemm_bf16(const float *x, const uint16_t *wp, const float *bias, float *y, size_t m, size_t out, size_t in,
                  void *scratch, int activation, float p1, float p2) {
    if (m == 0 || out == 0) return;
#ifdef FR_HAVE_BF16_KERNEL
    if (fr_bf16_hardware() && !fr_bf16_disabled) {
        fr_gemm_bf16_avx512(x, wp, bias, y, m, out, in, scratch, activation, p1, p2);
        return;
    }
#endif
    (void)scratch;
    fr_gemm_bf16_portable(x, wp, bias, y, m, out, in);
    if (activation != FR_IDENTITY) fr_unary_forward(activation, p1, p2, y, y, m * out);
}
