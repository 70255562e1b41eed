// Row softmax, LayerNorm rows and GroupNorm (+ SiLU); see include/ckernels.h for the contract.
//
// SiLU comes from fr_unary_forward (kernels.c), so GroupNorm agrees with
// the runtime's elementwise SiLU node. Softmax's portable path takes exp
// from there too; its AVX-512F path fuses a table-driven exp
// (exp_avx512.h) into the exp-and-sum pass (3 passes over a row instead
// of 5: 2x faster on the 784 × 784 attention matrix), so the two paths
// agree to about an ulp, not bit for bit. The AVX-512F paths vectorise the
// reductions (max, sum; GroupNorm's two-pass statistics in double) and the
// affine apply.
#include "ckernels.h"
#include "dense_engine.h"
#include "exp_avx512.h"

#include <math.h>
#include <stdint.h>

#ifdef FR_DENSE_HAVE_AVX512
#include <immintrin.h>
#endif

// ---------------------------------------------------------------------------
// Softmax

static void fr_softmax_row_portable(const float *x, float *y, size_t cols) {
    float mx = -INFINITY;
    for (size_t i = 0; i < cols; i++) mx = x[i] > mx ? x[i] : mx;
    for (size_t i = 0; i < cols; i++) y[i] = x[i] - mx;
    fr_unary_forward(FR_EXP, 0.0f, 0.0f, y, y, cols);
    float sum = 0.0f;
    for (size_t i = 0; i < cols; i++) sum += y[i];
    const float inv = 1.0f / sum;
    for (size_t i = 0; i < cols; i++) y[i] = y[i] * inv;
}

#ifdef FR_DENSE_HAVE_AVX512
// R rows of `cols` at once (R a constant at each call site: the r loops
// unroll). Each row takes exactly the operations of a row alone, in the
// same order, so results do not depend on R; interleaving the rows lets
// the out-of-order core overlap their dependency chains. A short row is
// latency-bound on its own: at 49 columns (the DiT's attention) the max
// and sum reductions, the scalar 1/sum and the exp polynomial form one
// chain of ~150 cycles per 4 vectors of work, and 4 rows side by side run
// ~2x faster. Whole vectors go unmasked and only a row's last partial
// vector masked: masked loads and stores in every pass made the 784-wide
// rows ~10 % slower.
static inline __attribute__((always_inline)) FR_DENSE_AVX512
void fr_softmax_rows_avx512(const float *x, float *y, size_t cols, const int R) {
    __m512 vmax[4], mx[4], vsum[4], inv[4];
    for (int r = 0; r < R; r++) vmax[r] = _mm512_set1_ps(-INFINITY);
    size_t i = 0;
    for (; i + 16 <= cols; i += 16)
        for (int r = 0; r < R; r++) vmax[r] = _mm512_max_ps(vmax[r], _mm512_loadu_ps(x + r * cols + i));
    if (i < cols) {
        __mmask16 mk = fr_tail_mask(cols - i);
        for (int r = 0; r < R; r++)
            vmax[r] = _mm512_mask_max_ps(vmax[r], mk, vmax[r], _mm512_maskz_loadu_ps(mk, x + r * cols + i));
    }
    // A NaN anywhere makes the row NaN (x - max propagates it below).
    for (int r = 0; r < R; r++) {
        mx[r] = _mm512_set1_ps(_mm512_reduce_max_ps(vmax[r]));
        vsum[r] = _mm512_setzero_ps();
    }
    for (i = 0; i + 16 <= cols; i += 16) {
        for (int r = 0; r < R; r++) {
            __m512 e = fr_exp16_nonpositive(_mm512_sub_ps(_mm512_loadu_ps(x + r * cols + i), mx[r]));
            vsum[r] = _mm512_add_ps(vsum[r], e);
            _mm512_storeu_ps(y + r * cols + i, e);
        }
    }
    if (i < cols) {
        __mmask16 mk = fr_tail_mask(cols - i);
        for (int r = 0; r < R; r++) {
            __m512 e = fr_exp16_nonpositive(_mm512_sub_ps(_mm512_maskz_loadu_ps(mk, x + r * cols + i), mx[r]));
            vsum[r] = _mm512_mask_add_ps(vsum[r], mk, vsum[r], e);
            _mm512_mask_storeu_ps(y + r * cols + i, mk, e);
        }
    }
    // Multiplying by 1/sum (≤ 1 ulp more than dividing, as PyTorch does):
    // a vector division per 16 outputs was a third of the time.
    for (int r = 0; r < R; r++) inv[r] = _mm512_set1_ps(1.0f / fr_sum16(vsum[r]));
    for (i = 0; i + 16 <= cols; i += 16)
        for (int r = 0; r < R; r++)
            _mm512_storeu_ps(y + r * cols + i, _mm512_mul_ps(_mm512_loadu_ps(y + r * cols + i), inv[r]));
    if (i < cols) {
        __mmask16 mk = fr_tail_mask(cols - i);
        for (int r = 0; r < R; r++)
            _mm512_mask_storeu_ps(y + r * cols + i, mk,
                                  _mm512_mul_ps(_mm512_maskz_loadu_ps(mk, y + r * cols + i), inv[r]));
    }
}

static FR_DENSE_AVX512 void fr_softmax_row_avx512(const float *x, float *y, size_t cols) {
    fr_softmax_rows_avx512(x, y, cols, 1);
}

static FR_DENSE_AVX512 void fr_softmax_rows4_avx512(const float *x, float *y, size_t cols) {
    fr_softmax_rows_avx512(x, y, cols, 4);
}
#endif

void fr_softmax_rows(const float *x, float *y, size_t rows, size_t cols) {
    if (cols == 0) return;
#ifdef FR_DENSE_HAVE_AVX512
    if (fr_dense_use_avx512()) {
        size_t r = 0;
        for (; r + 4 <= rows; r += 4) fr_softmax_rows4_avx512(x + r * cols, y + r * cols, cols);
        for (; r < rows; r++) fr_softmax_row_avx512(x + r * cols, y + r * cols, cols);
        return;
    }
#endif
    for (size_t r = 0; r < rows; r++) fr_softmax_row_portable(x + r * cols, y + r * cols, cols);
}

// ---------------------------------------------------------------------------
// LayerNorm over rows

// Per row: mean μ = Σx / m and biased variance Σ(x - μ)² / m, each sum in
// 16 interleaved float partial sums (lane i % 16) reduced at the end; then
// r = 1/sqrt(var + eps) and y = (x - μ)·r·γ + β.
static void fr_layer_norm_row_portable(const float *x, const float *gamma, const float *beta, const float *mod_scale,
                                       const float *mod_shift, float *y, float *stats, size_t m, float eps) {
    float acc[16] = {0};
    for (size_t i = 0; i < m; i++) acc[i % 16] += x[i];
    float sum = 0.0f;
    for (size_t l = 0; l < 16; l++) sum += acc[l];
    const float mean = sum / (float)m;
    for (size_t l = 0; l < 16; l++) acc[l] = 0.0f;
    for (size_t i = 0; i < m; i++) {
        float c = x[i] - mean;
        acc[i % 16] += c * c;
    }
    float v = 0.0f;
    for (size_t l = 0; l < 16; l++) v += acc[l];
    const float rstd = 1.0f / sqrtf(v / (float)m + eps);
    stats[0] = mean;
    stats[1] = rstd;
    for (size_t i = 0; i < m; i++) {
        float t = (x[i] - mean) * rstd;
        if (gamma) t = t * gamma[i];
        if (beta) t = t + beta[i];
        if (mod_scale) t = t * mod_scale[i];
        if (mod_shift) t = t + mod_shift[i];
        y[i] = t;
    }
}

#ifdef FR_DENSE_HAVE_AVX512
// R rows (a constant at each call site) side by side, rows r0 … r0 + R − 1
// of x, y, stats and the modulation's row (r0 + r) / group. Each row takes
// the operations of a row alone in the same order, so values do not depend
// on R; a 64-feature row alone is a chain of two reductions, a square root
// and a division (~115 cycles at a DiT's 64 features), and 4 rows side by
// side overlap their chains.
static inline __attribute__((always_inline)) FR_DENSE_AVX512
void fr_layer_norm_rows_avx512(const float *x, const float *gamma, const float *beta, const float *mod_scale,
                               const float *mod_shift, size_t group, size_t r0, float *y, float *stats, size_t m,
                               float eps, const int R) {
    __m512 acc[4], vmean[4], vr[4];
    const float *ms[4], *mt[4];
    for (int r = 0; r < R; r++) {
        const size_t g = (r0 + (size_t)r) / group;
        ms[r] = mod_scale ? mod_scale + g * m : NULL;
        mt[r] = mod_shift ? mod_shift + g * m : NULL;
        acc[r] = _mm512_setzero_ps();
    }
    for (size_t i = 0; i < m; i += 16) {
        __mmask16 mk = fr_tail_mask(m - i);
        for (int r = 0; r < R; r++) acc[r] = _mm512_add_ps(acc[r], _mm512_maskz_loadu_ps(mk, x + r * m + i));
    }
    float mean[4];
    for (int r = 0; r < R; r++) {
        mean[r] = _mm512_reduce_add_ps(acc[r]) / (float)m;
        vmean[r] = _mm512_set1_ps(mean[r]);
        acc[r] = _mm512_setzero_ps();
    }
    for (size_t i = 0; i < m; i += 16) {
        __mmask16 mk = fr_tail_mask(m - i);
        for (int r = 0; r < R; r++) {
            __m512 c = _mm512_maskz_sub_ps(mk, _mm512_maskz_loadu_ps(mk, x + r * m + i), vmean[r]);
            acc[r] = _mm512_add_ps(acc[r], _mm512_mul_ps(c, c));
        }
    }
    for (int r = 0; r < R; r++) {
        const float rstd = 1.0f / sqrtf(_mm512_reduce_add_ps(acc[r]) / (float)m + eps);
        stats[2 * r] = mean[r];
        stats[2 * r + 1] = rstd;
        vr[r] = _mm512_set1_ps(rstd);
    }
    for (size_t i = 0; i < m; i += 16) {
        __mmask16 mk = fr_tail_mask(m - i);
        for (int r = 0; r < R; r++) {
            __m512 t = _mm512_mul_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(mk, x + r * m + i), vmean[r]), vr[r]);
            if (gamma) t = _mm512_mul_ps(t, _mm512_maskz_loadu_ps(mk, gamma + i));
            if (beta) t = _mm512_add_ps(t, _mm512_maskz_loadu_ps(mk, beta + i));
            if (ms[r]) t = _mm512_mul_ps(t, _mm512_maskz_loadu_ps(mk, ms[r] + i));
            if (mt[r]) t = _mm512_add_ps(t, _mm512_maskz_loadu_ps(mk, mt[r] + i));
            _mm512_mask_storeu_ps(y + r * m + i, mk, t);
        }
    }
}

static FR_DENSE_AVX512 void fr_layer_norm_row_avx512(const float *x, const float *gamma, const float *beta,
                                                     const float *mod_scale, const float *mod_shift, size_t group,
                                                     size_t r0, float *y, float *stats, size_t m, float eps) {
    fr_layer_norm_rows_avx512(x, gamma, beta, mod_scale, mod_shift, group, r0, y, stats, m, eps, 1);
}

static FR_DENSE_AVX512 void fr_layer_norm_rows4_avx512(const float *x, const float *gamma, const float *beta,
                                                       const float *mod_scale, const float *mod_shift, size_t group,
                                                       size_t r0, float *y, float *stats, size_t m, float eps) {
    fr_layer_norm_rows_avx512(x, gamma, beta, mod_scale, mod_shift, group, r0, y, stats, m, eps, 4);
}
#endif

void fr_layer_norm_rows(const float *x, const float *gamma, const float *beta, float *y, float *stats, size_t rows,
                        size_t m, float eps) {
    fr_layer_norm_mod_rows(x, gamma, beta, NULL, NULL, 1, y, stats, rows, m, eps);
}

// The modulation is applied after β as its own multiply and add (never an
// FMA), so the values are those of LayerNorm, then Mul, then Add.
void fr_layer_norm_mod_rows(const float *x, const float *gamma, const float *beta, const float *mod_scale,
                            const float *mod_shift, size_t group, float *y, float *stats, size_t rows, size_t m,
                            float eps) {
    if (m == 0) return;
    if (group == 0) group = 1;
#ifdef FR_DENSE_HAVE_AVX512
    if (fr_dense_use_avx512()) {
        size_t r = 0;
        for (; r + 4 <= rows; r += 4)
            fr_layer_norm_rows4_avx512(x + r * m, gamma, beta, mod_scale, mod_shift, group, r, y + r * m,
                                       stats + 2 * r, m, eps);
        for (; r < rows; r++)
            fr_layer_norm_row_avx512(x + r * m, gamma, beta, mod_scale, mod_shift, group, r, y + r * m,
                                     stats + 2 * r, m, eps);
        return;
    }
#endif
    for (size_t r = 0; r < rows; r++) {
        const size_t g = r / group;
        fr_layer_norm_row_portable(x + r * m, gamma, beta, mod_scale ? mod_scale + g * m : NULL,
                                   mod_shift ? mod_shift + g * m : NULL, y + r * m, stats + 2 * r, m, eps);
    }
}

// ---------------------------------------------------------------------------
// GroupNorm

// Mean and biased variance of x[0 .. count), two passes, sums in double.
static void fr_moments_portable(const float *x, size_t count, double *mean, double *var) {
    double s = 0.0;
    for (size_t i = 0; i < count; i++) s += (double)x[i];
    double mu = s / (double)count, q = 0.0;
    for (size_t i = 0; i < count; i++) {
        double d = (double)x[i] - mu;
        q += d * d;
    }
    *mean = mu;
    *var = q / (double)count;
}

// v = (x - μ)·scale + shift for one channel, μ = mu + mu_lo (the double
// mean split in two floats: x - mu is exact near the mean, so a large
// offset costs no accuracy); pre and y as in the contract.
static void fr_affine_portable(const float *x, float mu, float mu_lo, float scale, float shift, float *pre,
                               float *y, size_t count) {
    for (size_t i = 0; i < count; i++) {
        float v = ((x[i] - mu) - mu_lo) * scale + shift;
        if (pre) pre[i] = v;
        y[i] = v;
    }
}

#ifdef FR_DENSE_HAVE_AVX512
// The float at lanes 0-7 and 8-15 of v as doubles.
static inline __attribute__((always_inline)) FR_DENSE_AVX512 __m512d fr_lo_pd(__m512 v) {
    return _mm512_cvtps_pd(_mm512_castps512_ps256(v));
}

static inline __attribute__((always_inline)) FR_DENSE_AVX512 __m512d fr_hi_pd(__m512 v) {
    return _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
}

// Mean and biased variance in double, two passes, 32 floats an iteration
// into four accumulators (two had left each pass bound by the latency of
// its adds); a partial last 32 is zero-padded (the variance's padding
// lanes masked to 0 after subtracting the mean).
static FR_DENSE_AVX512 void fr_moments_avx512(const float *x, size_t count, double *mean, double *var) {
    __m512d s[4] = {_mm512_setzero_pd(), _mm512_setzero_pd(), _mm512_setzero_pd(), _mm512_setzero_pd()};
    for (size_t i = 0; i < count; i += 32) {
        const __m512 v0 = fr_load_part(x + i, count - i);
        const __m512 v1 = count - i > 16 ? fr_load_part(x + i + 16, count - i - 16) : _mm512_setzero_ps();
        s[0] = _mm512_add_pd(s[0], fr_lo_pd(v0));
        s[1] = _mm512_add_pd(s[1], fr_hi_pd(v0));
        s[2] = _mm512_add_pd(s[2], fr_lo_pd(v1));
        s[3] = _mm512_add_pd(s[3], fr_hi_pd(v1));
    }
    const double mu = _mm512_reduce_add_pd(_mm512_add_pd(_mm512_add_pd(s[0], s[2]), _mm512_add_pd(s[1], s[3]))) /
                      (double)count;
    const __m512d vmu = _mm512_set1_pd(mu);
    __m512d q[4] = {_mm512_setzero_pd(), _mm512_setzero_pd(), _mm512_setzero_pd(), _mm512_setzero_pd()};
    for (size_t i = 0; i < count; i += 32) {
        const size_t left = count - i;
        const __m512 v0 = fr_load_part(x + i, left);
        const __m512 v1 = left > 16 ? fr_load_part(x + i + 16, left - 16) : _mm512_setzero_ps();
        __m512d d[4] = {_mm512_sub_pd(fr_lo_pd(v0), vmu), _mm512_sub_pd(fr_hi_pd(v0), vmu),
                        _mm512_sub_pd(fr_lo_pd(v1), vmu), _mm512_sub_pd(fr_hi_pd(v1), vmu)};
        if (left < 32) {
            // Lanes past the end hold 0 - mean: masked to 0.
            const uint32_t mk = (1u << left) - 1u;
            for (int j = 0; j < 4; j++) d[j] = _mm512_maskz_mov_pd((__mmask8)(mk >> (8 * j)), d[j]);
        }
        for (int j = 0; j < 4; j++) q[j] = _mm512_fmadd_pd(d[j], d[j], q[j]);
    }
    *mean = mu;
    *var = _mm512_reduce_add_pd(_mm512_add_pd(_mm512_add_pd(q[0], q[2]), _mm512_add_pd(q[1], q[3]))) / (double)count;
}

static FR_DENSE_AVX512 void fr_affine_avx512(const float *x, float mu, float mu_lo, float scale, float shift,
                                             float *pre, float *y, size_t count) {
    const __m512 vmu = _mm512_set1_ps(mu), vlo = _mm512_set1_ps(mu_lo);
    const __m512 vs = _mm512_set1_ps(scale), vb = _mm512_set1_ps(shift);
    for (size_t i = 0; i < count; i += 16) {
        const __m512 d = _mm512_sub_ps(_mm512_sub_ps(fr_load_part(x + i, count - i), vmu), vlo);
        const __m512 v = _mm512_fmadd_ps(d, vs, vb);
        if (pre) fr_store_part(pre + i, count - i, v);
        fr_store_part(y + i, count - i, v);
    }
}
#endif

void fr_group_norm_forward(const float *x, const float *gamma, const float *beta, float *y, float *stats,
                           float *pre_activation_or_null, size_t n, size_t c, size_t spatial, size_t groups,
                           float eps, int silu) {
    if (groups == 0 || c == 0) return;
    const size_t cg = c / groups, count = cg * spatial;
    const int avx512 = fr_dense_use_avx512();
    for (size_t s = 0; s < n; s++)
        for (size_t gi = 0; gi < groups; gi++) {
            const size_t base = (s * c + gi * cg) * spatial;
            double mean = 0.0, var = 0.0;
            if (count > 0) {
#ifdef FR_DENSE_HAVE_AVX512
                if (avx512) fr_moments_avx512(x + base, count, &mean, &var);
                else
#endif
                    fr_moments_portable(x + base, count, &mean, &var);
            }
            const double rstd = 1.0 / sqrt(var + (double)eps);
            if (stats) {
                stats[(s * groups + gi) * 2] = (float)mean;
                stats[(s * groups + gi) * 2 + 1] = (float)rstd;
            }
            const float mu = (float)mean, mu_lo = (float)(mean - (double)mu);
            for (size_t ch = 0; ch < cg; ch++) {
                const size_t cc = gi * cg + ch, off = base + ch * spatial;
                const float scale = (float)(rstd * (gamma ? (double)gamma[cc] : 1.0));
                const float shift = beta ? beta[cc] : 0.0f;
                float *pre = pre_activation_or_null ? pre_activation_or_null + off : NULL;
#ifdef FR_DENSE_HAVE_AVX512
                if (avx512) fr_affine_avx512(x + off, mu, mu_lo, scale, shift, pre, y + off, spatial);
                else
#endif
                    fr_affine_portable(x + off, mu, mu_lo, scale, shift, pre, y + off, spatial);
            }
            if (silu) fr_unary_forward(FR_SILU, 0.0f, 0.0f, y + base, y + base, count);
        }
    (void)avx512;
}
