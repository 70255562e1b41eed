/// Slice (and Split, which imports as one Slice per output): per-sample
/// `starts`, `steps` and the output `shape`, one entry per axis; element o
/// of axis d reads input index starts[d] + o · steps[d]. Runs as an index map.
struct SliceOp: IndexMappingOp {
    var starts: [Int], steps: [Int], shape: [Int]
    let map: IndexMap

    init(starts: [Int], steps: [Int], shape: [Int], inputShape: [Int], node: String) throws {
        guard starts.count == inputShape.count, steps.count == starts.count, shape.count == starts.count else {
            throw FlowError.shapeMismatch("node '\(node)': slice of rank \(starts.count) for input \(inputShape)")
        }
        for d in 0..<shape.count where shape[d] > 0 {
            let last = starts[d] + (shape[d] - 1) * steps[d]
            guard steps[d] != 0, (0..<inputShape[d]).contains(starts[d]), (0..<inputShape[d]).contains(last) else {
                throw FlowError.shapeMismatch("node '\(node)': slice out of range on axis \(d) of \(inputShape)")
            }
        }
        (self.starts, self.steps, self.shape) = (starts, steps, shape)
        map = try IndexMap.build(outShape: shape, inShape: inputShape, node: node) { o in
            (0..<o.count).map { starts[$0] + o[$0] * steps[$0] }
        }
    }

    var kindName: String { "Slice" }

    func outputShape(_ inputs: [Graph.Value], node: String) throws -> [Int] {
        guard inputs.count == 1, inputs[0].shape.count == shape.count else {
            throw FlowError.shapeMismatch("node '\(node)': Slice of rank \(shape.count) for \(inputs.map(\.shape))")
        }
        return shape
    }

    func exportONNX(_ e: inout ONNXExporter, _ n: Graph.Node) throws {
        let out = e.name(n.output)
        // ends exclusive; a negative step that reaches index 0 needs an end below −rank.
        let ends = (0..<shape.count).map { d -> Int64 in
            let end = starts[d] + shape[d] * steps[d]
            return end < 0 ? Int64.min / 2 : Int64(end)
        }
        let s = e.int64Initializer(out + "/starts", starts.map(Int64.init))
        let t = e.int64Initializer(out + "/ends", ends)
        let a = e.int64Initializer(out + "/axes", (1...shape.count).map(Int64.init))
        let p = e.int64Initializer(out + "/steps", steps.map(Int64.init))
        e.node("Slice", [e.name(n.inputs[0]), s, t, a, p], out)
    }

    static var onnxImports: [String: ONNXImportRule] {
        ["Slice": { i, n, _ in try i.slice(n) },
         "Split": { i, n, _ in try i.split(n) }]
    }
}

extension ONNXImporter {
    /// The full ONNX shape (batch axis as extent 1) of a value, and its
    /// kind. A batch axis that merges m per-sample axes (`mergedAxes`)
    /// stands for them: they are not among the ONNX axes.
    private func sliceSource(_ v: Imported) -> (shape: [Int], batchAxis: Int?, id: ValueID?) {
        switch v {
        case .batched(let id, let a):
            var s = builder.shape(of: id)
            guard a else { return (s, nil, id) }
            if let m = mergedAxes[id] { return ([1] + s[m...], 0, id) }
            let p = batchPosition(id)
            s.insert(1, at: p)
            return (s, p, id)
        default: return (constantShape(v)!, nil, nil)
        }
    }

    /// Emits a slice of `v` (ONNX axes; batch axis untouched) as a node or a folded constant.
    private mutating func emitSlice(_ n: Node, _ v: Imported, starts: [Int], steps: [Int], shape: [Int], output: Int) throws {
        let (full, batchAt, id) = sliceSource(v)
        if let id {
            func drop(_ a: [Int]) -> [Int] {
                guard let b = batchAt else { return a }
                var r = a
                r.remove(at: b)
                return r
            }
            if let b = batchAt, starts[b] != 0 || shape[b] != 1 || steps[b] != 1 { throw unsupported(n, "slicing the batch axis") }
            // The per-sample axes a batch merge stands for are kept whole.
            let merged = Array(builder.shape(of: id)[..<(mergedAxes[id] ?? 0)])
            let ps = merged + drop(shape)
            if drop(starts).allSatisfy({ $0 == 0 }) && drop(steps).allSatisfy({ $0 == 1 }) && ps == builder.shape(of: id) {
                try set(n, v, output: output)
                return
            }
            let op = try SliceOp(starts: merged.map { _ in 0 } + drop(starts), steps: merged.map { _ in 1 } + drop(steps),
                                 shape: ps, inputShape: builder.shape(of: id), node: currentNode)
            let name = output == 0 ? currentNode : "\(currentNode):\(output)"
            let y = try builder.apply(Operation(op), [id], name: name)
            setBatchPosition(y, batchAt ?? 0)
            if !merged.isEmpty { mergedAxes[y] = merged.count }
            try set(n, .batched(y, batchAxis: batchAt != nil), output: output)
        } else {
            let op = try SliceOp(starts: starts, steps: steps, shape: shape, inputShape: full, node: currentNode)
            var out = pick(v, op.map.sources.map { Int($0) }, shape: shape)
            if case .float(_, true) = v, case .float(let u, _) = out, u.count > 1 { out = .float(u, trainable: true) }
            try set(n, out, output: output)
        }
    }

    /// Slice (opset ≥ 10: starts, ends, axes, steps as inputs; before: attributes).
    mutating func slice(_ n: Node) throws {
        let v = try input(n, 0)
        let full = sliceSource(v).shape
        let rank = full.count
        let starts: [Int64], ends: [Int64], axes: [Int64], steps: [Int64]
        if opset < 10 {
            guard let s = ints(n, "starts"), let e = ints(n, "ends") else { throw invalid(n, "missing starts/ends") }
            (starts, ends) = (s, e)
            axes = ints(n, "axes") ?? (0..<Int64(s.count)).map { $0 }
            steps = [Int64](repeating: 1, count: s.count)
        } else {
            starts = try knownInts(n, 1, "starts")
            ends = try knownEnds(n, 2)
            axes = try optionalInput(n, 3) == nil ? (0..<Int64(starts.count)).map { $0 } : try knownInts(n, 3, "axes")
            steps = try optionalInput(n, 4) == nil ? [Int64](repeating: 1, count: starts.count) : try knownInts(n, 4, "steps")
        }
        guard starts.count == ends.count, axes.count == starts.count, steps.count == starts.count else {
            throw invalid(n, "starts, ends, axes and steps differ in length")
        }
        var st = [Int](repeating: 0, count: rank), sp = [Int](repeating: 1, count: rank), shape = full
        for (i, a) in axes.enumerated() {
            let ax = Int(a < 0 ? a + Int64(rank) : a)
            guard ax >= 0 && ax < rank else { throw invalid(n, "axis \(a) out of range") }
            let dim = Int64(full[ax]), step = steps[i]
            guard step != 0 else { throw invalid(n, "step 0") }
            func clampIndex(_ x: Int64, _ lo: Int64, _ hi: Int64) -> Int64 {
                let y = x < 0 ? x + dim : x
                return Swift.min(Swift.max(y, lo), hi)
            }
            let s: Int64, e: Int64
            if step > 0 { s = clampIndex(starts[i], 0, dim); e = clampIndex(ends[i], 0, dim) }
            else { s = clampIndex(starts[i], 0, dim - 1); e = clampIndex(ends[i], -1, dim - 1) }
            let count = step > 0 ? Swift.max(0, (e - s + step - 1) / step) : Swift.max(0, (s - e + (-step) - 1) / (-step))
            st[ax] = Int(s); sp[ax] = Int(step); shape[ax] = Int(count)
        }
        guard shape.allSatisfy({ $0 > 0 }) else { throw unsupported(n, "an empty slice \(shape)") }
        try emitSlice(n, v, starts: st, steps: sp, shape: shape, output: 0)
    }

    /// `ends` may hold the batch symbol or INT64_MAX-style sentinels; the
    /// batch axis (extent 1 in `sliceSource`) then slices whole.
    private func knownEnds(_ n: Node, _ i: Int) throws -> [Int64] {
        guard case .ints(let c) = try input(n, i) else { throw unsupported(n, "ends must be an integer constant") }
        return try c.values.map { e in
            if case .batchTimes = e { throw unsupported(n, "an end of \(e)") }
            return e.value ?? 1
        }
    }

    /// Split along an axis into parts given by `split` (input from opset 13,
    /// attribute before), or `num_outputs` (opset 18), or equal parts.
    mutating func split(_ n: Node) throws {
        let v = try input(n, 0)
        let full = sliceSource(v).shape
        let a = try int(n, "axis", 0)
        let ax = Int(a < 0 ? a + Int64(full.count) : a)
        guard ax >= 0 && ax < full.count else { throw invalid(n, "axis \(a) out of range") }
        if sliceSource(v).batchAxis == ax { throw unsupported(n, "splitting the batch axis") }
        let parts = n.outputs.count
        var sizes: [Int]
        if opset >= 13, try optionalInput(n, 1) != nil {
            sizes = try knownInts(n, 1, "split").map(Int.init)
        } else if let s = ints(n, "split") {
            sizes = s.map(Int.init)
        } else {
            guard parts > 0 else { throw invalid(n, "no outputs") }
            let chunk = (full[ax] + parts - 1) / parts
            sizes = (0..<parts).map { Swift.min(chunk, Swift.max(0, full[ax] - $0 * chunk)) }
        }
        guard sizes.count == parts, sizes.reduce(0, +) == full[ax], sizes.allSatisfy({ $0 > 0 }) else {
            throw invalid(n, "split sizes \(sizes) do not cover extent \(full[ax]) in \(parts) outputs")
        }
        var offset = 0
        for (k, size) in sizes.enumerated() {
            var starts = [Int](repeating: 0, count: full.count), shape = full
            starts[ax] = offset
            shape[ax] = size
            if !n.outputs[k].isEmpty {
                try emitSlice(n, v, starts: starts, steps: [Int](repeating: 1, count: full.count), shape: shape, output: k)
            }
            offset += size
        }
    }
}
