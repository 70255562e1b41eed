/// Layer normalisation over the trailing per-sample axes from `axis`.
///
/// With x̂ = (x − μ) r, r = 1/sqrt(var + ε) per row of m elements:
/// forward y = x̂ ⊙ γ + β; JVP ẏ = γ ⊙ r (ẋ − mean(ẋ) − x̂ mean(ẋ ⊙ x̂));
/// VJP g_x̂ = g ⊙ γ, g_x = r (g_x̂ − mean(g_x̂) − x̂ mean(g_x̂ ⊙ x̂)),
/// g_γ = Σ g ⊙ x̂, g_β = Σ g. Row statistics (μ, r) are cached in aux.
extension Executor {
    private func rowGeometry(_ node: Graph.Node, axis: Int) -> (pre: Int, m: Int) {
        let s = graph.values[node.inputs[0]].shape
        let ax = axis < 0 ? axis + s.count : axis
        return (s[..<ax].reduce(1, *), s[ax...].reduce(1, *))
    }

    func layerNormForward(_ n: Int, _ node: Graph.Node, axis: Int, epsilon: Float,
                          out: UnsafeMutablePointer<Float>, batch: Int, ws: GraphWorkspace) {
        let (pre, m) = rowGeometry(node, axis: axis)
        let rows = batch * pre
        let x = data(node.inputs[0], ws)
        let gamma = node.inputs.count > 1 ? data(node.inputs[1], ws) : nil
        let beta = node.inputs.count > 2 ? data(node.inputs[2], ws) : nil
        let stats = ws.aux[n].reserve(2 * rows)
        for r in 0..<rows {
            let xr = x + r * m, yr = out + r * m
            var mean: Float = 0
            for i in 0..<m { mean += xr[i] }
            mean /= Float(m)
            var v: Float = 0
            for i in 0..<m { let c = xr[i] - mean; v += c * c }
            let rstd = 1 / (v / Float(m) + epsilon).squareRoot()
            stats[2 * r] = mean
            stats[2 * r + 1] = rstd
            for i in 0..<m {
                var y = (xr[i] - mean) * rstd
                if let gamma { y *= gamma[i] }
                if let beta { y += beta[i] }
                yr[i] = y
            }
        }
    }

    func layerNormJVP(_ n: Int, _ node: Graph.Node, axis: Int, out: UnsafeMutablePointer<Float>,
                      batch: Int, k: Int, ws: GraphWorkspace) {
        let (pre, m) = rowGeometry(node, axis: axis)
        let x = data(node.inputs[0], ws)
        let tx = tangent(node.inputs[0], ws)!
        let gamma = node.inputs.count > 1 ? data(node.inputs[1], ws) : nil
        let stats = ws.aux[n].pointer
        for b in 0..<batch {
            for j in 0..<k {
                for p in 0..<pre {
                    let pr = b * pre + p
                    let tr = (b * k + j) * pre + p
                    let mean = stats[2 * pr], rstd = stats[2 * pr + 1]
                    let xr = x + pr * m, t = tx + tr * m, o = out + tr * m
                    var mt: Float = 0, mtx: Float = 0
                    for i in 0..<m {
                        mt += t[i]
                        mtx += t[i] * (xr[i] - mean) * rstd
                    }
                    mt /= Float(m); mtx /= Float(m)
                    for i in 0..<m {
                        let xh = (xr[i] - mean) * rstd
                        var v = rstd * (t[i] - mt - xh * mtx)
                        if let gamma { v *= gamma[i] }
                        o[i] = v
                    }
                }
            }
        }
    }

    func layerNormVJP(_ n: Int, _ node: Graph.Node, axis: Int, g: UnsafeMutablePointer<Float>,
                      batch: Int, ws: GraphWorkspace) {
        let (pre, m) = rowGeometry(node, axis: axis)
        let rows = batch * pre
        let x = data(node.inputs[0], ws)
        let gamma = node.inputs.count > 1 ? data(node.inputs[1], ws) : nil
        let gGamma = node.inputs.count > 1 ? gradient(node.inputs[1], ws) : nil
        let gBeta = node.inputs.count > 2 ? gradient(node.inputs[2], ws) : nil
        let gx = gradient(node.inputs[0], ws)
        let stats = ws.aux[n].pointer
        let gh = ws.scratch.reserve(m)
        for r in 0..<rows {
            let mean = stats[2 * r], rstd = stats[2 * r + 1]
            let xr = x + r * m, gr = g + r * m
            var mg: Float = 0, mgx: Float = 0
            for i in 0..<m {
                let xh = (xr[i] - mean) * rstd
                if let gGamma { gGamma[i] += gr[i] * xh }
                if let gBeta { gBeta[i] += gr[i] }
                gh[i] = gamma.map { gr[i] * $0[i] } ?? gr[i]
                mg += gh[i]
                mgx += gh[i] * xh
            }
            guard let gx else { continue }
            mg /= Float(m); mgx /= Float(m)
            let gxr = gx + r * m
            for i in 0..<m {
                let xh = (xr[i] - mean) * rstd
                gxr[i] += rstd * (gh[i] - mg - xh * mgx)
            }
        }
    }
}
