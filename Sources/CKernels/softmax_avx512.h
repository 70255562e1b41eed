// Private to CKernels: what normalize.c's row softmax and attention.c's
// key-major softmax share so that the two give the same bits: the exp and
// the order in which a row's 16 lane sums are added. Not installed, not
// part of any API.
#ifndef FLOWRT_SOFTMAX_AVX512_H
#define FLOWRT_SOFTMAX_AVX512_H

#include "dense_engine.h"

#ifdef FR_DENSE_HAVE_AVX512
#include <immintrin.h>

// exp(x) for x ≤ 0 or NaN (softmax's x - max), with the polynomial of
// kernels.c's fr_exp (Cephes expf: ≤ 1.01 ulp measured on [-87, 0]), fused
// into the softmax pass so that a row is read once for max and once for
// exp-and-sum. 2^n is applied by scalef, so results between -103.9 and
// -87.3 are denormals rather than 0, and below they are 0. max(-104, x)
// returns x when x is NaN, so NaN propagates; no upper clamp is needed.
static inline __attribute__((always_inline)) FR_DENSE_AVX512 __m512 fr_exp16_nonpositive(__m512 x) {
    const __m512 xc = _mm512_max_ps(_mm512_set1_ps(-104.0f), x);
    const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(xc, _mm512_set1_ps(1.44269504088896341f)),
                                          _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), xc);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
    __m512 p = _mm512_set1_ps(1.9875691500e-4f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
    p = _mm512_add_ps(_mm512_fmadd_ps(p, _mm512_mul_ps(r, r), r), _mm512_set1_ps(1.0f));
    return _mm512_scalef_ps(p, n);
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
