// Attention for 16 or 32 queries at a time, scores stored key-major; see
// include/ckernels.h for the contract.
//
// Row by row, a softmax over few keys wastes much of each vector: at a
// DiT's 49 keys a row is 4 vectors with 49 of 64 lanes used (the scores'
// multiply-adds and the exp alike), and each row ends in two horizontal
// reductions and a scalar division. Here 16 queries are the 16 lanes of a
// vector: Sᵀ = K·(c·Q)ᵀ has one full vector per key and 16 queries, the max
// and the sum run down the keys with vertical operations, one vector
// division serves 16 rows, and Y = P·V reads Pᵀ as a transposed A. Two
// such panels at once (32 queries) let one broadcast of K[key, d] feed two
// multiply-adds, where one panel's Sᵀ was bound by the loads.
//
// Same values as the row form (fr_binary_rows for c·Q, fr_gemm_prepacked,
// fr_softmax_rows, fr_gemm_prepacked), bit for bit:
// - a score is 0 then one multiply-add per d in increasing d either way
//   (K[key, d]·cQ[i, d] or cQ[i, d]·K[key, d]: the same product);
// - the softmax's max is exact in any order; the exp is shared
//   (exp_avx512.h); the row form sums key j into lane j % 16 in
//   increasing j and then adds the 16 lane sums in fr_sum16's tree, and
//   here lane-sum vector l collects keys j ≡ l (mod 16) in increasing j and
//   the 16 vectors are added in the same tree; 1/sum is one IEEE division
//   per row either way;
// - Y[i, w] is 0 then one multiply-add per key in increasing key order.
// DiTKernelTests compares the two forms.
#include "ckernels.h"
#include "dense_engine.h"
#include "exp_avx512.h"

#include <math.h>

int fr_attention_key_major_applies(size_t keys, size_t depth, size_t width) {
    return fr_dense_use_avx512() && keys > 0 && keys <= FR_ATTENTION_KEY_MAJOR_KEYS && depth > 0 && width > 0;
}

size_t fr_attention_key_major_scratch_floats(size_t keys, size_t depth) {
    return FR_ATTENTION_KEY_MAJOR_ROWS * (keys + depth);
}

#ifdef FR_DENSE_HAVE_AVX512

// The softmax of each lane of st's keys × 16 floats (key j at st + j·ld)
// over the keys, in place.
static FR_DENSE_AVX512 void fr_softmax_lanes(float *st, size_t ld, size_t keys) {
    __m512 mx = _mm512_loadu_ps(st);
    for (size_t j = 1; j < keys; j++) mx = _mm512_max_ps(mx, _mm512_loadu_ps(st + j * ld));
    // Lane sums: part[l] collects keys j ≡ l (mod 16), as the row form's lane l.
    __m512 part[16];
    for (int l = 0; l < 16; l++) part[l] = _mm512_setzero_ps();
    for (size_t j = 0; j < keys; j++) {
        const __m512 e = fr_exp16_nonpositive(_mm512_sub_ps(_mm512_loadu_ps(st + j * ld), mx));
        _mm512_storeu_ps(st + j * ld, e);
        part[j % 16] = _mm512_add_ps(part[j % 16], e);
    }
    // fr_sum16's tree: l + (l + 8), then + 4, + 2, + 1.
    for (int l = 0; l < 8; l++) part[l] = _mm512_add_ps(part[l], part[l + 8]);
    for (int l = 0; l < 4; l++) part[l] = _mm512_add_ps(part[l], part[l + 4]);
    for (int l = 0; l < 2; l++) part[l] = _mm512_add_ps(part[l], part[l + 2]);
    const __m512 inv = _mm512_div_ps(_mm512_set1_ps(1.0f), _mm512_add_ps(part[0], part[1]));
    for (size_t j = 0; j < keys; j++) _mm512_storeu_ps(st + j * ld, _mm512_mul_ps(_mm512_loadu_ps(st + j * ld), inv));
}

FR_DENSE_AVX512
void fr_attention_key_major(size_t rows, size_t keys, size_t depth, size_t width, int trans_k, const float *q,
                            size_t lq, const float *q_scale, const float *k, size_t lk, const float *v, size_t lv,
                            float *y, size_t ly, float *scratch) {
    if (!fr_attention_key_major_applies(keys, depth, width) || rows % 16 != 0 || rows == 0 ||
        rows > FR_ATTENTION_KEY_MAJOR_ROWS)
        return;
    float *qt = scratch, *st = scratch + rows * depth;
    // (c·Q)ᵀ in panels of 16 queries, [depth, 16] each: the B operand of
    // Sᵀ = K·(c·Q)ᵀ, whose broadcast of K[key, d] then serves every panel.
    for (size_t g = 0; g < rows / 16; g++) {
        float *panel = qt + g * 16 * depth;
        fr_transpose(16, depth, q + g * 16 * lq, lq, panel, 16);
        if (q_scale) {
            const __m512 c = _mm512_set1_ps(q_scale[0]);
            for (size_t d = 0; d < depth; d++)
                _mm512_storeu_ps(panel + 16 * d, _mm512_mul_ps(_mm512_loadu_ps(panel + 16 * d), c));
        }
    }
    fr_dense_block(keys, rows, depth, k, lk, !trans_k, qt, 16, 16 * depth, st, rows, FR_INIT_ZERO, NULL);
    for (size_t g = 0; g < rows / 16; g++) fr_softmax_lanes(st + 16 * g, rows, keys);
    // Y = P·V with P [rows, keys] read from Pᵀ (a transposed A), V in place.
    fr_dense_block(rows, width, keys, st, rows, 1, v, lv, 16, y, ly, FR_INIT_ZERO, NULL);
}

#else

void fr_attention_key_major(size_t rows, size_t keys, size_t depth, size_t width, int trans_k, const float *q,
                            size_t lq, const float *q_scale, const float *k, size_t lk, const float *v, size_t lv,
                            float *y, size_t ly, float *scratch) {
    (void)rows, (void)keys, (void)depth, (void)width, (void)trans_k, (void)q, (void)lq, (void)q_scale, (void)k, (void)lk, (void)v, (void)lv;
    (void)y, (void)ly, (void)scratch;
}

#endif
