/// Output shapes of operations, checked against their inputs.
enum ShapeInference {
    /// numpy broadcasting of two shapes (right-aligned), or nil.
    static func broadcast(_ a: [Int], _ b: [Int]) -> [Int]? {
        let r = Swift.max(a.count, b.count)
        let pa = [Int](repeating: 1, count: r - a.count) + a
        let pb = [Int](repeating: 1, count: r - b.count) + b
        var out = [Int]()
        for i in 0..<r {
            if pa[i] == pb[i] || pb[i] == 1 { out.append(pa[i]) }
            else if pa[i] == 1 { out.append(pb[i]) }
            else { return nil }
        }
        return out
    }

    /// The per-sample shape a parameter takes when it meets a batched value of
    /// per-sample rank `rank`: a leading extent-1 axis that aligns with the
    /// batch is dropped. Nil when the parameter would need a batch extent.
    static func perSampleShape(ofParameter s: [Int], againstRank rank: Int) -> [Int]? {
        if s.count <= rank { return s }
        if s.count == rank + 1 && s[0] == 1 { return Array(s.dropFirst()) }
        return nil
    }

    /// Normalises a possibly negative axis against `rank`.
    static func axis(_ a: Int, rank: Int, node: String) throws -> Int {
        let n = a < 0 ? a + rank : a
        guard n >= 0 && n < rank else {
            throw FlowError.shapeMismatch("node '\(node)': axis \(a) is out of range for per-sample rank \(rank)")
        }
        return n
    }

    static func outputShape(_ op: Operation, _ inputs: [Graph.Value], node: String) throws -> [Int] {
        func need(_ n: ClosedRange<Int>) throws {
            guard n.contains(inputs.count) else {
                throw FlowError.invalidModel("node '\(node)': \(op.kindName) takes \(n) inputs, got \(inputs.count)")
            }
        }
        switch op {
        case .linear(let transposed, _):
            try need(2...3)
            let x = inputs[0], w = inputs[1]
            guard x.isBatched, !w.isBatched, !(inputs.count == 3 && inputs[2].isBatched) else {
                throw FlowError.unsupported("node '\(node)': Linear needs a batched input and constant weights")
            }
            guard let inDim = x.shape.last, w.shape.count == 2 else {
                throw FlowError.shapeMismatch("node '\(node)': Linear needs x [..., in] and a 2-d weight, got \(x.shape) and \(w.shape)")
            }
            let (o, i) = transposed ? (w.shape[0], w.shape[1]) : (w.shape[1], w.shape[0])
            guard i == inDim else {
                throw FlowError.shapeMismatch("node '\(node)': input has \(inDim) features but the weight \(w.shape) expects \(i)")
            }
            if inputs.count == 3, inputs[2].shape.elementCount != o || inputs[2].shape.count > 2 {
                throw FlowError.shapeMismatch("node '\(node)': bias \(inputs[2].shape) does not match \(o) outputs")
            }
            return Array(x.shape.dropLast()) + [o]
        case .binary:
            try need(2...2)
            let a = inputs[0], b = inputs[1]
            let rank = Swift.max(a.isBatched ? a.shape.count : 0, b.isBatched ? b.shape.count : 0)
            func ps(_ v: Graph.Value) throws -> [Int] {
                if v.isBatched { return v.shape }
                guard let s = perSampleShape(ofParameter: v.shape, againstRank: rank) else {
                    throw FlowError.shapeMismatch("node '\(node)': constant \(v.name) of shape \(v.shape) does not broadcast over the batch")
                }
                return s
            }
            let sa = try ps(a), sb = try ps(b)
            guard let s = broadcast(sa, sb) else {
                throw FlowError.shapeMismatch("node '\(node)': shapes \(sa) and \(sb) do not broadcast")
            }
            return s
        case .unary:
            try need(1...1)
            return inputs[0].shape
        case .concat(let axis):
            try need(1...64)
            guard inputs.allSatisfy(\.isBatched) else {
                throw FlowError.unsupported("node '\(node)': Concat of a constant with batched values")
            }
            let r = inputs[0].shape.count
            let ax = try self.axis(axis, rank: r, node: node)
            var out = inputs[0].shape
            out[ax] = 0
            for v in inputs {
                guard v.shape.count == r else {
                    throw FlowError.shapeMismatch("node '\(node)': Concat inputs have ranks \(inputs.map { $0.shape.count })")
                }
                for i in 0..<r where i != ax && v.shape[i] != out[i] {
                    throw FlowError.shapeMismatch("node '\(node)': Concat shapes \(inputs.map(\.shape)) differ off axis \(axis)")
                }
                out[ax] += v.shape[ax]
            }
            return out
        case .layerNorm(let axis, let eps):
            try need(1...3)
            let x = inputs[0]
            let ax = try self.axis(axis, rank: x.shape.count, node: node)
            let normalized = Array(x.shape[ax...])
            for p in inputs.dropFirst() {
                guard !p.isBatched, p.shape.elementCount == normalized.elementCount else {
                    throw FlowError.shapeMismatch("node '\(node)': LayerNorm scale/bias \(p.shape) must be constants of shape \(normalized)")
                }
            }
            guard eps >= 0, eps.isFinite else { throw FlowError.invalidModel("node '\(node)': LayerNorm epsilon \(eps)") }
            return x.shape
        case .reduceMean(let axes, let keep), .reduceSum(let axes, let keep):
            try need(1...1)
            let s = inputs[0].shape
            let ax = Set(try axes.map { try self.axis($0, rank: s.count, node: node) })
            var out = [Int]()
            for (i, e) in s.enumerated() {
                if ax.contains(i) { if keep { out.append(1) } } else { out.append(e) }
            }
            return out
        case .reshape(let shape):
            try need(1...1)
            guard shape.allSatisfy({ $0 >= 0 }), shape.checkedElementCount == inputs[0].shape.elementCount else {
                throw FlowError.shapeMismatch("node '\(node)': cannot reshape per-sample \(inputs[0].shape) to \(shape)")
            }
            return shape
        }
    }
}
