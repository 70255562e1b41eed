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
