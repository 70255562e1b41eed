import CKernels

/// Softmax over per-sample axis `axis` (with `coerced`, over all axes from
/// `axis` on: ONNX before opset 13). y = exp(x − max) / Σ exp(x − max).
/// JVP: ẏ = y ⊙ (ẋ − Σ y ⊙ ẋ); VJP: g_x += y ⊙ (g − Σ g ⊙ y), sums along
/// the softmax axis. The forward output is the only cache.
struct SoftmaxOp: GraphOp {
    var axis: Int
    var coerced: Bool = false

    var kindName: String { "Softmax" }

    func outputShape(_ inputs: [Graph.Value], node: String) throws -> [Int] {
        guard inputs.count == 1, inputs[0].isBatched else { throw FlowError.invalidModel("node '\(node)': Softmax takes one batched input") }
        _ = try ShapeInference.axis(axis, rank: inputs[0].shape.count, node: node)
        return inputs[0].shape
    }

    /// (outer, length, inner) of one sample: softmax runs over `length`
    /// elements spaced `inner` apart.
    private func layout(_ shape: [Int]) -> (Int, Int, Int) {
        let a = axis < 0 ? axis + shape.count : axis
        if coerced { return (shape[..<a].reduce(1, *), shape[a...].reduce(1, *), 1) }
        return (shape[..<a].reduce(1, *), shape[a], shape[(a + 1)...].reduce(1, *))
    }

    func forward(_ c: OpContext) {
        let (outer, len, inner) = layout(c.outputShape)
        let x = c.input(0), y = c.out
        if inner == 1 { fr_softmax_rows(x, y, c.batch * outer, len); return }
        let tmp = c.scratch(len)
        for o in 0..<(c.batch * outer) {
            for i in 0..<inner {
                let base = o * len * inner + i
                for j in 0..<len { tmp[j] = x[base + j * inner] }
                fr_softmax_rows(tmp, tmp, 1, len)
                for j in 0..<len { y[base + j * inner] = tmp[j] }
            }
        }
    }

    /// dst (=, or += with `accumulate`) y ⊙ (v − Σ y ⊙ v) for rows of
    /// `v` (`perY` rows share one row of y).
    private func project(_ c: OpContext, _ v: UnsafePointer<Float>, _ dst: UnsafeMutablePointer<Float>,
                         rows: Int, perY: Int, accumulate: Bool) {
        let (outer, len, inner) = layout(c.outputShape)
        let y = c.outputValue, size = c.outputSize
        for r in 0..<rows {
            let yr = y + (r / perY) * size, vr = v + r * size, dr = dst + r * size
            if inner == 1 {  // rows along the last axis: contiguous, vectorised
                for o in 0..<outer {
                    let yo = yr + o * len, vo = vr + o * len, d = dr + o * len
                    let dot = Lanes.dot(yo, vo, count: len)
                    if accumulate { for j in 0..<len { d[j] += yo[j] * (vo[j] - dot) } }
                    else { for j in 0..<len { d[j] = yo[j] * (vo[j] - dot) } }
                }
                continue
            }
            for o in 0..<outer {
                for i in 0..<inner {
                    let base = o * len * inner + i
                    var dot: Float = 0
                    for j in 0..<len { dot += yr[base + j * inner] * vr[base + j * inner] }
                    for j in 0..<len {
                        let e = base + j * inner
                        let value = yr[e] * (vr[e] - dot)
                        if accumulate { dr[e] += value } else { dr[e] = value }
                    }
                }
            }
        }
    }

    func jvp(_ c: OpContext) { project(c, c.tangent(0)!, c.out, rows: c.batch * c.k, perY: c.k, accumulate: false) }

    func vjp(_ c: OpContext) {
        guard let gx = c.gradient(0) else { return }
        project(c, c.out, gx, rows: c.batch, perY: 1, accumulate: true)
    }

    func exportONNX(_ e: inout ONNXExporter, _ n: Graph.Node) throws {
        let x = e.name(n.inputs[0]), out = e.name(n.output)
        let onnxAxis = e.onnxAxis(axis, of: n.inputs[0])
        if coerced {
            // Opset 17 softmax is per axis: flatten the trailing axes, then restore.
            let shape = e.graph.values[n.inputs[0]].shape
            let a = Int(onnxAxis) - 1
            let flat = e.fresh(out + "/flat"), soft = e.fresh(out + "/softmax")
            e.node("Reshape", [x, e.int64Initializer(out + "/flat_shape", [-1] + shape[..<a].map(Int64.init) + [Int64(shape[a...].reduce(1, *))])], flat)
            e.node("Softmax", [flat], soft, ["axis": .int(-1)])
            e.node("Reshape", [soft, e.int64Initializer(out + "/shape", [-1] + shape.map(Int64.init))], out)
        } else {
            e.node("Softmax", [x], out, ["axis": .int(onnxAxis)])
        }
    }

    static var onnxImports: [String: ONNXImportRule] { ["Softmax": { i, n, _ in try i.softmax(n) }] }
}

extension ONNXImporter {
    mutating func softmax(_ n: Node) throws {
        guard case .batched(let id, let batchAxis) = try input(n, 0) else { throw unsupported(n, "Softmax of a constant") }
        let rank = onnxRank(id, batchAxis)
        let raw = try int(n, "axis", opset >= 13 ? -1 : 1)
        let axis = try sampleAxis(n, raw, rank: rank, batchAxis: batchAxis, merged: mergedAxes[id] ?? 0)
        let coerced = opset < 13 && axis != builder.shape(of: id).count - 1
        let op = Operation(SoftmaxOp(axis: axis, coerced: coerced))
        let y = try builder.apply(op, [id], name: currentNode)
        try propagateMerge(n, from: [id], to: y)
        try set(n, .batched(y, batchAxis: batchAxis))
    }
}
