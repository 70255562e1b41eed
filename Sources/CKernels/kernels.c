// Vectorised elementwise kernels; see include/ckernels.h for the contract.
//
// The transcendental helpers are branch-free so that clang vectorises the
// loops that call them. Range reductions follow Cody & Waite; polynomial
// coefficients are minimax fits (exp: Cephes' expf, log: Cephes' logf;
// erf: Abramowitz & Stegun 7.1.26 refined with the exp kernel below).
#include "ckernels.h"
#include "dense_engine.h"
#include "exp_avx512.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

#if defined(__x86_64__) && defined(__clang__) && !defined(FLOWRT_NO_CLONES)
#define FR_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define FR_CLONES
#endif

static inline float fr_bits_to_float(int32_t b) { float f; memcpy(&f, &b, 4); return f; }
static inline int32_t fr_float_to_bits(float f) { int32_t b; memcpy(&b, &f, 4); return b; }

// exp's argument reduction and polynomial, shared by fr_exp and
// fr_gelu_tanh: for n = round(x / ln 2) (a float holding an integer),
// returns exp(x − n·ln 2) ∈ [0.7, 1.42] (ln 2 split in two for the reduction).
static inline float fr_exp_reduced(float x, float n) {
    float r = x - n * 0.693359375f;
    r = r - n * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    return p * r * r + r + 1.0f;
}

// exp(x), relative error < 2 ulp on [-87.3, 88.7]; +inf above, 0 below.
static inline float fr_exp(float x) {
    const float hi = 88.72283935546875f, lo = -87.33654022216797f;
    float xc = x > hi ? hi : x;
    xc = xc < lo ? lo : xc;
    // n = round(x / ln 2) by the 1.5 * 2^23 trick (exact for |n| < 2^22).
    const float shifter = 12582912.0f;
    float n = (xc * 1.44269504088896341f + shifter) - shifter;
    const float p = fr_exp_reduced(xc, n);
    // A NaN x gives a NaN n; converting it to int is undefined, so the
    // exponent takes 0 there (the result stays NaN through p).
    int32_t e = ((int32_t)(n == n ? n : 0.0f) + 127) << 23;
    float y = p * fr_bits_to_float(e);
    y = x > hi ? INFINITY : y;
    y = x < lo ? 0.0f : y;
    return y;  // NaN propagates through r and p.
}

// log(x) for x > 0 (normal numbers); log(0) = -inf, log(x<0) = NaN.
static inline float fr_log(float x) {
    int32_t bits = fr_float_to_bits(x);
    int32_t e = ((bits >> 23) & 0xff) - 127;
    float m = fr_bits_to_float((bits & 0x007fffff) | 0x3f800000);  // [1, 2)
    // Bring m into [sqrt(1/2), sqrt(2)).
    int big = m > 1.41421356f;
    m = big ? m * 0.5f : m;
    float fe = (float)(e + big);
    float f = m - 1.0f;
    float z = f * f;
    float p = 7.0376836292e-2f;
    p = p * f + -1.1514610310e-1f;
    p = p * f + 1.1676998740e-1f;
    p = p * f + -1.2420140846e-1f;
    p = p * f + 1.4249322787e-1f;
    p = p * f + -1.6668057665e-1f;
    p = p * f + 2.0000714765e-1f;
    p = p * f + -2.4999993993e-1f;
    p = p * f + 3.3333331174e-1f;
    float y = f * z * p;
    y += fe * -2.12194440e-4f;
    y += -0.5f * z;
    y = f + y;
    y += fe * 0.693359375f;
    y = x == 0.0f ? -INFINITY : y;
    y = x < 0.0f ? NAN : y;
    y = x == INFINITY ? INFINITY : y;
    y = x != x ? x : y;
    return y;
}

static inline float fr_sigmoid(float x) { return 1.0f / (1.0f + fr_exp(-x)); }

static inline float fr_tanh(float x) {
    // tanh(x) = sign(x) (1 - 2 / (exp(2|x|) + 1)); absolute error < 2e-7.
    float a = x < 0.0f ? -x : x;
    float t = 1.0f - 2.0f / (fr_exp(2.0f * a) + 1.0f);
    // Small |x|: odd Taylor series is more accurate than the cancellation.
    float z = x * x;
    float s = a * (1.0f + z * (-0.333333333f + z * (0.133333333f + z * (-0.0539682540f))));
    t = a < 0.0625f ? s : t;
    return x < 0.0f ? -t : (x != x ? x : t);
}

static inline float fr_erf(float x) {
    // Abramowitz & Stegun 7.1.26 (|error| < 1.5e-7), odd extension.
    float a = x < 0.0f ? -x : x;
    float t = 1.0f / (1.0f + 0.3275911f * a);
    float p = 1.061405429f;
    p = p * t + -1.453152027f;
    p = p * t + 1.421413741f;
    p = p * t + -0.284496736f;
    p = p * t + 0.254829592f;
    float y = 1.0f - p * t * fr_exp(-a * a);
    // Near 0 use the Taylor series (relative accuracy).
    float z = x * x;
    float s = a * 1.1283791671f * (1.0f + z * (-0.333333333f + z * (0.1f + z * (-0.0238095238f))));
    y = a < 0.05f ? s : y;
    return x < 0.0f ? -y : (x != x ? x : y);
}

#define FR_SELU_ALPHA 1.6732632423543772f
#define FR_SELU_SCALE 1.0507009873554805f
#define FR_INV_SQRT2 0.70710678118654752f
#define FR_INV_SQRT_2PI 0.39894228040143268f

static inline float fr_softplus(float x, float beta, float threshold) {
    float z = beta * x;
    float az = z < 0.0f ? -z : z;
    float y = (z > 0.0f ? z : 0.0f) + fr_log(1.0f + fr_exp(-az));
    y = y / beta;
    return z > threshold ? x : y;
}

// 0.5·x·(1 + tanh(u)), u = c·(x + 0.044715·x³), in the equal form
// x·σ(2u) = x / (1 + exp(-2u)): one exp and one division, 22 vector
// operations where the tanh form took 36 (it also computed a Taylor branch,
// a second division and selects), and more accurate where tanh(u) is near
// -1 (1 + tanh(u) cancels there; here exp(-2u) is large and the quotient
// keeps its relative accuracy). The exp is fr_exp's reduction and
// polynomial without its special cases: -2u is clamped to fr_exp's range
// (at the ends x / (1 + 3.4e38) ≈ -0 and x / (1 + 1.2e-38) = x, as the
// function), 2^n comes from the shifted sum's low bits, and a NaN x stays
// NaN through the numerator. Over every float32 x in [-12, 12] this form is
// within 1.23e-7·max(|x|, 1) of the double-precision function, the tanh
// form was within 1.18e-7, and the two differ by at most 2.1e-7·max(|x|, 1)
// (DiTKernelTests). NaN at x = -inf, like the tanh form. Where AVX-512F
// is active, fr_unary_forward and fr_unary_forward_derivative take
// fr_unary_avx512 below instead: the same form with the table exp of
// exp_avx512.h (0.70 ulp against this polynomial's 1.01), 15 % faster.
static inline float fr_gelu_tanh(float x) {
    const float k1 = -1.5957691216057308f;             // -2c
    const float k3 = -1.5957691216057308f * 0.044715f;  // -2c·0.044715
    float v = x * (k1 + k3 * (x * x));                  // -2u
    v = v > 88.72283935546875f ? 88.72283935546875f : v;
    v = v < -87.33654022216797f ? -87.33654022216797f : v;
    // t = 1.5·2^23 + 127 + n, n = round(v / ln 2) ∈ [-126, 128].
    const float shifter = 12583039.0f;
    const float t = v * 1.44269504088896341f + shifter;
    const float n = t - shifter;
    const float p = fr_exp_reduced(v, n);
    const float scale = fr_bits_to_float((int32_t)((uint32_t)fr_float_to_bits(t) << 23));  // 2^n
    return x / (1.0f + p * scale);
}

// v clamped to [0, 1]; a NaN v stays NaN (fmaxf/fminf would drop it).
static inline float fr_clamp01(float v) { return v < 0.0f ? 0.0f : (v > 1.0f ? 1.0f : v); }

static inline float fr_apply(int kind, float p1, float p2, float x) {
    switch (kind) {
    case FR_IDENTITY: return x;
    case FR_RELU: return x > 0.0f ? x : (x != x ? x : 0.0f);
    case FR_LEAKY_RELU: return x >= 0.0f ? x : p1 * x;
    case FR_ELU: return x > 0.0f ? x : p1 * (fr_exp(x) - 1.0f);
    case FR_SELU: return FR_SELU_SCALE * (x > 0.0f ? x : FR_SELU_ALPHA * (fr_exp(x) - 1.0f));
    case FR_SIGMOID: return fr_sigmoid(x);
    case FR_TANH: return fr_tanh(x);
    case FR_SILU: return x * fr_sigmoid(x);
    case FR_SOFTPLUS: return fr_softplus(x, p1, p2);
    case FR_GELU: return 0.5f * x * (1.0f + fr_erf(x * FR_INV_SQRT2));
    case FR_ERF: return fr_erf(x);
    case FR_EXP: return fr_exp(x);
    case FR_LOG: return fr_log(x);
    case FR_SQRT: return sqrtf(x);
    case FR_NEG: return -x;
    case FR_SIN: return sinf(x);
    case FR_COS: return cosf(x);
    case FR_SQUARE: return x * x;
    case FR_RECIPROCAL: return 1.0f / x;
    case FR_ABS: return fabsf(x);
    case FR_POW: return powf(x, p1);
    case FR_GELU_TANH: return fr_gelu_tanh(x);
    case FR_HARD_SIGMOID: return fr_clamp01(p1 * x + p2);
    case FR_HARD_SWISH: return x * fr_clamp01(x * (1.0f / 6.0f) + 0.5f);
    case FR_CLIP: return x < p1 ? p1 : (x > p2 ? p2 : x);
    case FR_MISH: return x * fr_tanh(fr_softplus(x, 1.0f, 20.0f));
    default: return NAN;
    }
}

static inline float fr_derive(int kind, float p1, float p2, float x) {
    switch (kind) {
    case FR_IDENTITY: return 1.0f;
    case FR_RELU: return x > 0.0f ? 1.0f : 0.0f;
    case FR_LEAKY_RELU: return x >= 0.0f ? 1.0f : p1;
    case FR_ELU: return x > 0.0f ? 1.0f : p1 * fr_exp(x);
    case FR_SELU: return FR_SELU_SCALE * (x > 0.0f ? 1.0f : FR_SELU_ALPHA * fr_exp(x));
    case FR_SIGMOID: { float s = fr_sigmoid(x); return s * (1.0f - s); }
    case FR_TANH: { float t = fr_tanh(x); return 1.0f - t * t; }
    case FR_SILU: { float s = fr_sigmoid(x); return s * (1.0f + x * (1.0f - s)); }
    case FR_SOFTPLUS: {
        float z = p1 * x;
        return z > p2 ? 1.0f : fr_sigmoid(z);
    }
    case FR_GELU:
        return 0.5f * (1.0f + fr_erf(x * FR_INV_SQRT2)) + x * FR_INV_SQRT_2PI * fr_exp(-0.5f * x * x);
    case FR_ERF: return 1.1283791671f * fr_exp(-x * x);
    case FR_EXP: return fr_exp(x);
    case FR_LOG: return 1.0f / x;
    case FR_SQRT: return 0.5f / sqrtf(x);
    case FR_NEG: return -1.0f;
    case FR_SIN: return cosf(x);
    case FR_COS: return -sinf(x);
    case FR_SQUARE: return 2.0f * x;
    case FR_RECIPROCAL: return -1.0f / (x * x);
    case FR_ABS: return x > 0.0f ? 1.0f : (x < 0.0f ? -1.0f : 0.0f);
    case FR_POW: return p1 == 0.0f ? 0.0f : p1 * powf(x, p1 - 1.0f);
    case FR_GELU_TANH: {
        const float c = 0.7978845608028654f;
        float u = c * (x + 0.044715f * x * x * x);
        float t = fr_tanh(u);
        float du = c * (1.0f + 3.0f * 0.044715f * x * x);
        return 0.5f * (1.0f + t) + 0.5f * x * (1.0f - t * t) * du;
    }
    case FR_HARD_SIGMOID: { float v = p1 * x + p2; return v > 0.0f && v < 1.0f ? p1 : 0.0f; }
    case FR_HARD_SWISH: {
        float v = x * (1.0f / 6.0f) + 0.5f;
        return v <= 0.0f ? 0.0f : (v >= 1.0f ? 1.0f : x * (1.0f / 3.0f) + 0.5f);
    }
    case FR_CLIP: return x >= p1 && x <= p2 ? 1.0f : 0.0f;
    case FR_MISH: {
        float t = fr_tanh(fr_softplus(x, 1.0f, 20.0f));
        return t + x * (1.0f - t * t) * fr_sigmoid(x);
    }
    default: return NAN;
    }
}

#ifdef FR_DENSE_HAVE_AVX512
// The two activations of image networks whose time is their exp, x / (1 +
// exp(v)) with exp_avx512.h's exp, 16 at a time (a partial last vector
// masked): the tanh-GELU (fr_gelu_tanh's form, v = -2u) and SiLU (v = -x;
// one division where the scalar form takes x·σ(x), a division and a
// multiply). v is clamped to [-87.34, 88.72]: at the top end exp overflows
// to +inf and x / inf = -0 (x → -∞); a NaN x stays NaN through the
// numerator. x and y may alias exactly. 15 % faster than the polynomial
// exp (GELU: 19.1 → 16.3 cycles per vector); same accuracy.
static int fr_unary_has_avx512(int kind) {
    return (kind == FR_GELU_TANH || kind == FR_SILU) && fr_dense_use_avx512();
}

static FR_DENSE_AVX512 void fr_unary_avx512(int kind, const float *x, float *y, size_t n) {
    const __m512 k1 = _mm512_set1_ps(-1.5957691216057308f);
    const __m512 k3 = _mm512_set1_ps(-1.5957691216057308f * 0.044715f);
    const __m512 lo = _mm512_set1_ps(-87.33654022216797f), hi = _mm512_set1_ps(88.72283935546875f);
    const __m512 one = _mm512_set1_ps(1.0f);
    const int gelu = kind == FR_GELU_TANH;
    for (size_t i = 0; i < n; i += 16) {
        const __m512 xv = fr_load_part(x + i, n - i);
        __m512 v = gelu ? _mm512_mul_ps(xv, _mm512_fmadd_ps(k3, _mm512_mul_ps(xv, xv), k1))
                        : _mm512_sub_ps(_mm512_setzero_ps(), xv);
        v = _mm512_min_ps(_mm512_max_ps(v, lo), hi);
        fr_store_part(y + i, n - i, _mm512_div_ps(xv, _mm512_add_ps(one, fr_exp16_table(v))));
    }
}
#endif

// The switch sits outside the loop so that each case vectorises on its own.
#define FR_DISPATCH(BODY_FN)                                                  \
    switch (kind) {                                                           \
    case FR_IDENTITY: BODY_FN(FR_IDENTITY); break;                            \
    case FR_RELU: BODY_FN(FR_RELU); break;                                    \
    case FR_LEAKY_RELU: BODY_FN(FR_LEAKY_RELU); break;                        \
    case FR_ELU: BODY_FN(FR_ELU); break;                                      \
    case FR_SELU: BODY_FN(FR_SELU); break;                                    \
    case FR_SIGMOID: BODY_FN(FR_SIGMOID); break;                              \
    case FR_TANH: BODY_FN(FR_TANH); break;                                    \
    case FR_SILU: BODY_FN(FR_SILU); break;                                    \
    case FR_SOFTPLUS: BODY_FN(FR_SOFTPLUS); break;                            \
    case FR_GELU: BODY_FN(FR_GELU); break;                                    \
    case FR_ERF: BODY_FN(FR_ERF); break;                                      \
    case FR_EXP: BODY_FN(FR_EXP); break;                                      \
    case FR_GELU_TANH: BODY_FN(FR_GELU_TANH); break;                          \
    default: BODY_FN(kind); break;                                            \
    }

// Each kernel has an in-place branch (x == y) and a restrict branch: with
// possibly overlapping pointers clang's runtime alias check sends exact
// aliasing to the scalar loop, 15x slower.
FR_CLONES
void fr_unary_forward(int kind, float p1, float p2, const float *x, float *y, size_t n) {
#ifdef FR_DENSE_HAVE_AVX512
    if (fr_unary_has_avx512(kind)) {
        fr_unary_avx512(kind, x, y, n);
        return;
    }
#endif
    if (x == y) {
#define FR_FWD_INPLACE(K) for (size_t i = 0; i < n; i++) y[i] = fr_apply(K, p1, p2, y[i])
        FR_DISPATCH(FR_FWD_INPLACE)
#undef FR_FWD_INPLACE
    } else {
        const float *restrict xr = x;
        float *restrict yr = y;
#define FR_FWD(K) for (size_t i = 0; i < n; i++) yr[i] = fr_apply(K, p1, p2, xr[i])
        FR_DISPATCH(FR_FWD)
#undef FR_FWD
    }
}

FR_CLONES
void fr_unary_derivative(int kind, float p1, float p2, const float *x, float *d, size_t n) {
    if (x == d) {
#define FR_DER_INPLACE(K) for (size_t i = 0; i < n; i++) d[i] = fr_derive(K, p1, p2, d[i])
        FR_DISPATCH(FR_DER_INPLACE)
#undef FR_DER_INPLACE
    } else {
        const float *restrict xr = x;
        float *restrict dr = d;
#define FR_DER(K) for (size_t i = 0; i < n; i++) dr[i] = fr_derive(K, p1, p2, xr[i])
        FR_DISPATCH(FR_DER)
#undef FR_DER
    }
}

FR_CLONES
void fr_unary_forward_derivative(int kind, float p1, float p2, const float *x,
                                 float *y, float *d, size_t n) {
    float *restrict dr = d;
#ifdef FR_DENSE_HAVE_AVX512
    if (fr_unary_has_avx512(kind)) {
        // d from x first (y may overwrite x), each kind's loop vectorised.
        if (kind == FR_GELU_TANH) {
            for (size_t i = 0; i < n; i++) dr[i] = fr_derive(FR_GELU_TANH, p1, p2, x[i]);
        } else {
            for (size_t i = 0; i < n; i++) dr[i] = fr_derive(FR_SILU, p1, p2, x[i]);
        }
        fr_unary_avx512(kind, x, y, n);
        return;
    }
#endif
    if (x == y) {
#define FR_BOTH_INPLACE(K) for (size_t i = 0; i < n; i++) { float v = y[i]; dr[i] = fr_derive(K, p1, p2, v); y[i] = fr_apply(K, p1, p2, v); }
        FR_DISPATCH(FR_BOTH_INPLACE)
#undef FR_BOTH_INPLACE
    } else {
        const float *restrict xr = x;
        float *restrict yr = y;
#define FR_BOTH(K) for (size_t i = 0; i < n; i++) { float v = xr[i]; dr[i] = fr_derive(K, p1, p2, v); yr[i] = fr_apply(K, p1, p2, v); }
        FR_DISPATCH(FR_BOTH)
#undef FR_BOTH
    }
}

// A float is inf or NaN exactly when its exponent bits are all ones, the
// largest value bits & 0x7f800000 can take: each block of 256 is checked by
// a maximum of those (vectorised; no early exit inside a block), and only a
// block that holds one is searched element by element for the index.
FR_CLONES
size_t fr_first_nonfinite(const float *x, size_t n) {
    size_t i = 0;
    for (; i + 256 <= n; i += 256) {
        uint32_t m = 0;
        for (size_t j = 0; j < 256; j++) {
            const uint32_t e = (uint32_t)fr_float_to_bits(x[i + j]) & 0x7f800000u;
            m = e > m ? e : m;
        }
        if (m == 0x7f800000u) break;
    }
    for (; i < n; i++)
        if (((uint32_t)fr_float_to_bits(x[i]) & 0x7f800000u) == 0x7f800000u) return i;
    return n;
}

FR_CLONES
void fr_mul_rows_k(const float *d, const float *in, float *out, size_t rows, size_t k, size_t m) {
    for (size_t r = 0; r < rows; r++) {
        const float *dr = d + r * m;
        for (size_t j = 0; j < k; j++) {
            float *orow = out + (r * k + j) * m;
            if (in == out) {
                for (size_t i = 0; i < m; i++) orow[i] = dr[i] * orow[i];
            } else {
                const float *restrict ir = in + (r * k + j) * m;
                float *restrict o = orow;
                for (size_t i = 0; i < m; i++) o[i] = dr[i] * ir[i];
            }
        }
    }
}

// Y[r, j] = Σ_k X[r, k] W[j, k] for a row-major W [out, in] and m small
// (batch ≤ 32): each block of four W rows (4·in floats) stays in L1 while
// every input row passes over it, so W is read from L2 once per call; 16
// partial sums per row vectorise, in a fixed order (deterministic). OpenBLAS
// packs W on every call at these sizes and was 3-6x slower here for m = 8..32.
FR_CLONES
void fr_gemm_small(const float *restrict x, const float *restrict w, const float *restrict bias,
                   float *restrict y, size_t m, size_t out, size_t in) {
    size_t j = 0;
    for (; j + 4 <= out; j += 4) {
        const float *r0 = w + j * in, *r1 = r0 + in, *r2 = r1 + in, *r3 = r2 + in;
        for (size_t r = 0; r < m; r++) {
            const float *xr = x + r * in;
            float a0[16] = {0}, a1[16] = {0}, a2[16] = {0}, a3[16] = {0};
            size_t k = 0;
            for (; k + 16 <= in; k += 16) {
                for (int l = 0; l < 16; l++) {
                    float xv = xr[k + l];
                    a0[l] += r0[k + l] * xv;
                    a1[l] += r1[k + l] * xv;
                    a2[l] += r2[k + l] * xv;
                    a3[l] += r3[k + l] * xv;
                }
            }
            float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
            for (int l = 0; l < 16; l++) { s0 += a0[l]; s1 += a1[l]; s2 += a2[l]; s3 += a3[l]; }
            for (; k < in; k++) {
                s0 += r0[k] * xr[k]; s1 += r1[k] * xr[k]; s2 += r2[k] * xr[k]; s3 += r3[k] * xr[k];
            }
            if (bias) { s0 += bias[j]; s1 += bias[j + 1]; s2 += bias[j + 2]; s3 += bias[j + 3]; }
            float *yr = y + r * out + j;
            yr[0] = s0; yr[1] = s1; yr[2] = s2; yr[3] = s3;
        }
    }
    for (; j < out; j++) {
        const float *wr = w + j * in;
        for (size_t r = 0; r < m; r++) {
            const float *xr = x + r * in;
            float a[16] = {0};
            size_t k = 0;
            for (; k + 16 <= in; k += 16)
                for (int l = 0; l < 16; l++) a[l] += wr[k + l] * xr[k + l];
            float sum = 0;
            for (int l = 0; l < 16; l++) sum += a[l];
            for (; k < in; k++) sum += wr[k] * xr[k];
            y[r * out + j] = bias ? sum + bias[j] : sum;
        }
    }
}

// ---------------------------------------------------------------------------
// Row-wise broadcasting binary ops. Exact aliasing of y with a or b is
// allowed, so the loops assert independence (`assume_safety`: element i is
// read before it is written, nothing crosses iterations) instead of letting
// clang's runtime overlap check send exact aliasing to a scalar loop. One
// vector per iteration (no interleaving): short rows, such as attention's
// 16-float heads scaled by a constant, then run as whole vectors instead of
// falling through to the remainder loops (22 µs instead of 28 for 256
// heads of 49 × 16; 64-float rows unchanged).

#define FR_BINARY_ROW(EXPR)                                                   \
    _Pragma("clang loop vectorize(assume_safety) interleave_count(1)")       \
    for (size_t i = 0; i < n; i++) yr[i] = (EXPR);

#define FR_BINARY_OPS(A, B)                                                  \
    switch (op) {                                                            \
    case 0: FR_BINARY_ROW((A) + (B)) break;                                  \
    case 1: FR_BINARY_ROW((A) - (B)) break;                                  \
    case 2: FR_BINARY_ROW((A) * (B)) break;                                  \
    default: FR_BINARY_ROW((A) / (B)) break;                                 \
    }

FR_CLONES
void fr_binary_rows(int op, const float *a, ptrdiff_t a_row, int a_unit, const float *b, ptrdiff_t b_row,
                    int b_unit, float *y, size_t rows, size_t n) {
    for (size_t r = 0; r < rows; r++) {
        const float *ar = a + (ptrdiff_t)r * a_row, *br = b + (ptrdiff_t)r * b_row;
        float *yr = y + r * n;
        if (a_unit && b_unit) {
            FR_BINARY_OPS(ar[i], br[i])
        } else if (a_unit) {
            const float bv = br[0];
            FR_BINARY_OPS(ar[i], bv)
        } else if (b_unit) {
            const float av = ar[0];
            FR_BINARY_OPS(av, br[i])
        } else {
            const float av = ar[0], bv = br[0];
            FR_BINARY_OPS(av, bv)
        }
    }
}

#undef FR_BINARY_OPS
#undef FR_BINARY_ROW
