import CKernels

/// Linear: y = f(x · Wᵀ + b) over the last axis (W `[out, in]`), or
/// y = f(x · W + b) (W `[in, out]`, MatMul layout).
///
/// Forward runs `fr_gemm_packed` on the weights the parameter store packed
/// (bias folded in), or, without that kernel, `fr_gemm_small` for small
/// batches and otherwise bias rows then one SGEMM with beta = 1; the
/// activation runs in place on the cache-hot result. When derivatives are
/// recorded, f'(z) is stored for the JVP (ẏ = f'(z) ⊙ ẋ Wᵀ, one SGEMM over
/// batch·k rows) and the VJP (g_z = g ⊙ f'(z); g_x = g_z W; g_W = g_zᵀ x;
/// g_b = Σ_rows g_z).
extension Executor {
    func linearForward(_ n: Int, _ node: Graph.Node, transposed: Bool, activation: UnaryFunction,
                       out: UnsafeMutablePointer<Float>, batch: Int, ws: GraphWorkspace, record: Bool) {
        let xin = node.inputs[0]
        let inDim = graph.values[xin].shape.last!
        let outDim = graph.values[node.output].shape.last!
        let rows = batch * (plan.sizes[xin] / inDim)
        let bias = node.inputs.count == 3 ? UnsafePointer(data(node.inputs[2], ws)) : nil
        if let wp = params.packed[n] {
            // Prepacked weights: one pass computes x·Wᵀ + b at any batch, and a
            // row's result does not depend on the other rows.
            fr_gemm_packed(data(xin, ws), wp, bias, out, rows, outDim, inDim)
        } else if rows <= BLAS.smallRows && transposed {
            // Small batches: one pass computes x·Wᵀ + b (weights stay in L1).
            fr_gemm_small(data(xin, ws), data(node.inputs[1], ws), bias, out, rows, outDim, inDim)
        } else {
            var beta: Float = 0
            if node.inputs.count == 3 {
                let b = data(node.inputs[2], ws)
                for r in 0..<rows { (out + r * outDim).update(from: b, count: outDim) }
                beta = 1
            }
            BLAS.gemm(transB: transposed, m: rows, n: outDim, k: inDim,
                      a: data(xin, ws), b: data(node.inputs[1], ws), beta: beta, c: out)
        }
        if activation != .identity {
            let (k, p1, p2) = activation.kernel
            let count = rows * outDim
            if record {
                fr_unary_forward_derivative(k, p1, p2, out, out, ws.aux[n].reserve(count), count)
            } else {
                fr_unary_forward(k, p1, p2, out, out, count)
            }
        }
    }

    func linearVJP(_ n: Int, _ node: Graph.Node, transposed: Bool, activation: UnaryFunction,
                   g: UnsafeMutablePointer<Float>, batch: Int, ws: GraphWorkspace) {
        let xin = node.inputs[0]
        let inDim = graph.values[xin].shape.last!
        let outDim = graph.values[node.output].shape.last!
        let rows = batch * (plan.sizes[xin] / inDim)
        // g_z = g ⊙ f'(z), in place: the output gradient is not read again.
        if activation != .identity {
            let d = ws.aux[n].pointer
            for i in 0..<(rows * outDim) { g[i] *= d[i] }
        }
        if let gx = gradient(xin, ws) {
            // transposed: W [out, in], g_x += g_z W; else W [in, out], g_x += g_z Wᵀ.
            BLAS.gemm(transB: !transposed, m: rows, n: inDim, k: outDim,
                      a: g, b: data(node.inputs[1], ws), beta: 1, c: gx)
        }
        if let gw = gradient(node.inputs[1], ws) {
            if transposed {  // g_W [out, in] += g_zᵀ x
                BLAS.gemm(transA: true, m: outDim, n: inDim, k: rows, a: g, b: data(xin, ws), beta: 1, c: gw)
            } else {         // g_W [in, out] += xᵀ g_z
                BLAS.gemm(transA: true, m: inDim, n: outDim, k: rows, a: data(xin, ws), b: g, beta: 1, c: gw)
            }
        }
        if node.inputs.count == 3, let gb = gradient(node.inputs[2], ws) {
            for r in 0..<rows {
                let gr = g + r * outDim
                for j in 0..<outDim { gb[j] += gr[j] }
            }
        }
    }
}
