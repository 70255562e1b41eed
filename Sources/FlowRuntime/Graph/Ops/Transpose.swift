/// Transpose: permutes the per-sample axes (`perm[i]` is the input axis of
/// output axis i). Runs as an index map (`IndexMappingOp`).
struct TransposeOp: IndexMappingOp {
    var perm: [Int]
    let map: IndexMap

    /// - Throws: `.shapeMismatch` unless `perm` permutes the axes of `inputShape`.
    init(perm: [Int], inputShape: [Int], node: String) throws {
        guard perm.count == inputShape.count, Set(perm) == Set(0..<inputShape.count) else {
            throw FlowError.shapeMismatch("node '\(node)': perm \(perm) does not permute the axes of \(inputShape)")
        }
        self.perm = perm
        let outShape = perm.map { inputShape[$0] }
        map = try IndexMap.build(outShape: outShape, inShape: inputShape, node: node) { o in
            var i = [Int](repeating: 0, count: o.count)
            for (d, p) in perm.enumerated() { i[p] = o[d] }
            return i
        }
    }

    var kindName: String { "Transpose" }

    func outputShape(_ inputs: [Graph.Value], node: String) throws -> [Int] {
        guard inputs.count == 1, inputs[0].shape.count == perm.count else {
            throw FlowError.shapeMismatch("node '\(node)': Transpose perm \(perm) for \(inputs.map(\.shape))")
        }
        return perm.map { inputs[0].shape[$0] }
    }

    func exportONNX(_ e: inout ONNXExporter, _ n: Graph.Node) throws {
        e.node("Transpose", [e.name(n.inputs[0])], e.name(n.output), ["perm": .ints([0] + perm.map { Int64($0 + 1) })])
    }

    static var onnxImports: [String: ONNXImportRule] { ["Transpose": { i, n, _ in try i.transpose(n) }] }
}

extension ONNXImporter {
    mutating func transpose(_ n: Node) throws {
        let v = try input(n, 0)
        switch v {
        case .batched(let id, let axis):
            let shape = builder.shape(of: id)
            let rank = onnxRank(id, axis)
            var perm = ints(n, "perm")?.map(Int.init) ?? Array((0..<rank).reversed())
            guard perm.count == rank, Set(perm) == Set(0..<rank) else { throw invalid(n, "perm \(perm) for rank \(rank)") }
            var moved = 0
            if axis, let m = mergedAxes[id] {
                // Batch merged with m axes: those stay first, the rest permute.
                guard perm[0] == 0 else { throw unsupported(n, "a transpose that moves a merged batch axis (perm \(perm))") }
                perm = Array(0..<m) + perm.dropFirst().map { $0 - 1 + m }
                if perm == Array(0..<perm.count) { try set(n, v); return }
                let op = try TransposeOp(perm: perm, inputShape: shape, node: currentNode)
                let y = try builder.apply(Operation(op), [id], name: currentNode)
                mergedAxes[y] = m
                try set(n, .batched(y, batchAxis: true))
                return
            }
            if axis {
                // The batch axis may move (to be split off later, as in
                // attention's qkv); the IR keeps the other axes in order.
                let p = batchPosition(id)
                moved = perm.firstIndex(of: p)!
                perm = perm.filter { $0 != p }.map { $0 > p ? $0 - 1 : $0 }
            }
            if perm == Array(0..<perm.count) {
                guard moved == batchPosition(id) else {
                    let y = try builder.apply(.reshape(shape: shape), [id], name: currentNode)
                    setBatchPosition(y, moved)
                    try set(n, .batched(y, batchAxis: axis))
                    return
                }
                try set(n, v); return
            }
            let op = try TransposeOp(perm: perm, inputShape: shape, node: currentNode)
            let y = try builder.apply(Operation(op), [id], name: currentNode)
            setBatchPosition(y, moved)
            try set(n, .batched(y, batchAxis: axis))
        case .float, .ints:
            let shape = constantShape(v)!
            let perm = ints(n, "perm")?.map(Int.init) ?? Array((0..<shape.count).reversed())
            let op = try TransposeOp(perm: perm, inputShape: shape, node: currentNode)
            var out = pick(v, op.map.sources.map { Int($0) }, shape: perm.map { shape[$0] })
            // A transposed initializer (a weight) stays trainable.
            if case .float(let t, true) = v, case .float(let u, _) = out, t.count > 1 { out = .float(u, trainable: true) }
            try set(n, out)
        }
    }
}
