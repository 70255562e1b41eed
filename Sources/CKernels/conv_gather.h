// Private to CKernels: the implicit-im2col gather conv.c provides to its
// float32 kernels and to conv_bf16.c. Not installed, not part of any API.
#ifndef FLOWRT_CONV_GATHER_H
#define FLOWRT_CONV_GATHER_H

#include <stddef.h>

#include "ckernels.h"

/// Geometry of one sample-group, derived once per call.
typedef struct {
    size_t cin_g, cout_g, khkw, k, hw, ohw;
    ptrdiff_t h, w, ow, sh, sw, dh, dw, pt, pl, kw;
    int direct;  // 1×1, stride 1, no padding, same size: X̂ is x itself
} fr_conv_plan;

fr_conv_plan fr_conv_plan_of(const fr_conv2d_geometry *g);

/// X̂ rows k for input channels [c0, c0 + cb) and positions [p0, p0 + np)
/// of one sample-group's input xs, panel by panel: panel q (positions
/// p0 + 16q …) row kk at dst + q·pstride + kk·kstride, 16 lanes, zero past
/// np and outside the image. X̂[k, oy·ow + ox] = x[ci, oy·sh − pt + ky·dh,
/// ox·sw − pl + kx·dw], k = (ci·kh + ky)·kw + kx. avx512: from
/// fr_dense_use_avx512() (the same values either way).
void fr_conv_gather(const fr_conv_plan *p, const float *xs, size_t p0, size_t np, size_t c0, size_t cb, float *dst,
                    size_t kstride, size_t pstride, int avx512);

#endif
