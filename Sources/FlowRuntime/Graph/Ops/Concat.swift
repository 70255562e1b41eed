/// Concatenation along a per-sample axis. JVP: the inputs' tangents
/// concatenated (zeros for inputs without one); VJP: the gradient's slices.
struct ConcatOp: GraphOp {
    var axis: Int

    var kindName: String { "Concat" }

    func outputShape(_ inputs: [Graph.Value], node: String) throws -> [Int] {
        guard (1...64).contains(inputs.count) else {
            throw FlowError.invalidModel("node '\(node)': Concat takes 1...64 inputs, got \(inputs.count)")
        }
        guard inputs.allSatisfy(\.isBatched) else {
            throw FlowError.unsupported("node '\(node)': Concat of a constant with batched values")
        }
        let r = inputs[0].shape.count
        let ax = try ShapeInference.axis(axis, rank: r, node: node)
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
    }

    func forward(_ c: OpContext) { c.executor.concat(c.node, axis: axis, lead: [c.batch], out: c.out, ws: c.ws, tangent: false) }
    func jvp(_ c: OpContext) { c.executor.concat(c.node, axis: axis, lead: [c.batch, c.k], out: c.out, ws: c.ws, tangent: true) }
    func vjp(_ c: OpContext) { c.executor.concatVJP(c.node, axis: axis, g: c.out, batch: c.batch, ws: c.ws) }

    func exportONNX(_ e: inout ONNXExporter, _ n: Graph.Node) throws {
        e.node("Concat", n.inputs.map(e.name), e.name(n.output), ["axis": .int(e.onnxAxis(axis, of: n.inputs[0]))])
    }

    static var onnxImports: [String: ONNXImportRule] { ["Concat": { i, n, _ in try i.concat(n) }] }
}

extension Operation {
    /// Concatenation along a per-sample axis.
    public static func concat(axis: Int) -> Operation { Operation(ConcatOp(axis: axis)) }
}

extension Executor {
    /// Concatenation of inputs (values or tangents) along per-sample `axis`;
    /// inputs without a tangent contribute zeros.
    func concat(_ node: Graph.Node, axis: Int, lead: [Int], out: UnsafeMutablePointer<Float>,
                ws: GraphWorkspace, tangent: Bool) {
        let shape = graph.values[node.output].shape
        let ax = axis < 0 ? axis + shape.count : axis
        let outer = lead.reduce(1, *) * shape[..<ax].reduce(1, *)
        let outChunk = shape[ax...].reduce(1, *)
        var offset = 0
        for i in node.inputs {
            let s = graph.values[i].shape
            let chunk = s[ax...].reduce(1, *)
            let src: UnsafeMutablePointer<Float>? = tangent ? self.tangent(i, ws) : data(i, ws)
            for o in 0..<outer {
                let dst = out + o * outChunk + offset
                if let src { dst.update(from: src + o * chunk, count: chunk) }
                else { dst.update(repeating: 0, count: chunk) }
            }
            offset += chunk
        }
    }

    func concatVJP(_ node: Graph.Node, axis: Int, g: UnsafeMutablePointer<Float>, batch: Int, ws: GraphWorkspace) {
        let shape = graph.values[node.output].shape
        let ax = axis < 0 ? axis + shape.count : axis
        let outer = batch * shape[..<ax].reduce(1, *)
        let outChunk = shape[ax...].reduce(1, *)
        var offset = 0
        for i in node.inputs {
            let chunk = graph.values[i].shape[ax...].reduce(1, *)
            if let gi = gradient(i, ws) {
                for o in 0..<outer {
                    let src = g + o * outChunk + offset, dst = gi + o * chunk
                    for j in 0..<chunk { dst[j] += src[j] }
                }
            }
            offset += chunk
        }
    }
}

// MARK: ONNX import

extension ONNXImporter {
    mutating func concat(_ n: Node) throws {
        let axis = try int(n, "axis", Int64.max)
        guard axis != Int64.max else { throw invalid(n, "missing attribute 'axis'") }
        let inputs = try (0..<n.inputs.count).filter { !n.inputs[$0].isEmpty }.map { try input(n, $0) }
        guard !inputs.isEmpty else { throw invalid(n, "no inputs") }
        let batched = inputs.compactMap { v -> (ValueID, Bool)? in if case .batched(let id, let a) = v { return (id, a) }; return nil }
        if batched.isEmpty {
            // Constants: all float or all integer.
            let shapes = inputs.compactMap(constantShape)
            let rank = shapes[0].count
            let a = Int(axis < 0 ? axis + Int64(rank) : axis)
            guard a >= 0, a < rank, shapes.allSatisfy({ $0.count == rank }) else { throw invalid(n, "axis \(axis) or ranks \(shapes) invalid") }
            for s in shapes where Array(s[..<a]) != Array(shapes[0][..<a]) || Array(s[(a + 1)...]) != Array(shapes[0][(a + 1)...]) {
                throw FlowError.shapeMismatch("node '\(currentNode)': Concat shapes \(shapes) differ off axis \(axis)")
            }
            var out = shapes[0]
            out[a] = shapes.map { $0[a] }.reduce(0, +)
            let largest = shapes.map(\.elementCount).max() ?? 0
            let total = try checkedCount(out, limit: Swift.max(foldedElementLimit, largest), "node '\(currentNode)'")
            let outer = out[..<a].reduce(1, *)
            let allFloat = inputs.allSatisfy { if case .float = $0 { return true }; return false }
            let allInts = inputs.allSatisfy { if case .ints = $0 { return true }; return false }
            guard allFloat || allInts else { throw unsupported(n, "mixing float and integer constants") }
            var floats: [Float] = [], symbols: [SymbolicInt] = []
            floats.reserveCapacity(allFloat ? total : 0)
            for o in 0..<outer {
                for (k, v) in inputs.enumerated() {
                    let chunk = shapes[k][a...].reduce(1, *)
                    switch v {
                    case .float(let t, _): floats += t.scalars[(o * chunk)..<((o + 1) * chunk)]
                    case .ints(let i): symbols += i.values[(o * chunk)..<((o + 1) * chunk)]
                    case .batched: break
                    }
                }
            }
            try set(n, allFloat ? .float(Tensor(shape: out, scalars: floats), trainable: false)
                                : .ints(IntConstant(shape: out, values: symbols)))
            return
        }
        guard batched.count == inputs.count else { throw unsupported(n, "concatenating constants with batched values") }
        let withAxis = batched[0].1
        guard batched.allSatisfy({ $0.1 == withAxis }) else {
            throw unsupported(n, "concatenating values with and without a batch axis")
        }
        let rank = onnxRank(batched[0].0, withAxis)
        let a = try sampleAxis(n, axis, rank: rank, batchAxis: withAxis)
        try set(n, .batched(try builder.apply(.concat(axis: a), batched.map(\.0), name: currentNode), batchAxis: withAxis))
    }

}
