/// Mean or sum over per-sample axes (`keepDims` keeps them with extent 1).
/// JVP: the same reduction of the tangents; VJP: the gradient broadcast
/// back (scaled by 1/count for the mean).
struct ReduceOp: GraphOp {
    enum Kind: String, Sendable { case mean = "ReduceMean", sum = "ReduceSum" }
    var kind: Kind
    var axes: [Int]
    var keepDims: Bool

    var kindName: String { kind.rawValue }

    func outputShape(_ inputs: [Graph.Value], node: String) throws -> [Int] {
        guard inputs.count == 1 else {
            throw FlowError.invalidModel("node '\(node)': \(kindName) takes 1 input, got \(inputs.count)")
        }
        let s = inputs[0].shape
        let ax = Set(try axes.map { try ShapeInference.axis($0, rank: s.count, node: node) })
        var out = [Int]()
        for (i, e) in s.enumerated() {
            if ax.contains(i) { if keepDims { out.append(1) } } else { out.append(e) }
        }
        return out
    }

    private func scale(_ c: OpContext) -> Float {
        kind == .mean ? 1 / Float(c.executor.reducedCount(c.node, axes)) : 1
    }

    func forward(_ c: OpContext) {
        c.executor.reduce(c.node, axes: axes, scale: scale(c), lead: [c.batch], src: c.input(0), dst: c.out)
    }

    func jvp(_ c: OpContext) {
        c.executor.reduce(c.node, axes: axes, scale: scale(c), lead: [c.batch, c.k], src: c.tangent(0)!, dst: c.out)
    }

    func vjp(_ c: OpContext) {
        guard let gx = c.gradient(0) else { return }
        let inShape = [c.batch] + c.shape(0)
        let ax = Set(axes.map { ($0 < 0 ? $0 + inShape.count - 1 : $0) + 1 })
        let kept = inShape.enumerated().map { ax.contains($0.offset) ? 1 : $0.element }
        Strided.apply(.scale(scale(c)), shape: inShape, dst: gx,
                      dstStrides: Strided.strides(of: inShape, broadcastTo: inShape), accumulate: true,
                      StridedOperand(pointer: c.out, strides: Strided.strides(of: kept, broadcastTo: inShape)))
    }

    func exportONNX(_ e: inout ONNXExporter, _ n: Graph.Node) throws {
        let out = e.name(n.output)
        let onnxAxes = axes.map { e.onnxAxis($0, of: n.inputs[0]) }
        switch kind {
        case .mean:
            e.node("ReduceMean", [e.name(n.inputs[0])], out, ["axes": .ints(onnxAxes), "keepdims": .int(keepDims ? 1 : 0)])
        case .sum:
            let a = e.int64Initializer(out + "/axes", onnxAxes)
            e.node("ReduceSum", [e.name(n.inputs[0]), a], out, ["keepdims": .int(keepDims ? 1 : 0)])
        }
    }

    static var onnxImports: [String: ONNXImportRule] {
        ["ReduceMean": { importer, n, index in
            if try importer.fuseLayerNorm(n, index: index) { return }
            try importer.reduce(n)
         },
         "ReduceSum": { i, n, _ in try i.reduce(n) },
         "ReduceSumSquare": { i, n, _ in try i.reduce(n) },
         "ReduceL2": { i, n, _ in try i.reduce(n) }]
    }
}

extension Operation {
    /// Mean over per-sample axes.
    public static func reduceMean(axes: [Int], keepDims: Bool) -> Operation {
        Operation(ReduceOp(kind: .mean, axes: axes, keepDims: keepDims))
    }
    /// Sum over per-sample axes.
    public static func reduceSum(axes: [Int], keepDims: Bool) -> Operation {
        Operation(ReduceOp(kind: .sum, axes: axes, keepDims: keepDims))
    }
}

extension Executor {
    func reducedCount(_ node: Graph.Node, _ axes: [Int]) -> Int {
        let s = graph.values[node.inputs[0]].shape
        return Set(axes.map { $0 < 0 ? $0 + s.count : $0 }).reduce(1) { $0 * s[$1] }
    }

    /// Sum over per-sample `axes` of `src` (full shape `lead + inShape`) into `dst`, times `scale`.
    func reduce(_ node: Graph.Node, axes: [Int], scale: Float, lead: [Int],
                src: UnsafePointer<Float>, dst: UnsafeMutablePointer<Float>) {
        let inShape = lead + graph.values[node.inputs[0]].shape
        let ax = Set(axes.map { ($0 < 0 ? $0 + inShape.count - lead.count : $0) + lead.count })
        let kept = inShape.enumerated().map { ax.contains($0.offset) ? 1 : $0.element }
        dst.update(repeating: 0, count: kept.elementCount)
        Strided.apply(.scale(scale), shape: inShape, dst: dst,
                      dstStrides: Strided.strides(of: kept, broadcastTo: inShape), accumulate: true,
                      StridedOperand(pointer: src, strides: Strided.strides(of: inShape, broadcastTo: inShape)))
    }

}

// MARK: ONNX import

extension ONNXImporter {
    /// ReduceMean/ReduceSum over per-sample axes; axes from the attribute
    /// (ReduceSum from opset 13 and the others from 18 take input 1).
    /// ReduceSumSquare is the sum of x·x, ReduceL2 its square root
    /// (F.normalize's norm).
    mutating func reduce(_ n: Node) throws {
        let axesAsInput = n.opType == "ReduceSum" ? opset >= 13 : opset >= 18
        let axes: [Int64]? = axesAsInput
            ? (n.inputs.count > 1 && !n.inputs[1].isEmpty ? try knownInts(n, 1, "axes") : nil)
            : ints(n, "axes")
        let keep = try int(n, "keepdims", 1) != 0
        guard case .batched(let x, let a) = try input(n, 0) else { throw unsupported(n, "a reduction of constants") }
        guard let axes, !axes.isEmpty else {
            if try int(n, "noop_with_empty_axes", 0) != 0 { try set(n, .batched(x, batchAxis: a)); return }
            throw unsupported(n, "a reduction over all axes (including the batch)")
        }
        let rank = onnxRank(x, a)
        let sampleAxes = try axes.map { try sampleAxis(n, $0, rank: rank, batchAxis: a) }
        let op: Operation = n.opType == "ReduceMean" ? .reduceMean(axes: sampleAxes, keepDims: keep) : .reduceSum(axes: sampleAxes, keepDims: keep)
        switch n.opType {
        case "ReduceSumSquare", "ReduceL2":
            let squares = try builder.apply(.unary(.square), [x], name: currentNode + "/square")
            let sum = try builder.apply(op, [squares], name: n.opType == "ReduceL2" ? currentNode + "/sum" : currentNode)
            let y = n.opType == "ReduceL2" ? try builder.apply(.unary(.sqrt), [sum], name: currentNode) : sum
            try set(n, .batched(y, batchAxis: a))
        default:
            try set(n, .batched(try builder.apply(op, [x], name: currentNode), batchAxis: a))
        }
    }
}
