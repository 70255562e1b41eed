// The two GEMMs of a dense layer's backward pass on the register-tile
// engine (dense_engine.h), accumulating into the gradients; see
// include/ckernels.h for the contracts.
//
// For y = f(x·Wᵀ + b) with g_z = g ⊙ f'(z), over a chunk of `rows` samples:
//   g_x += g_z · W     [rows, in]  = [rows, out] · [out, in]
//   g_W += g_zᵀ · x    [out, in]   = [out, rows] · [rows, in]
// W is the same for every chunk of a training step, so its B operand is
// packed once per step (fr_gemm_pack_b layout) and gemm.c's
// fr_gemm_prepacked_acc streams the chunk's g_z past it. x differs per chunk, so g_W reads it in
// place (rows shorter than 4 KiB; else packed block by block into scratch,
// fr_gemm's path) and reads g_z transposed in place (eight contiguous
// floats per k).
//
// Every C[i, j] is its value on entry followed by one multiply-add per p in
// increasing p (k blocks in increasing order, the partial sum stored and
// reloaded in between, which is exact): a row of g_x does not depend on the
// other rows nor on m, and the results are the same for any thread count.
#include "ckernels.h"
#include "dense_engine.h"

#include <stddef.h>

#define FR_BACKWARD_KC 256  // k (rows) per g_W block, fr_gemm's k block
// B rows of at least this many floats (4 KiB strides and up) are packed for
// g_W; shorter ones are read in place. Measured on one core (best of 40,
// GFLOP/s in place vs packed): 256×256, 256 rows 112.4 vs 109.1; 2×256 (the
// output layer) 76.8 vs 24.9; 512×512 108.3 vs 106.0; 128×768 108.9 vs
// 103.5; 1024×1024 96.5 vs 99.0.
#define FR_BACKWARD_INPLACE_LIMIT 1024

static inline size_t fr_bw_min(size_t a, size_t b) { return a < b ? a : b; }

size_t fr_linear_backward_scratch_floats(size_t rows, size_t out, size_t in) {
    // Either layout's g_W product ([out, in] or [in, out] over k = rows).
    size_t a = fr_gemm_scratch_floats(out, in, rows), b = fr_gemm_scratch_floats(in, out, rows);
    return a > b ? a : b;
}

void fr_linear_backward(const float *gz, const float *x, const float *wt_packed, float *gx, float *gw, size_t rows,
                        size_t out, size_t in, int w_in_out_layout, float *scratch) {
    if (rows == 0 || out == 0 || in == 0) return;
    if (gx) fr_gemm_prepacked_acc(rows, in, out, gz, out, wt_packed, gx, in);
    if (!gw) return;
    // The B operand (x, or g_z for the [in, out] layout) is read in place,
    // row p at stride `ldb` floats, which skips packing a chunk-sized block
    // per call; rows of 4 KiB and more are packed block by block (fr_gemm),
    // since such strides pile a panel's rows into few L1 sets. Same tiles
    // and order of p either way, so the same bits.
    const size_t ldb = w_in_out_layout ? out : in;
    if (ldb >= FR_BACKWARD_INPLACE_LIMIT) {
        if (w_in_out_layout)  // g_W [in, out] += xᵀ · g_z
            fr_gemm(1, 0, in, out, rows, x, in, gz, out, 1.0f, gw, out, scratch);
        else                  // g_W [out, in] += g_zᵀ · x
            fr_gemm(1, 0, out, in, rows, gz, out, x, in, 1.0f, gw, in, scratch);
        return;
    }
    for (size_t p0 = 0; p0 < rows; p0 += FR_BACKWARD_KC) {
        size_t kc = fr_bw_min(FR_BACKWARD_KC, rows - p0);
        if (w_in_out_layout)  // A = x transposed in place, B = g_z rows
            fr_dense_block(in, out, kc, x + p0 * in, in, 1, gz + p0 * out, out, FR_DENSE_PANEL, gw, out,
                           FR_INIT_LOAD, NULL);
        else                  // A = g_z transposed in place, B = x rows
            fr_dense_block(out, in, kc, gz + p0 * out, out, 1, x + p0 * in, in, FR_DENSE_PANEL, gw, in,
                           FR_INIT_LOAD, NULL);
    }
}

size_t fr_linear_backward_packed_floats(size_t out, size_t in) { return fr_gemm_packed_b_floats(in, out); }

void fr_linear_backward_pack(const float *w, int w_in_out_layout, size_t out, size_t in, float *wt_packed) {
    // B = W as [k = out, n = in]: W [out, in] row-major as is; W [in, out] transposed.
    fr_gemm_pack_b(w_in_out_layout ? 1 : 0, in, out, w, w_in_out_layout ? out : in, wt_packed);
}
