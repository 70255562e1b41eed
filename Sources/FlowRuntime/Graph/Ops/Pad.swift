/// Pad: per-sample `before`/`after` amounts per axis, mode constant (with
/// `value`), reflect or edge. Runs as an index map (padding in constant mode
/// has no source: `value` forward, 0 in the JVP and VJP).
struct PadOp: IndexMappingOp {
    enum Mode: String, Sendable { case constant, reflect, edge }
    var before: [Int], after: [Int]
    var mode: Mode
    var value: Float
    let map: IndexMap

    init(before: [Int], after: [Int], mode: Mode, value: Float, inputShape: [Int], node: String) throws {
        guard before.count == inputShape.count, after.count == before.count,
              zip(before, after).allSatisfy({ $0 >= 0 && $1 >= 0 }) else {
            throw FlowError.unsupported("node '\(node)': pads \(before) \(after) for \(inputShape) (negative pads are not supported)")
        }
        if mode == .reflect, zip(inputShape, zip(before, after)).contains(where: { $0 < 2 && ($1.0 > 0 || $1.1 > 0) || $1.0 >= $0 || $1.1 >= $0 }) {
            throw FlowError.shapeMismatch("node '\(node)': reflect pads \(before) \(after) need larger extents than \(inputShape)")
        }
        (self.before, self.after, self.mode, self.value) = (before, after, mode, value)
        let outShape = (0..<inputShape.count).map { inputShape[$0] + before[$0] + after[$0] }
        map = try IndexMap.build(outShape: outShape, inShape: inputShape, node: node) { o in
            var i = [Int](repeating: 0, count: o.count)
            for d in 0..<o.count {
                var j = o[d] - before[d]
                let n = inputShape[d]
                if j < 0 || j >= n {
                    switch mode {
                    case .constant: return nil
                    case .edge: j = Swift.min(Swift.max(j, 0), n - 1)
                    case .reflect: j = j < 0 ? -j : 2 * (n - 1) - j
                    }
                }
                i[d] = j
            }
            return i
        }
    }

    var fill: Float { value }
    var kindName: String { "Pad" }

    func outputShape(_ inputs: [Graph.Value], node: String) throws -> [Int] {
        guard inputs.count == 1, inputs[0].shape.count == before.count else {
            throw FlowError.shapeMismatch("node '\(node)': Pad of rank \(before.count) for \(inputs.map(\.shape))")
        }
        return (0..<before.count).map { inputs[0].shape[$0] + before[$0] + after[$0] }
    }

    func exportONNX(_ e: inout ONNXExporter, _ n: Graph.Node) throws {
        let out = e.name(n.output)
        let pads = e.int64Initializer(out + "/pads", ([0] + before + [0] + after).map(Int64.init))
        var inputs = [e.name(n.inputs[0]), pads]
        if mode == .constant { inputs.append(e.scalar(value)) }
        e.node("Pad", inputs, out, ["mode": .string(mode.rawValue)])
    }

    static var onnxImports: [String: ONNXImportRule] { ["Pad": { i, n, _ in try i.pad(n) }] }
}

extension ONNXImporter {
    /// Pad: pads from the attribute (opset < 11) or input 1, constant value
    /// from input 2, optional axes (input 3, opset 18).
    mutating func pad(_ n: Node) throws {
        guard case .batched(let id, let batchAxis) = try input(n, 0) else { throw unsupported(n, "padding a constant") }
        let shape = builder.shape(of: id)
        let rank = shape.count + (batchAxis ? 1 : 0)
        let modeName = n.attributes["mode"]?.s ?? "constant"
        guard let mode = PadOp.Mode(rawValue: modeName) else { throw unsupported(n, "mode '\(modeName)'") }
        var pads: [Int64]
        var value: Float = 0
        if opset < 11 {
            guard let p = ints(n, "pads") else { throw invalid(n, "missing pads") }
            pads = p
            value = try float(n, "value", 0)
        } else {
            pads = try knownInts(n, 1, "pads")
            if try optionalInput(n, 2) != nil {
                let c = try floatConstant(n, 2, "constant_value")
                guard c.count == 1 else { throw unsupported(n, "a constant_value with \(c.count) elements") }
                value = c.scalars[0]
            }
        }
        var axes = Array(0..<rank)
        if opset >= 18, try optionalInput(n, 3) != nil {
            axes = try knownInts(n, 3, "axes").map { Int($0 < 0 ? $0 + Int64(rank) : $0) }
        }
        guard pads.count == 2 * axes.count, axes.allSatisfy({ $0 >= 0 && $0 < rank }) else {
            throw invalid(n, "pads \(pads) for axes \(axes) of rank \(rank)")
        }
        var before = [Int](repeating: 0, count: rank), after = before
        for (i, a) in axes.enumerated() {
            before[a] = Int(pads[i])
            after[a] = Int(pads[i + axes.count])
        }
        if batchAxis {
            guard before[0] == 0 && after[0] == 0 else { throw unsupported(n, "padding the batch axis") }
            before.removeFirst(); after.removeFirst()
        }
        if before.allSatisfy({ $0 == 0 }) && after.allSatisfy({ $0 == 0 }) { try set(n, .batched(id, batchAxis: batchAxis)); return }
        let op = try PadOp(before: before, after: after, mode: mode, value: value, inputShape: shape, node: currentNode)
        try set(n, .batched(try builder.apply(Operation(op), [id], name: currentNode), batchAxis: batchAxis))
    }
}
