import CKernels

/// Layer normalisation over the trailing per-sample axes from `axis`:
/// inputs `[x, scale, bias]` (scale, bias parameters of the normalised shape)
/// or `[x]`. y = (x − mean) / sqrt(var + epsilon) · scale + bias.
///
/// With x̂ = (x − μ) r, r = 1/sqrt(var + ε) per row of m elements:
/// forward y = x̂ ⊙ γ + β; JVP ẏ = γ ⊙ r (ẋ − mean(ẋ) − x̂ mean(ẋ ⊙ x̂));
/// VJP g_x̂ = g ⊙ γ, g_x = r (g_x̂ − mean(g_x̂) − x̂ mean(g_x̂ ⊙ x̂)),
/// g_γ = Σ g ⊙ x̂, g_β = Σ g. Row statistics (μ, r) are cached in aux.
///
/// `modulated` (a DiT's adaLN, fused at import from LayerNorm → Mul → Add):
/// inputs `[x, γ, β, s, t]` with s and t batched, per-sample shape
/// `[1, …, 1] + normalised shape`, and z = n ⊙ s + t for n the LayerNorm
/// output above, one rounding per operation as the three nodes (the C row
/// kernel applies the modulation while the row is in registers: two passes
/// over the tokens fewer). JVP ż = ṅ ⊙ s + n ⊙ ṡ + ṫ; VJP g_s += Σ_rows g ⊙ n,
/// g_t += Σ_rows g, then the LayerNorm VJP of g ⊙ s (n is recomputed from x
/// and the cached statistics).
struct LayerNormOp: GraphOp {
    var axis: Int
    var epsilon: Float
    var modulated: Bool = false

    var kindName: String { modulated ? "ModulatedLayerNorm" : "LayerNorm" }

    func outputShape(_ inputs: [Graph.Value], node: String) throws -> [Int] {
        guard modulated ? inputs.count == 5 : (1...3).contains(inputs.count) else {
            throw FlowError.invalidModel("node '\(node)': \(kindName) takes \(modulated ? "5" : "1...3") inputs, got \(inputs.count)")
        }
        let x = inputs[0]
        guard x.isBatched else { throw FlowError.invalidModel("node '\(node)': \(kindName) of a constant") }
        let ax = try ShapeInference.axis(axis, rank: x.shape.count, node: node)
        let normalized = Array(x.shape[ax...])
        for p in inputs.dropFirst().prefix(2) {
            guard !p.isBatched, p.shape.elementCount == normalized.elementCount else {
                throw FlowError.shapeMismatch("node '\(node)': LayerNorm scale/bias \(p.shape) must be constants of shape \(normalized)")
            }
        }
        if modulated {
            let modShape = [Int](repeating: 1, count: ax) + normalized
            for p in inputs[3...] where !p.isBatched || p.shape != modShape {
                throw FlowError.shapeMismatch("node '\(node)': the modulation \(p.shape) must be batched with per-sample shape \(modShape)")
            }
        }
        guard epsilon >= 0, epsilon.isFinite else { throw FlowError.invalidModel("node '\(node)': LayerNorm epsilon \(epsilon)") }
        return x.shape
    }

    func forward(_ c: OpContext) {
        c.executor.layerNormForward(c.index, c.node, axis: axis, epsilon: epsilon, modulated: modulated,
                                    out: c.out, batch: c.batch, ws: c.ws)
    }
    func jvp(_ c: OpContext) {
        c.executor.layerNormJVP(c.index, c.node, axis: axis, out: c.out, batch: c.batch, k: c.k, ws: c.ws)
        if modulated { c.executor.modulationJVP(c.index, c.node, axis: axis, out: c.out, batch: c.batch, k: c.k, ws: c.ws) }
    }
    func vjp(_ c: OpContext) {
        if modulated { c.executor.modulationVJP(c.index, c.node, axis: axis, g: c.out, batch: c.batch, ws: c.ws) }
        c.executor.layerNormVJP(c.index, c.node, axis: axis, g: c.out, batch: c.batch, ws: c.ws)
    }

    func exportONNX(_ e: inout ONNXExporter, _ n: Graph.Node) throws {
        let out = e.name(n.output)
        var ins = n.inputs.prefix(3).map(e.name)
        let onnxAxis = e.onnxAxis(axis, of: n.inputs[0])
        if ins.count == 1 {
            let normalized = Array(e.graph.values[n.inputs[0]].shape[Int(onnxAxis - 1)...])
            let ones = e.fresh(out + "/scale")
            e.initializers.append(ONNXExporter.floatTensor(ones, Tensor(shape: normalized, repeating: 1)))
            ins.append(ones)
        }
        guard modulated else {
            e.node("LayerNormalization", ins, out, ["axis": .int(onnxAxis), "epsilon": .float(epsilon)])
            return
        }
        let norm = e.fresh(out + "/norm"), scaled = e.fresh(out + "/scaled")
        e.node("LayerNormalization", ins, norm, ["axis": .int(onnxAxis), "epsilon": .float(epsilon)])
        e.node("Mul", [norm, e.name(n.inputs[3])], scaled)
        e.node("Add", [scaled, e.name(n.inputs[4])], out)
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

    func layerNormForward(_ n: Int, _ node: Graph.Node, axis: Int, epsilon: Float, modulated: Bool = false,
                          out: UnsafeMutablePointer<Float>, batch: Int, ws: GraphWorkspace) {
        let (pre, m) = rowGeometry(node, axis: axis)
        let rows = batch * pre
        let x = data(node.inputs[0], ws)
        let gamma = node.inputs.count > 1 ? data(node.inputs[1], ws) : nil
        let beta = node.inputs.count > 2 ? data(node.inputs[2], ws) : nil
        let stats = ws.aux[n].reserve(2 * rows)
        // One C pass per row (`fr_layer_norm_rows`): the per-row Swift loops
        // were a tenth of a DiT's time at 64 features.
        if modulated {
            fr_layer_norm_mod_rows(x, gamma, beta, data(node.inputs[3], ws), data(node.inputs[4], ws), pre,
                                   out, stats, rows, m, epsilon)
        } else {
            fr_layer_norm_rows(x, gamma, beta, out, stats, rows, m, epsilon)
        }
    }

    /// n = (x − μ)·r [·γ] [+β] of row `row` into `dst` (the forward's values).
    private func normalizedRow(_ node: Graph.Node, _ row: Int, m: Int, stats: UnsafePointer<Float>,
                               ws: GraphWorkspace, into dst: UnsafeMutablePointer<Float>) {
        let xr = data(node.inputs[0], ws) + row * m
        let gamma = node.inputs.count > 1 ? data(node.inputs[1], ws) : nil
        let beta = node.inputs.count > 2 ? data(node.inputs[2], ws) : nil
        let mean = stats[2 * row], rstd = stats[2 * row + 1]
        for i in 0..<m {
            var v = (xr[i] - mean) * rstd
            if let gamma { v = v * gamma[i] }
            if let beta { v = v + beta[i] }
            dst[i] = v
        }
    }

    /// The modulation's JVP terms after `layerNormJVP` wrote ṅ into `out`:
    /// ż = ṅ ⊙ s + n ⊙ ṡ + ṫ (ṡ, ṫ where the modulation carries tangents).
    func modulationJVP(_ n: Int, _ node: Graph.Node, axis: Int, out: UnsafeMutablePointer<Float>,
                       batch: Int, k: Int, ws: GraphWorkspace) {
        let (pre, m) = rowGeometry(node, axis: axis)
        let s = data(node.inputs[3], ws)
        let ts = tangent(node.inputs[3], ws), tt = tangent(node.inputs[4], ws)
        let stats = ws.aux[n].pointer
        let nrow = ws.scratch.reserve(m)
        for b in 0..<batch {
            let sb = s + b * m
            for p in 0..<pre {
                if ts != nil { normalizedRow(node, b * pre + p, m: m, stats: stats, ws: ws, into: nrow) }
                for j in 0..<k {
                    let o = out + ((b * k + j) * pre + p) * m
                    let tsr = ts.map { $0 + (b * k + j) * m }, ttr = tt.map { $0 + (b * k + j) * m }
                    for i in 0..<m {
                        var v = o[i] * sb[i]
                        if let tsr { v += nrow[i] * tsr[i] }
                        if let ttr { v += ttr[i] }
                        o[i] = v
                    }
                }
            }
        }
    }

    /// The modulation's VJP before `layerNormVJP`: g_s += Σ_rows g ⊙ n,
    /// g_t += Σ_rows g, then g ← g ⊙ s in place (the LayerNorm's output gradient).
    func modulationVJP(_ n: Int, _ node: Graph.Node, axis: Int, g: UnsafeMutablePointer<Float>,
                       batch: Int, ws: GraphWorkspace) {
        let (pre, m) = rowGeometry(node, axis: axis)
        let s = data(node.inputs[3], ws)
        let gs = gradient(node.inputs[3], ws), gt = gradient(node.inputs[4], ws)
        let stats = ws.aux[n].pointer
        let nrow = ws.scratch.reserve(m)
        for b in 0..<batch {
            let sb = s + b * m
            for p in 0..<pre {
                let row = b * pre + p, gr = g + row * m
                if let gs {
                    normalizedRow(node, row, m: m, stats: stats, ws: ws, into: nrow)
                    for i in 0..<m { gs[b * m + i] += gr[i] * nrow[i] }
                }
                if let gt { for i in 0..<m { gt[b * m + i] += gr[i] } }
                for i in 0..<m { gr[i] *= sb[i] }
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

    /// adaLN modulation: at `Add(Mul(LayerNorm(x), s), t)` (either operand
    /// order) with s and t batched per-sample `[1, …, 1] + normalised shape`
    /// and the LayerNorm and Mul outputs read only by the next node, imports
    /// one modulated LayerNorm over the LayerNorm's inputs. The LayerNorm and
    /// Mul already imported are left unread (the builder prunes them). The
    /// modulation of a DiT is computed after its LayerNorm in the export
    /// order, so this runs at the Add, when s and t exist.
    mutating func fuseLayerNormModulation(_ n: Node, index: Int) throws -> Bool {
        guard n.opType == "Add", n.inputs.count == 2 else { return false }
        let nodes = proto.graph.nodes
        /// The ONNX node defining `name`, searched backwards from `index`
        /// (a pattern's producer is a few nodes up).
        func producer(_ name: String) -> Int? {
            var i = index - 1
            while i >= 0 {
                if nodes[i].outputs.contains(name) { return i }
                i -= 1
            }
            return nil
        }
        /// The IR value of a batched, standard-layout ONNX value.
        func plain(_ name: String) -> ValueID? {
            guard case .batched(let id, true)? = values[name], batchPositions[id] == nil, (mergedAxes[id] ?? 0) == 0 else { return nil }
            return id
        }
        for (mi, ti) in [(0, 1), (1, 0)] {
            let product = n.inputs[mi], shiftName = n.inputs[ti]
            guard readers[product] == [index], let mulIndex = producer(product), nodes[mulIndex].opType == "Mul",
                  nodes[mulIndex].inputs.count == 2, let t = plain(shiftName) else { continue }
            for (li, si) in [(0, 1), (1, 0)] {
                let normName = nodes[mulIndex].inputs[li]
                guard readers[normName] == [mulIndex], let norm = plain(normName), let s = plain(nodes[mulIndex].inputs[si]),
                      case .node(let lnNode) = builder.graph.values[norm].source,
                      let ln = builder.graph.nodes[lnNode].operation.as(LayerNormOp.self), !ln.modulated,
                      builder.graph.nodes[lnNode].inputs.count == 3 else { continue }
                let x = builder.graph.nodes[lnNode].inputs[0]
                let shape = builder.shape(of: x)
                let ax = ln.axis < 0 ? ln.axis + shape.count : ln.axis
                let modShape = [Int](repeating: 1, count: ax) + shape[ax...]
                guard builder.shape(of: s) == modShape, builder.shape(of: t) == modShape else { continue }
                let op = Operation(LayerNormOp(axis: ln.axis, epsilon: ln.epsilon, modulated: true))
                let y = try builder.apply(op, builder.graph.nodes[lnNode].inputs + [s, t], name: currentNode)
                try set(n, .batched(y, batchAxis: true))
                return true
            }
        }
        return false
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
