import CKernels

/// Layer normalisation over the trailing per-sample axes from `axis`:
/// inputs `[x, scale, bias]` (scale, bias parameters of the normalised shape)
/// or `[x]`. y = (x − mean) / sqrt(var + epsilon) · scale + bias.
///
/// With x̂ = (x − μ) r, r = 1/sqrt(var + ε) per row of m elements:
/// forward y = x̂ ⊙ γ + β; JVP ẏ = γ ⊙ r (ẋ − mean(ẋ) − x̂ mean(ẋ ⊙ x̂));
/// VJP g_x̂ = g ⊙ γ, g_x = r (g_x̂ − mean(g_x̂) − x̂ mean(g_x̂ ⊙ x̂)),
/// g_γ = Σ g ⊙ x̂, g_β = Σ g. Row statistics (μ, r) are cached in aux.
struct LayerNormOp: GraphOp {
    var axis: Int
    var epsilon: Float

    var kindName: String { "LayerNorm" }

    func outputShape(_ inputs: [Graph.Value], node: String) throws -> [Int] {
        guard (1...3).contains(inputs.count) else {
            throw FlowError.invalidModel("node '\(node)': LayerNorm takes 1...3 inputs, got \(inputs.count)")
        }
        let x = inputs[0]
        let ax = try ShapeInference.axis(axis, rank: x.shape.count, node: node)
        let normalized = Array(x.shape[ax...])
        for p in inputs.dropFirst() {
            guard !p.isBatched, p.shape.elementCount == normalized.elementCount else {
                throw FlowError.shapeMismatch("node '\(node)': LayerNorm scale/bias \(p.shape) must be constants of shape \(normalized)")
            }
        }
        guard epsilon >= 0, epsilon.isFinite else { throw FlowError.invalidModel("node '\(node)': LayerNorm epsilon \(epsilon)") }
        return x.shape
    }

    func forward(_ c: OpContext) {
        c.executor.layerNormForward(c.index, c.node, axis: axis, epsilon: epsilon, out: c.out, batch: c.batch, ws: c.ws)
    }
    func jvp(_ c: OpContext) {
        c.executor.layerNormJVP(c.index, c.node, axis: axis, out: c.out, batch: c.batch, k: c.k, ws: c.ws)
    }
    func vjp(_ c: OpContext) {
        c.executor.layerNormVJP(c.index, c.node, axis: axis, g: c.out, batch: c.batch, ws: c.ws)
    }

    func exportONNX(_ e: inout ONNXExporter, _ n: Graph.Node) throws {
        let out = e.name(n.output)
        var ins = n.inputs.map(e.name)
        let onnxAxis = e.onnxAxis(axis, of: n.inputs[0])
        if ins.count == 1 {
            let normalized = Array(e.graph.values[n.inputs[0]].shape[Int(onnxAxis - 1)...])
            let ones = e.fresh(out + "/scale")
            e.initializers.append(ONNXExporter.floatTensor(ones, Tensor(shape: normalized, repeating: 1)))
            ins.append(ones)
        }
        e.node("LayerNormalization", ins, out, ["axis": .int(onnxAxis), "epsilon": .float(epsilon)])
    }

    static var onnxImports: [String: ONNXImportRule] { ["LayerNormalization": { i, n, _ in try i.layerNorm(n) }] }
}

extension Operation {
    /// Layer normalisation over the trailing per-sample axes from `axis`.
    public static func layerNorm(axis: Int, epsilon: Float) -> Operation {
        Operation(LayerNormOp(axis: axis, epsilon: epsilon))
    }
}

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
        // One C pass per row (`fr_layer_norm_rows`): the per-row Swift loops
        // were a tenth of a DiT's time at 64 features.
        fr_layer_norm_rows(x, gamma, beta, out, stats, rows, m, epsilon)
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

// MARK: ONNX import

extension ONNXImporter {
    mutating func layerNorm(_ n: Node) throws {
        guard case .batched(let x, let a) = try input(n, 0) else { throw unsupported(n, "LayerNormalization of a constant") }
        for (i, o) in n.outputs.enumerated() where i > 0 && !o.isEmpty && readers[o] != nil {
            throw unsupported(n, "the Mean/InvStdDev outputs are used")
        }
        let axis = try sampleAxis(n, try int(n, "axis", -1), rank: onnxRank(x, a), batchAxis: a)
        let eps = try float(n, "epsilon", 1e-5)
        let normalized = Array(builder.shape(of: x)[axis...])
        var inputs = [x]
        let scale = try floatConstant(n, 1, "Scale")
        guard scale.count == normalized.elementCount else {
            throw FlowError.shapeMismatch("node '\(currentNode)': scale \(scale.shape) does not match the normalised shape \(normalized)")
        }
        inputs.append(param(scale.reshaped(normalized), trainable: true, n.inputs[1]))
        if n.inputs.count > 2 && !n.inputs[2].isEmpty {
            let bias = try floatConstant(n, 2, "B")
            guard bias.count == normalized.elementCount else {
                throw FlowError.shapeMismatch("node '\(currentNode)': bias \(bias.shape) does not match the normalised shape \(normalized)")
            }
            inputs.append(param(bias.reshaped(normalized), trainable: true, n.inputs[2]))
        } else {
            inputs.append(param(Tensor(shape: normalized), trainable: true, currentNode + ".bias"))
        }
        try set(n, .batched(try builder.apply(.layerNorm(axis: axis, epsilon: eps), inputs, name: currentNode), batchAxis: a))
    }

}

/// Recognises LayerNorm written out in elementary ops (older exporters,
/// TensorFlow converters):
///
///     m = ReduceMean(x, axes);  d = x − m;  v = ReduceMean(d², axes)
///     y = d / Sqrt(v + ε) [· γ] [+ β]
///
/// (d² as `Pow(d, 2)` or `Mul(d, d)`), over trailing axes, and imports it as
/// one `.layerNorm` node.
extension ONNXImporter {
    private func onlyReader(_ name: String) -> Int? {
        guard let r = readers[name], r.count == 1, r[0] >= 0, !done.contains(r[0]) else { return nil }
        return r[0]
    }

    private func reduceAxes(_ n: Node) -> [Int64]? {
        guard n.opType == "ReduceMean", (try? int(n, "keepdims", 1)) == 1 else { return nil }
        if opset >= 18 {
            guard n.inputs.count > 1, case .ints(let c)? = values[n.inputs[1]] else { return nil }
            return c.knownValues
        }
        return ints(n, "axes")
    }

    private func constant(_ name: String) -> Tensor? {
        if case .float(let t, _)? = values[name] { return t }
        return nil
    }

    /// Imports the expansion whose first ReduceMean is node `index`; false
    /// when the nodes do not form one.
    mutating func fuseLayerNorm(_ n: Node, index: Int) throws -> Bool {
        let nodes = proto.graph.nodes
        guard let axes = reduceAxes(n), !axes.isEmpty, n.inputs.count >= 1,
              case .batched(let x, let hasAxis)? = values[n.inputs[0]] else { return false }
        let xName = n.inputs[0], mean = n.outputs[0]
        let rank = onnxRank(x, hasAxis)
        let sorted = axes.map { $0 < 0 ? $0 + Int64(rank) : $0 }.sorted()
        // Trailing, contiguous, not the batch axis.
        guard let first = sorted.first, sorted == Array(first..<Int64(rank)), !(hasAxis && first == 0) else { return false }
        guard let s = onlyReader(mean), nodes[s].opType == "Sub", nodes[s].inputs == [xName, mean] else { return false }
        let d = nodes[s].outputs[0]
        guard let dReaders = readers[d], dReaders.count == 2 || dReaders.count == 3, dReaders.allSatisfy({ $0 >= 0 }) else { return false }
        // d² then the variance.
        guard let sq = dReaders.first(where: {
            let q = nodes[$0]
            return (q.opType == "Pow" && q.inputs.count == 2 && q.inputs[0] == d && constant(q.inputs[1])?.scalars == [2])
                || (q.opType == "Mul" && q.inputs == [d, d])
        }) else { return false }
        guard let vr = onlyReader(nodes[sq].outputs[0]), reduceAxes(nodes[vr]).map({ $0.map { $0 < 0 ? $0 + Int64(rank) : $0 }.sorted() }) == sorted,
              nodes[vr].inputs.first == nodes[sq].outputs[0] else { return false }
        guard let ad = onlyReader(nodes[vr].outputs[0]), nodes[ad].opType == "Add", nodes[ad].inputs.count == 2 else { return false }
        let epsName = nodes[ad].inputs[0] == nodes[vr].outputs[0] ? nodes[ad].inputs[1] : nodes[ad].inputs[0]
        guard let eps = constant(epsName), eps.count == 1, eps.scalars[0] >= 0 else { return false }
        guard let sr = onlyReader(nodes[ad].outputs[0]), nodes[sr].opType == "Sqrt",
              let dv = onlyReader(nodes[sr].outputs[0]), nodes[dv].opType == "Div",
              nodes[dv].inputs == [d, nodes[sr].outputs[0]], Set(dReaders) == [sq, dv] else { return false }
        var matched = [index, s, sq, vr, ad, sr, dv]
        var out = nodes[dv].outputs[0]
        let normalized = Array(builder.shape(of: x)[(Int(first) - (hasAxis ? 1 : 0))...])
        let count = normalized.elementCount
        var scale = Tensor(shape: normalized, repeating: 1), shift = Tensor(shape: normalized)
        // Optional · γ and + β (constants of the normalised size).
        if let m = onlyReader(out), nodes[m].opType == "Mul", nodes[m].inputs.count == 2,
           let g = constant(nodes[m].inputs[0] == out ? nodes[m].inputs[1] : nodes[m].inputs[0]), g.count == count {
            scale = g.reshaped(normalized)
            matched.append(m)
            out = nodes[m].outputs[0]
        }
        if let a = onlyReader(out), nodes[a].opType == "Add", nodes[a].inputs.count == 2,
           let b = constant(nodes[a].inputs[0] == out ? nodes[a].inputs[1] : nodes[a].inputs[0]), b.count == count {
            shift = b.reshaped(normalized)
            matched.append(a)
            out = nodes[a].outputs[0]
        }
        let axis = Int(first) - (hasAxis ? 1 : 0)
        let y = try builder.apply(.layerNorm(axis: axis, epsilon: eps.scalars[0]),
                                  [x, param(scale, trainable: true, currentNode + ".weight"),
                                   param(shift, trainable: true, currentNode + ".bias")], name: currentNode)
        values[out] = .batched(y, batchAxis: hasAxis)
        done.formUnion(matched)
        return true
    }
}
