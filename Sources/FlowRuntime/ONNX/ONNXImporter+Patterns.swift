/// Recognises the exporters' expansions of pointwise activations so they
/// import as one fused IR function:
/// - SiLU: `Mul(z, Sigmoid(z))` (either operand order);
/// - PyTorch Softplus: `Where(Greater(z, threshold), z, Softplus(z))`;
/// - exact GELU: `Div(z, √2)` (or `Mul(z, 1/√2)`) → `Erf` → `Add 1` → the
///   products with z and 0.5 in any of the orders the exporters emit;
/// - single ONNX activation nodes (Relu, Tanh, Sigmoid, Gelu, …).
extension ONNXImporter {
    struct ActivationMatch {
        var function: UnaryFunction
        /// Indices of the ONNX nodes the match replaces.
        var nodes: [Int]
        /// The name of the activation's output.
        var output: String
    }

    private func node(_ i: Int) -> Node { proto.graph.nodes[i] }

    /// The single node reading `name` (nil if several, none, or a graph output).
    private func soleReader(_ name: String) -> Int? {
        guard let r = readers[name], r.count == 1, r[0] >= 0, !done.contains(r[0]) else { return nil }
        return r[0]
    }

    private func scalar(_ name: String) -> Float? {
        if case .float(let t, _)? = values[name], t.count == 1 { return t.scalars[0] }
        return nil
    }

    /// The other input of a two-input node, given one of them.
    private func other(_ n: Node, _ name: String) -> String? {
        guard n.inputs.count == 2 else { return nil }
        if n.inputs[0] == name { return n.inputs[1] }
        if n.inputs[1] == name { return n.inputs[0] }
        return nil
    }

    /// The activation applied to `z`, if one of the patterns reads it.
    /// `exclusive`: every reader of `z` must belong to the match (to fuse it
    /// into the layer producing `z`).
    func matchActivation(from z: String, exclusive: Bool) -> ActivationMatch? {
        guard let zReaders = readers[z], !zReaders.isEmpty else { return nil }
        let candidates = [silu(z), softplus(z), scaledSoftplus(z), unthresholdedScaledSoftplus(z), gelu(z), single(z)].compactMap { $0 }
        for m in candidates {
            if m.nodes.contains(where: { done.contains($0) }) { continue }
            if exclusive && !zReaders.allSatisfy({ m.nodes.contains($0) }) { continue }
            return m
        }
        return nil
    }

    private func silu(_ z: String) -> ActivationMatch? {
        for s in readers[z] ?? [] where s >= 0 && node(s).opType == "Sigmoid" && node(s).inputs.first == z {
            guard let out = node(s).outputs.first, let m = soleReader(out), node(m).opType == "Mul",
                  other(node(m), out) == z else { continue }
            return ActivationMatch(function: .silu, nodes: [s, m], output: node(m).outputs[0])
        }
        return nil
    }

    private func softplus(_ z: String) -> ActivationMatch? {
        for sp in readers[z] ?? [] where sp >= 0 && node(sp).opType == "Softplus" && node(sp).inputs.first == z {
            guard let spOut = node(sp).outputs.first, let w = soleReader(spOut), node(w).opType == "Where",
                  node(w).inputs.count == 3, node(w).inputs[1] == z, node(w).inputs[2] == spOut else { continue }
            let cond = node(w).inputs[0]
            guard let g = (readers[z] ?? []).first(where: { $0 >= 0 && node($0).opType == "Greater" && node($0).outputs.first == cond }),
                  node(g).inputs.count == 2, node(g).inputs[0] == z, let threshold = scalar(node(g).inputs[1]),
                  soleReader(cond) == w else { continue }
            return ActivationMatch(function: .softplus(beta: 1, threshold: threshold), nodes: [sp, g, w], output: node(w).outputs[0])
        }
        return nil
    }

    /// `Where(Greater(βz, threshold), z, Div(Softplus(βz), β))` (PyTorch's
    /// Softplus with β ≠ 1, as FlowRuntime exports it).
    private func scaledSoftplus(_ z: String) -> ActivationMatch? {
        for m in readers[z] ?? [] where m >= 0 && node(m).opType == "Mul" {
            guard let beta = other(node(m), z).flatMap(scalar), beta > 0, let bz = node(m).outputs.first,
                  let bzReaders = readers[bz], bzReaders.count == 2,
                  let sp = bzReaders.first(where: { $0 >= 0 && node($0).opType == "Softplus" }),
                  let g = bzReaders.first(where: { $0 >= 0 && node($0).opType == "Greater" }),
                  node(g).inputs.first == bz, let threshold = node(g).inputs.count == 2 ? scalar(node(g).inputs[1]) : nil,
                  let dv = soleReader(node(sp).outputs[0]), node(dv).opType == "Div", node(dv).inputs.first == node(sp).outputs[0],
                  node(dv).inputs.count == 2, scalar(node(dv).inputs[1]) == beta,
                  let w = soleReader(node(dv).outputs[0]), node(w).opType == "Where", node(w).inputs.count == 3,
                  node(w).inputs == [node(g).outputs[0], z, node(dv).outputs[0]], soleReader(node(g).outputs[0]) == w
            else { continue }
            return ActivationMatch(function: .softplus(beta: beta, threshold: threshold), nodes: [m, sp, g, dv, w],
                                   output: node(w).outputs[0])
        }
        return nil
    }

    /// `Div(Softplus(Mul(z, β)), β)`: the legacy exporter's Softplus with
    /// β ≠ 1 (it drops the threshold).
    private func unthresholdedScaledSoftplus(_ z: String) -> ActivationMatch? {
        for m in readers[z] ?? [] where m >= 0 && node(m).opType == "Mul" {
            guard let beta = other(node(m), z).flatMap(scalar), beta > 0,
                  let sp = soleReader(node(m).outputs[0]), node(sp).opType == "Softplus",
                  let dv = soleReader(node(sp).outputs[0]), node(dv).opType == "Div",
                  node(dv).inputs.count == 2, node(dv).inputs[0] == node(sp).outputs[0], scalar(node(dv).inputs[1]) == beta
            else { continue }
            return ActivationMatch(function: .softplus(beta: beta, threshold: .infinity), nodes: [m, sp, dv],
                                   output: node(dv).outputs[0])
        }
        return nil
    }

    private func gelu(_ z: String) -> ActivationMatch? {
        let invSqrt2: Float = 0.70710678
        for d in readers[z] ?? [] where d >= 0 {
            let dn = node(d)
            guard dn.inputs.count == 2, dn.inputs[0] == z || (dn.opType == "Mul" && dn.inputs[1] == z),
                  let c = other(dn, z).flatMap(scalar) else { continue }
            guard (dn.opType == "Div" && abs(c - 1 / invSqrt2) < 1e-5) || (dn.opType == "Mul" && abs(c - invSqrt2) < 1e-6) else { continue }
            guard let e = soleReader(dn.outputs[0]), node(e).opType == "Erf",
                  let p = soleReader(node(e).outputs[0]), node(p).opType == "Add",
                  other(node(p), node(e).outputs[0]).flatMap(scalar) == 1,
                  let q = soleReader(node(p).outputs[0]), node(q).opType == "Mul",
                  let o = other(node(q), node(p).outputs[0]) else { continue }
            let qOut = node(q).outputs[0]
            if o == z || scalar(o) == 0.5 {
                // (z · p) · 0.5 or (0.5 · p) · z.
                guard let r = soleReader(qOut), node(r).opType == "Mul", let last = other(node(r), qOut),
                      o == z ? scalar(last) == 0.5 : last == z else { continue }
                return ActivationMatch(function: .gelu, nodes: [d, e, p, q, r], output: node(r).outputs[0])
            }
            // (z · 0.5) · p.
            if let h = (readers[z] ?? []).first(where: { $0 >= 0 && node($0).opType == "Mul" && node($0).outputs.first == o }),
               other(node(h), z).flatMap(scalar) == 0.5, soleReader(o) == q {
                return ActivationMatch(function: .gelu, nodes: [h, d, e, p, q], output: qOut)
            }
        }
        return nil
    }

    private func single(_ z: String) -> ActivationMatch? {
        let ops: Set<String> = ["Relu", "Tanh", "Sigmoid", "Elu", "Selu", "LeakyRelu", "Gelu", "Softplus"]
        for k in readers[z] ?? [] where k >= 0 && ops.contains(node(k).opType) && node(k).inputs.first == z {
            guard let f = try? unaryFunction(node(k)), let out = node(k).outputs.first else { continue }
            return ActivationMatch(function: f, nodes: [k], output: out)
        }
        return nil
    }

    /// Imports a pattern starting at node `index` as one unary IR node.
    /// Returns false when no pattern containing the node applies.
    mutating func fuseStandaloneActivation(_ n: Node, index: Int) throws -> Bool {
        for z in Set(n.inputs) where !z.isEmpty {
            guard case .batched(let id, let axis)? = values[z],
                  let m = matchActivation(from: z, exclusive: false), m.nodes.contains(index),
                  m.nodes.count > 1 || m.function != (try? unaryFunction(n)) else { continue }
            let y = try builder.apply(.unary(m.function), [id], name: currentNode)
            values[m.output] = .batched(y, batchAxis: axis)
            done.formUnion(m.nodes)
            return true
        }
        return false
    }
}
