// Private to CKernels: the AVX-512 exp of the softmax (normalize.c's row
// form and attention.c's key-major form, which must give the same bits) and
// of the tanh-GELU and SiLU (kernels.c), the order in which a softmax row's
// 16 lane sums are added, and the partial-vector loads and stores of the
// row loops around them. Not installed, not part of any API.
#ifndef FLOWRT_EXP_AVX512_H
#define FLOWRT_EXP_AVX512_H

#include "dense_engine.h"

#ifdef FR_DENSE_HAVE_AVX512
#include <immintrin.h>

// exp(x) for x in [-104, 88.72] or NaN. x = (k + j/16)·ln 2 + r with
// |r| ≤ ln2/32: one FMA with the shifter 1.5·2^19 rounds x·log2(e) to
// sixteenths and leaves j in the low four bits of its mantissa, which index
// a register table of 2^(j/16) in two parts (hi + lo, so the table adds no
// rounding of its own); r = x - n·ln 2 by Cody-Waite (the product with ln
// 2's 9-bit head is exact, its tail adds one rounding), e^r - 1 = r + r²/2
// + r³/6 (truncation ≤ 9e-9 relative), and 2^k is applied by scalef (which
// uses floor(k + j/16) = k). Seven multiplies and FMAs (the pipes that
// bound it) against the ten of a degree-7 polynomial: 1.15× faster alone,
// and 0.70 ulp at most against 1.01 (every float in [-87.3, 0] checked
// against double exp). Results between -103.9 and -87.3 are denormals; at
// the callers' upper clamp 88.7228 (k = 128) scalef overflows to +inf;
// NaN propagates.
static inline __attribute__((always_inline)) FR_DENSE_AVX512 __m512 fr_exp16_table(__m512 x) {
    const __m512 hi = _mm512_setr_ps(1.000000000e+00f, 1.044273734e+00f, 1.090507746e+00f, 1.138788581e+00f,
                                     1.189207077e+00f, 1.241857767e+00f, 1.296839595e+00f, 1.354255557e+00f,
                                     1.414213538e+00f, 1.476826191e+00f, 1.542210817e+00f, 1.610490322e+00f,
                                     1.681792855e+00f, 1.756252170e+00f, 1.834008098e+00f, 1.915206552e+00f);
    const __m512 lo = _mm512_setr_ps(0.000000000e+00f, 4.833470157e-08f, -1.307753994e-08f, 5.386222313e-08f,
                                     3.797635273e-08f, 4.496838102e-08f, -4.018999533e-08f, -1.012334927e-08f,
                                     2.420323497e-08f, -4.500898854e-08f, 8.070904833e-09f, 9.836217174e-09f,
                                     -2.475532668e-08f, -9.235770371e-09f, -1.123927795e-08f, 9.845328108e-09f);
    const __m512 sh = _mm512_set1_ps(786432.0f);
    const __m512 t = _mm512_fmadd_ps(x, _mm512_set1_ps(1.44269504088896341f), sh);
    const __m512 n = _mm512_sub_ps(t, sh);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
    const __m512i j = _mm512_castps_si512(t);
    const __m512 th = _mm512_permutexvar_ps(j, hi), tl = _mm512_permutexvar_ps(j, lo);
    __m512 a = _mm512_fmadd_ps(_mm512_set1_ps(1.0f / 6.0f), r, _mm512_set1_ps(0.5f));
    a = _mm512_fmadd_ps(a, r, _mm512_set1_ps(1.0f));
    const __m512 y = _mm512_add_ps(_mm512_fmadd_ps(th, _mm512_mul_ps(a, r), tl), th);
    return _mm512_scalef_ps(y, n);
}

// exp(x) for x ≤ 0 or NaN (softmax's x - max), fused into the softmax pass
// so that a row is read once for max and once for exp-and-sum. Below -103.9
// it is 0; max(-104, x) returns x when x is NaN, so NaN propagates.
static inline __attribute__((always_inline)) FR_DENSE_AVX512 __m512 fr_exp16_nonpositive(__m512 x) {
    return fr_exp16_table(_mm512_max_ps(_mm512_set1_ps(-104.0f), x));
}


// The lanes of a partial last vector of `left` < 16 floats (all 16 when
// left ≥ 16).
static inline __mmask16 fr_tail_mask(size_t left) {
    return (__mmask16)(left >= 16 ? 0xffffu : (1u << left) - 1u);
}

// Loads and stores of the 16 floats at p, or of the `left` < 16 that
// remain (the rest of the vector zero): masked only for a row's last partial
// vector, since masking every access made these passes ~10 % slower.
static inline __attribute__((always_inline)) FR_DENSE_AVX512 __m512 fr_load_part(const float *p, size_t left) {
    return left >= 16 ? _mm512_loadu_ps(p) : _mm512_maskz_loadu_ps(fr_tail_mask(left), p);
}

static inline __attribute__((always_inline)) FR_DENSE_AVX512 void fr_store_part(float *p, size_t left, __m512 v) {
    if (left >= 16) _mm512_storeu_ps(p, v);
    else _mm512_mask_storeu_ps(p, fr_tail_mask(left), v);
}

// The sum of the 16 lanes in a fixed tree: lane i + lane i + 8, then + 4,
// + 2, + 1. Written out rather than _mm512_reduce_add_ps, whose order is
// the compiler's: attention.c adds its 16 lane-sum vectors in this order.
static inline __attribute__((always_inline)) FR_DENSE_AVX512 float fr_sum16(__m512 v) {
    v = _mm512_add_ps(v, _mm512_shuffle_f32x4(v, v, _MM_SHUFFLE(1, 0, 3, 2)));
    v = _mm512_add_ps(v, _mm512_shuffle_f32x4(v, v, _MM_SHUFFLE(2, 3, 0, 1)));
    v = _mm512_add_ps(v, _mm512_permute_ps(v, _MM_SHUFFLE(1, 0, 3, 2)));
    v = _mm512_add_ps(v, _mm512_permute_ps(v, _MM_SHUFFLE(2, 3, 0, 1)));
    return _mm512_cvtss_f32(v);
}

#endif
#endif
