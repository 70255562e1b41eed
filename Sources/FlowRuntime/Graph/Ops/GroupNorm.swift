import CKernels

/// Group normalisation of per-sample `[C, spatial…]` values, optionally
/// fused with the SiLU that follows it in U-Net blocks: inputs
/// `[x, γ, β]` with per-channel γ, β `[C]`. Per sample and group of C/G
/// channels, μ and r = 1/sqrt(var + ε) over the group's m elements;
/// z = (x − μ) r γ_c + β_c; y = z (or SiLU(z) with `silu`).
/// InstanceNormalization is the case G = C.
///
/// With x̂ = (x − μ) r and s = SiLU'(z) (1 without SiLU):
/// JVP ẏ = s ⊙ γ_c r (ẋ − mean(ẋ) − x̂ mean(ẋ ⊙ x̂));
/// VJP with h = g ⊙ s ⊙ γ_c: g_x += r (h − mean(h) − x̂ mean(h ⊙ x̂)),
/// g_γ_c += Σ g s x̂, g_β_c += Σ g s (means over a group).
/// Cache: (μ, r) per sample and group, and s when fused with SiLU.
struct GroupNormOp: GraphOp {
    var groups: Int
    var epsilon: Float
    var silu: Bool

    var kindName: String { silu ? "GroupNorm+SiLU" : "GroupNorm" }

    func outputShape(_ inputs: [Graph.Value], node: String) throws -> [Int] {
        guard inputs.count == 3, inputs[0].isBatched, !inputs[1].isBatched, !inputs[2].isBatched else {
            throw FlowError.unsupported("node '\(node)': GroupNorm needs a batched input and constant scale and bias")
        }
        let x = inputs[0].shape
        guard x.count >= 1, groups >= 1, x[0] % groups == 0,
              inputs[1].shape.elementCount == x[0], inputs[2].shape.elementCount == x[0] else {
            throw FlowError.shapeMismatch("node '\(node)': GroupNorm(\(groups) groups) of \(x) with scale \(inputs[1].shape), bias \(inputs[2].shape)")
        }
        guard epsilon >= 0, epsilon.isFinite else { throw FlowError.invalidModel("node '\(node)': GroupNorm epsilon \(epsilon)") }
        return x
    }

    private func dims(_ c: OpContext) -> (channels: Int, spatial: Int, perGroup: Int) {
        let ch = c.shape(0)[0], spatial = c.size(0) / ch
        return (ch, spatial, ch / groups * spatial)
    }

    func forward(_ c: OpContext) {
        let (ch, spatial, _) = dims(c)
        let statsCount = c.batch * groups * 2, count = c.batch * c.size(0)
        if !c.record {
            fr_group_norm_forward(c.input(0), c.input(1), c.input(2), c.out, nil, nil, c.batch, ch, spatial, groups, epsilon, silu ? 1 : 0)
            return
        }
        let aux = c.aux(statsCount + (silu ? count : 0))
        let pre = silu ? aux + statsCount : nil
        fr_group_norm_forward(c.input(0), c.input(1), c.input(2), c.out, aux, pre, c.batch, ch, spatial, groups, epsilon, silu ? 1 : 0)
        if let pre {
            let (k, p1, p2) = UnaryFunction.silu.kernel
            fr_unary_derivative(k, p1, p2, pre, pre, count)  // s = SiLU'(z), in place
        }
    }

    func jvp(_ c: OpContext) {
        let (_, spatial, m) = dims(c)
        let x = c.input(0), tx = c.tangent(0)!, gamma = c.input(1), out = c.out
        let stats = c.recorded, size = c.size(0), statsCount = c.batch * groups * 2
        let cPerGroup = m / spatial
        for s in 0..<c.batch {
            for j in 0..<c.k {
                for g in 0..<groups {
                    let mean = stats[(s * groups + g) * 2], rstd = stats[(s * groups + g) * 2 + 1]
                    let base = g * m
                    let xr = x + s * size + base, tr = tx + (s * c.k + j) * size + base, o = out + (s * c.k + j) * size + base
                    var mt: Float = 0, mtx: Float = 0
                    for i in 0..<m { mt += tr[i]; mtx += tr[i] * (xr[i] - mean) * rstd }
                    mt /= Float(m); mtx /= Float(m)
                    for cg in 0..<cPerGroup {
                        let gm = gamma[g * cPerGroup + cg] * rstd
                        for p in 0..<spatial {
                            let i = cg * spatial + p
                            o[i] = gm * (tr[i] - mt - (xr[i] - mean) * rstd * mtx)
                        }
                    }
                    if silu {
                        let sd = stats + statsCount + s * size + base
                        for i in 0..<m { o[i] *= sd[i] }
                    }
                }
            }
        }
    }

    func vjp(_ c: OpContext) {
        let (_, spatial, m) = dims(c)
        let x = c.input(0), gamma = c.input(1), g = c.out
        let gx = c.gradient(0), gGamma = c.gradient(1), gBeta = c.gradient(2)
        let stats = c.recorded, size = c.size(0), statsCount = c.batch * groups * 2
        let cPerGroup = m / spatial
        let h = c.scratch(m)
        for s in 0..<c.batch {
            for grp in 0..<groups {
                let mean = stats[(s * groups + grp) * 2], rstd = stats[(s * groups + grp) * 2 + 1]
                let base = grp * m
                let xr = x + s * size + base, gr = g + s * size + base
                if silu {
                    let sd = stats + statsCount + s * size + base
                    for i in 0..<m { gr[i] *= sd[i] }  // g ⊙ s, in place
                }
                // h = x̂ (normalised input); per channel Σg and Σg·x̂ in
                // vector lanes; with γ they give the means of γg and γg·x̂.
                for i in 0..<m { h[i] = (xr[i] - mean) * rstd }
                var mh: Float = 0, mhx: Float = 0
                for cg in 0..<cPerGroup {
                    let ch = grp * cPerGroup + cg, o = cg * spatial
                    let sumG = Lanes.sum(gr + o, count: spatial), sumGX = Lanes.dot(gr + o, h + o, count: spatial)
                    gGamma?[ch] += sumGX
                    gBeta?[ch] += sumG
                    mh += gamma[ch] * sumG; mhx += gamma[ch] * sumGX
                }
                guard let gx else { continue }
                mh /= Float(m); mhx /= Float(m)
                let gxr = gx + s * size + base
                for cg in 0..<cPerGroup {
                    let gam = gamma[grp * cPerGroup + cg], o = cg * spatial
                    for i in o..<(o + spatial) { gxr[i] += rstd * (gam * gr[i] - mh - h[i] * mhx) }
                }
            }
        }
    }

    func exportONNX(_ e: inout ONNXExporter, _ n: Graph.Node) throws {
        // Opset 17 has no GroupNormalization: the legacy exporters' form,
        // Reshape [G, -1] → InstanceNormalization(1, 0) → Reshape → γ, β.
        let x = e.name(n.inputs[0]), out = e.name(n.output)
        let shape = e.graph.values[n.inputs[0]].shape
        let grouped = e.fresh(out + "/grouped"), normed = e.fresh(out + "/normed"), back = e.fresh(out + "/ungrouped")
        let scaled = e.fresh(out + "/scaled"), affine = silu ? e.fresh(out + "/affine") : out
        // γ, β first: an importer meets them as constants when it reaches the
        // InstanceNormalization (FlowRuntime's own fuses the pattern back).
        let channelShape = [shape[0]] + [Int](repeating: 1, count: shape.count - 1)
        let gamma = e.fresh(out + "/gamma"), beta = e.fresh(out + "/beta")
        e.node("Reshape", [e.name(n.inputs[1]), e.int64Initializer(out + "/channel_shape", channelShape.map(Int64.init))], gamma)
        e.node("Reshape", [e.name(n.inputs[2]), e.int64Initializer(out + "/channel_shape", channelShape.map(Int64.init))], beta)
        e.node("Reshape", [x, e.int64Initializer(out + "/group_shape", [0, Int64(groups), -1])], grouped)
        let ones = e.fresh(out + "/ones"), zeros = e.fresh(out + "/zeros")
        e.initializers.append(ONNXExporter.floatTensor(ones, Tensor(shape: [groups], repeating: 1)))
        e.initializers.append(ONNXExporter.floatTensor(zeros, Tensor(shape: [groups])))
        e.node("InstanceNormalization", [grouped, ones, zeros], normed, ["epsilon": .float(epsilon)])
        e.node("Reshape", [normed, e.int64Initializer(out + "/shape", [-1] + shape.map(Int64.init))], back)
        e.node("Mul", [back, gamma], scaled)
        e.node("Add", [scaled, beta], affine)
        if silu { try e.unary(.silu, affine, out) }
    }

    static var onnxImports: [String: ONNXImportRule] {
        ["GroupNormalization": { i, n, _ in try i.groupNormalization(n) },
         "InstanceNormalization": { i, n, _ in try i.instanceNormalization(n) }]
    }
}

extension Operation {
    /// Group normalisation with per-channel scale and bias, optionally fused with SiLU.
    public static func groupNorm(groups: Int, epsilon: Float, silu: Bool = false) -> Operation {
        Operation(GroupNormOp(groups: groups, epsilon: epsilon, silu: silu))
    }
}

// MARK: ONNX import

extension ONNXImporter {
    /// Emits GroupNorm on `x` with per-channel γ, β, absorbing a following
    /// SiLU read only by it; `output` is the ONNX name of the normalised value.
    mutating func emitGroupNorm(_ n: Node, x: ValueID, batchAxis: Bool, groups: Int, epsilon: Float,
                                gamma: Tensor, beta: Tensor, trainable: Bool, output: String, consumed: [Int]) throws {
        let channels = builder.shape(of: x)[0]
        var out = output, nodes = consumed, silu = false
        if let m = matchActivation(from: output, exclusive: true), m.function == .silu {
            silu = true
            out = m.output
            nodes += m.nodes
        }
        let ids = [x, param(gamma.reshaped([channels]), trainable: trainable, currentNode + ".scale"),
                   param(beta.reshaped([channels]), trainable: trainable, currentNode + ".bias")]
        let y = try builder.apply(.groupNorm(groups: groups, epsilon: epsilon, silu: silu), ids, name: currentNode)
        values[out] = .batched(y, batchAxis: batchAxis)
        done.formUnion(nodes)
    }

    /// GroupNormalization: scale and bias per group (opset 18) or per
    /// channel (opset 21), told apart by their length.
    mutating func groupNormalization(_ n: Node) throws {
        guard case .batched(let x, let batchAxis) = try input(n, 0), batchAxis else {
            throw unsupported(n, "GroupNormalization of a value without a batch axis")
        }
        let shape = builder.shape(of: x)
        guard shape.count >= 2 else { throw unsupported(n, "GroupNormalization of per-sample shape \(shape)") }
        let groups = Int(try int(n, "num_groups", 0))
        guard groups >= 1, shape[0] % groups == 0 else { throw invalid(n, "num_groups \(groups) for \(shape[0]) channels") }
        let eps = try float(n, "epsilon", 1e-5)
        var scale = try floatConstant(n, 1, "scale"), bias = try floatConstant(n, 2, "bias")
        let trainable: Bool = { if case .float(_, let t) = try? input(n, 1) { return t }; return false }()
        let perGroup = shape[0] / groups
        if scale.count == groups && groups != shape[0] {
            scale = Tensor(shape: [shape[0]], scalars: (0..<shape[0]).map { scale.scalars[$0 / perGroup] })
            bias = Tensor(shape: [shape[0]], scalars: (0..<shape[0]).map { bias.scalars[$0 / perGroup] })
        }
        guard scale.count == shape[0], bias.count == shape[0] else {
            throw FlowError.shapeMismatch("node '\(currentNode)': scale \(scale.shape) / bias \(bias.shape) for \(shape[0]) channels and \(groups) groups")
        }
        try emitGroupNorm(n, x: x, batchAxis: true, groups: groups, epsilon: eps, gamma: scale, beta: bias,
                          trainable: trainable, output: n.outputs[0], consumed: [])
    }

    /// InstanceNormalization: a GroupNorm with one group per channel; the
    /// legacy GroupNorm expansion (Reshape [G, −1] → InstanceNormalization
    /// with unit scale and zero bias → Reshape back → Mul γ → Add β) fuses
    /// into one GroupNorm of the original value.
    mutating func instanceNormalization(_ n: Node) throws {
        guard case .batched(let x, let batchAxis) = try input(n, 0), batchAxis else {
            throw unsupported(n, "InstanceNormalization of a value without a batch axis")
        }
        let shape = builder.shape(of: x)
        guard shape.count >= 2 else { throw unsupported(n, "InstanceNormalization of per-sample shape \(shape)") }
        let eps = try float(n, "epsilon", 1e-5)
        let scale = try floatConstant(n, 1, "scale"), bias = try floatConstant(n, 2, "B")
        guard scale.count == shape[0], bias.count == shape[0] else {
            throw FlowError.shapeMismatch("node '\(currentNode)': scale \(scale.shape) / bias \(bias.shape) for \(shape[0]) channels")
        }
        if try fuseGroupNormExpansion(n, grouped: x, scale: scale, bias: bias, epsilon: eps) { return }
        let trainable: Bool = { if case .float(_, let t) = try? input(n, 1) { return t }; return false }()
        try emitGroupNorm(n, x: x, batchAxis: true, groups: shape[0], epsilon: eps, gamma: scale, beta: bias,
                          trainable: trainable, output: n.outputs[0], consumed: [])
    }

    private func soleReaderNode(_ name: String) -> Int? {
        guard let r = readers[name], r.count == 1, r[0] >= 0, !done.contains(r[0]) else { return nil }
        return r[0]
    }

    /// The per-channel constant [C] of a `[C, 1, …]`-shaped (or `[1, C, 1, …]`) operand.
    private func channelConstant(_ name: String, channels: Int) -> (Tensor, Bool)? {
        guard case .float(let t, let trainable)? = values[name], t.count == channels,
              t.shape.filter({ $0 != 1 }).count <= 1 else { return nil }
        return (t.reshaped([channels]), trainable)
    }

    /// Whether the Reshape target `name` restores x's shape: a known
    /// constant ([batch or 0] + x's per-sample shape), or, not imported yet,
    /// the whole Shape of a batched value of x's per-sample shape (torch's
    /// dynamo exporter computes it after the InstanceNormalization, as
    /// Shape of the normalised convolution's output).
    private func reshapeRestores(_ name: String, _ xShape: [Int]) -> Bool {
        if case .ints(let target)? = values[name] {
            return Array(target.values.dropFirst()).compactMap(\.value).map(Int.init) == xShape
                || target.values.count == xShape.count + 1
        }
        guard values[name] == nil, let p = proto.graph.nodes.firstIndex(where: { $0.outputs.contains(name) }) else {
            return false
        }
        let shapeNode = proto.graph.nodes[p]
        guard shapeNode.opType == "Shape", shapeNode.inputs.count == 1, (try? int(shapeNode, "start", 0)) == 0,
              shapeNode.attributes["end"] == nil,
              case .batched(let id, true)? = values[shapeNode.inputs[0]] else { return false }
        return builder.shape(of: id) == xShape
    }

    private mutating func fuseGroupNormExpansion(_ n: Node, grouped: ValueID, scale: Tensor, bias: Tensor, epsilon: Float) throws -> Bool {
        let nodes = proto.graph.nodes
        guard scale.scalars.allSatisfy({ $0 == 1 }), bias.scalars.allSatisfy({ $0 == 0 }),
              let source = builder.graph.nodes.last(where: { $0.output == grouped }),
              source.operation.as(ReshapeOp.self) != nil else { return false }
        let x = source.inputs[0]
        let xShape = builder.shape(of: x), groups = builder.shape(of: grouped)[0]
        guard xShape.count >= 2, xShape[0] % groups == 0, builder.shape(of: grouped).count == 2 else { return false }
        // Reshape back to x's shape, then Mul γ and Add β per channel.
        guard let r = soleReaderNode(n.outputs[0]), nodes[r].opType == "Reshape",
              reshapeRestores(nodes[r].inputs[1], xShape),
              let mIndex = soleReaderNode(nodes[r].outputs[0]), nodes[mIndex].opType == "Mul",
              let other = nodes[mIndex].inputs.first(where: { $0 != nodes[r].outputs[0] }),
              let (gamma, gt) = channelConstant(other, channels: xShape[0]),
              let aIndex = soleReaderNode(nodes[mIndex].outputs[0]), nodes[aIndex].opType == "Add",
              let otherB = nodes[aIndex].inputs.first(where: { $0 != nodes[mIndex].outputs[0] }),
              let (beta, _) = channelConstant(otherB, channels: xShape[0]) else { return false }
        try emitGroupNorm(n, x: x, batchAxis: true, groups: groups, epsilon: epsilon, gamma: gamma, beta: beta,
                          trainable: gt, output: nodes[aIndex].outputs[0], consumed: [r, mIndex, aIndex])
        return true
    }
}
