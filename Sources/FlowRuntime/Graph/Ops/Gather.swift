/// Gather in its two batched forms:
/// - `EmbeddingOp`: rows of a parameter table picked by a batched index
///   (class-label embeddings): y[s, …] = W[idx[s, …], :]. Indices are
///   integers carried as floats (the context input); an index outside the
///   table gives a zero row (flows check labels before evaluating).
///   Indices carry no tangent; VJP: g_W[idx] += g.
/// - `GatherOp`: constant indices into a batched value along one axis, an
///   index map (`IndexMappingOp`).
struct EmbeddingOp: GraphOp {
    var kindName: String { "Embedding" }

    func outputShape(_ inputs: [Graph.Value], node: String) throws -> [Int] {
        guard inputs.count == 2, !inputs[0].isBatched, inputs[1].isBatched, inputs[0].shape.count >= 1 else {
            throw FlowError.unsupported("node '\(node)': Embedding needs a constant table and batched indices")
        }
        return inputs[1].shape + inputs[0].shape.dropFirst()
    }

    func forward(_ c: OpContext) {
        let table = c.input(0), idx = c.input(1), out = c.out
        let rows = c.shape(0)[0], width = c.size(0) / Swift.max(rows, 1), count = c.batch * c.size(1)
        for i in 0..<count {
            let v = idx[i]
            let dst = out + i * width
            if v >= 0, v < Float(rows), v == v.rounded(.down) { dst.update(from: table + Int(v) * width, count: width) }
            else { dst.update(repeating: 0, count: width) }
        }
    }

    func jvp(_ c: OpContext) {
        // Only the table could carry a tangent, and parameters do not.
        c.out.update(repeating: 0, count: c.batch * c.k * c.outputSize)
    }

    func vjp(_ c: OpContext) {
        guard let gw = c.gradient(0) else { return }
        let idx = c.input(1), g = c.out
        let rows = c.shape(0)[0], width = c.size(0) / Swift.max(rows, 1), count = c.batch * c.size(1)
        for i in 0..<count {
            let v = idx[i]
            guard v >= 0, v < Float(rows), v == v.rounded(.down) else { continue }
            let dst = gw + Int(v) * width, src = g + i * width
            for j in 0..<width { dst[j] += src[j] }
        }
    }

    func exportONNX(_ e: inout ONNXExporter, _ n: Graph.Node) throws {
        let out = e.name(n.output)
        let idx = e.fresh(out + "/index")
        e.node("Cast", [e.name(n.inputs[1])], idx, ["to": .int(7)])
        e.node("Gather", [e.name(n.inputs[0]), idx], out, ["axis": .int(0)])
    }

    static var onnxImports: [String: ONNXImportRule] {
        ["Gather": { i, n, _ in try i.gatherNode(n) }, "GatherND": { i, n, _ in try i.gatherND(n) }]
    }
}

/// Constant indices into a batched value along per-sample `axis`.
struct GatherOp: IndexMappingOp {
    var axis: Int
    var indices: [Int]
    var indexShape: [Int]
    let map: IndexMap

    init(axis: Int, indices: [Int], indexShape: [Int], inputShape: [Int], node: String) throws {
        guard axis >= 0, axis < inputShape.count, indices.allSatisfy({ (0..<inputShape[axis]).contains($0) }) else {
            throw FlowError.shapeMismatch("node '\(node)': Gather indices out of range for axis \(axis) of \(inputShape)")
        }
        (self.axis, self.indices, self.indexShape) = (axis, indices, indexShape)
        let outShape = Array(inputShape[..<axis]) + indexShape + Array(inputShape[(axis + 1)...])
        let r = indexShape.count
        map = try IndexMap.build(outShape: outShape, inShape: inputShape, node: node) { o in
            var flat = 0
            for d in 0..<r { flat = flat * indexShape[d] + o[axis + d] }
            return Array(o[..<axis]) + [indices[flat]] + Array(o[(axis + r)...])
        }
    }

    var kindName: String { "Gather" }

    func outputShape(_ inputs: [Graph.Value], node: String) throws -> [Int] {
        let s = inputs[0].shape
        return Array(s[..<axis]) + indexShape + Array(s[(axis + 1)...])
    }

    func exportONNX(_ e: inout ONNXExporter, _ n: Graph.Node) throws {
        let out = e.name(n.output)
        let raw = indices.map(Int64.init)
        let idx = e.int64Initializer(out + "/indices", raw)
        var src = idx
        if indexShape != [indices.count] {
            src = e.fresh(out + "/indices_shaped")
            e.node("Reshape", [idx, e.int64Initializer(out + "/index_shape", indexShape.map(Int64.init))], src)
        }
        e.node("Gather", [e.name(n.inputs[0]), src], out, ["axis": .int(Int64(axis + 1))])
    }
}

extension Operation {
    /// Rows of a table picked by batched integer indices.
    public static var embedding: Operation { Operation(EmbeddingOp()) }
}

extension ONNXImporter {
    /// Gather: constants fold; a constant table with batched indices is an
    /// embedding; constant indices into a batched value are an index map.
    mutating func gatherNode(_ n: Node) throws {
        let data = try input(n, 0), indices = try input(n, 1)
        switch (data, indices) {
        case (.batched(let id, let batchAxis), .ints(let idx)):
            guard let known = idx.knownValues else { throw unsupported(n, "indices that depend on the batch size") }
            try gatherBatched(n, id, batchAxis: batchAxis, indices: known, indexShape: idx.shape, axis: try int(n, "axis", 0))
        case (.float(let table, let trainable), .batched(let id, let batchAxis)):
            guard try int(n, "axis", 0) == 0 else { throw unsupported(n, "an embedding lookup along axis \(try int(n, "axis", 0))") }
            guard batchPosition(id) == 0 else { throw unsupported(n, "indices whose batch axis a Transpose moved") }
            let w = param(table, trainable: trainable, n.inputs[0])
            try set(n, .batched(try builder.apply(.embedding, [w, id], name: currentNode), batchAxis: batchAxis))
        case (.batched, .batched):
            throw unsupported(n, "Gather with batched indices into a batched value")
        default:
            try gather(n)
        }
    }

    /// Constant `indices` (of `indexShape`) into batched value `id` along
    /// ONNX axis `onnxAxis`.
    private mutating func gatherBatched(_ n: Node, _ id: ValueID, batchAxis: Bool, indices known: [Int64], indexShape: [Int],
                                        axis onnxAxis: Int64) throws {
        let shape = builder.shape(of: id)
        let rank = shape.count + (batchAxis ? 1 : 0)
        // A batch axis a Transpose moved to position p (qkv.permute(2, 0, …)
        // then qkv[0]): ONNX axes before p are per-sample axes as they are,
        // axes after it one less; the indices' axes replace the gathered one.
        let p = batchAxis ? batchPosition(id) : 0
        let a = onnxAxis < 0 ? onnxAxis + Int64(rank) : onnxAxis
        guard a >= 0 && a < Int64(rank) else { throw invalid(n, "axis \(onnxAxis) out of range for rank \(rank)") }
        guard !(batchAxis && a == Int64(p)) else { throw unsupported(n, "an operation along the batch axis") }
        let axis = try sampleAxis(n, a < Int64(p) ? a + 1 : a, rank: rank, batchAxis: batchAxis)
        let extent = shape[axis]
        let norm = try known.map { i -> Int in
            let j = i < 0 ? i + Int64(extent) : i
            guard j >= 0 && j < Int64(extent) else { throw invalid(n, "index \(i) out of range for extent \(extent)") }
            return Int(j)
        }
        let op = try GatherOp(axis: axis, indices: norm, indexShape: indexShape, inputShape: shape, node: currentNode)
        let y = try builder.apply(Operation(op), [id], name: currentNode)
        setBatchPosition(y, a < Int64(p) ? p - 1 + indexShape.count : p)
        try set(n, .batched(y, batchAxis: batchAxis))
    }

    /// GatherND with batch_dims 0 and constant indices of shape [..., 1]
    /// into a batched value: a Gather along ONNX axis 0 (the dynamo
    /// exporter's decomposition of 1-D linear interpolation, after a
    /// Transpose that moved the batch axis). Other forms are refused.
    mutating func gatherND(_ n: Node) throws {
        guard try int(n, "batch_dims", 0) == 0 else { throw unsupported(n, "batch_dims other than 0") }
        guard case .batched(let id, let batchAxis) = try input(n, 0), case .ints(let idx) = try input(n, 1),
              idx.shape.last == 1, let known = idx.knownValues else {
            throw unsupported(n, "only constant indices of shape [..., 1] into a batched value")
        }
        try gatherBatched(n, id, batchAxis: batchAxis, indices: known, indexShape: Array(idx.shape.dropLast()), axis: 0)
    }
}
