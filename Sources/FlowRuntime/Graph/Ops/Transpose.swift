import CKernels

/// Transpose: permutes the per-sample axes (`perm[i]` is the input axis of
/// output axis i). Derivatives run as an index map (`IndexMappingOp`); the
/// forward pass and JVP copy through strides instead (`permute`).
struct TransposeOp: IndexMappingOp {
    var perm: [Int]
    let map: IndexMap
    /// How `permute` copies a sample (fixed by perm and the input shape).
    let copy: Copy

    /// With the input axes that stay adjacent merged (extent-1 axes
    /// dropped), a permutation that swaps the last two merged axes is a
    /// batch of matrix transposes (`fr_transpose`, 16 × 16 blocks:
    /// attention's [C, HW] ↔ [HW, C]); one that keeps the innermost merged
    /// axis innermost copies whole rows (`fr_permute_rows`); any other runs
    /// as a strided copy (`Strided.apply`).
    enum Copy: Equatable {
        /// `outer` matrices [a, b] → [b, a] per sample.
        case transposes(outer: Int, a: Int, b: Int)
        /// Rows of `run` floats gathered in output order: the other merged
        /// axes' extents and input strides, output order (≤ 6 of them).
        case rows(run: Int, extents: [Int], strides: [Int])
        /// The output shape and the input strides in output order.
        case strided(outShape: [Int], strides: [Int])
    }

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
        copy = Self.copy(perm: perm, inShape: inputShape)
    }

    private static func copy(perm: [Int], inShape: [Int]) -> Copy {
        // Output-ordered groups of adjacent input axes (extent-1 axes dropped).
        var groups: [[Int]] = []
        for p in perm where inShape[p] != 1 {
            if let last = groups.last?.last, let next = ((last + 1)..<inShape.count).first(where: { inShape[$0] != 1 }),
               next == p {
                groups[groups.count - 1].append(p)
            } else {
                groups.append([p])
            }
        }
        let extents = groups.map { $0.reduce(1) { $0 * inShape[$1] } }
        let inputOrder = groups.indices.sorted { groups[$0][0] < groups[$1][0] }
        let n = groups.count
        if n >= 2, inputOrder == Array(0..<(n - 2)) + [n - 1, n - 2] {
            let a = extents[n - 1], b = extents[n - 2]
            return .transposes(outer: inShape.reduce(1, *) / (a * b), a: a, b: b)
        }
        let inStrides = Strided.strides(of: inShape, broadcastTo: inShape)
        if n >= 1, n <= 7, inputOrder.last == n - 1 {
            return .rows(run: extents[n - 1], extents: Array(extents.dropLast()),
                         strides: groups.dropLast().map { inStrides[$0.last!] })
        }
        return .strided(outShape: perm.map { inShape[$0] }, strides: perm.map { inStrides[$0] })
    }

    var kindName: String { "Transpose" }

    func forward(_ c: OpContext) { permute(c, from: c.input(0), rows: c.batch) }
    func jvp(_ c: OpContext) { permute(c, from: c.tangent(0)!, rows: c.batch * c.k) }

    /// Copies `rows` samples of x into `c.out`, permuted (`copy`). Same
    /// values as the index map.
    private func permute(_ c: OpContext, from x: UnsafeMutablePointer<Float>, rows: Int) {
        let size = c.size(0), out = c.out
        switch copy {
        case .transposes(let outer, let a, let b):
            for s in 0..<(rows * outer) {
                fr_transpose(a, b, x + s * a * b, b, out + s * a * b, a)
            }
        case .rows(let run, let extents, let strides):
            // The sample axis outermost (attention's head split [T, H, D] → [H, T, D]).
            let n = extents.count + 1
            withUnsafeTemporaryAllocation(of: Int.self, capacity: 2 * n) { buffer in
                let e = buffer.baseAddress!, st = e + n
                e[0] = rows
                st[0] = size
                for i in 0..<(n - 1) { e[i + 1] = extents[i]; st[i + 1] = strides[i] }
                fr_permute_rows(x, out, n, e, st, run)
            }
        case .strided(let outShape, let strides):
            let full = [rows] + outShape
            Strided.apply(.copy, shape: full, dst: out, dstStrides: Strided.strides(of: full, broadcastTo: full),
                          accumulate: false, StridedOperand(pointer: x, strides: [size] + strides))
        }
    }

    func outputShape(_ inputs: [Graph.Value], node: String) throws -> [Int] {
        guard inputs.count == 1, inputs[0].shape.count == perm.count else {
            throw FlowError.shapeMismatch("node '\(node)': Transpose perm \(perm) for \(inputs.map(\.shape))")
        }
        return perm.map { inputs[0].shape[$0] }
    }

    func exportONNX(_ e: inout ONNXExporter, _ n: Graph.Node) throws {
        e.node("Transpose", [e.name(n.inputs[0])], e.name(n.output), ["perm": .ints([0] + perm.map { Int64($0 + 1) })])
    }

    static var onnxImports: [String: ONNXImportRule] {
        ["Transpose": { i, n, _ in try i.transpose(n) }, "DepthToSpace": { i, n, _ in try i.depthToSpace(n) }]
    }
}

extension ONNXImporter {
    /// DepthToSpace (PixelShuffle) on [C, H, W] per sample with block b:
    /// Reshape → Transpose → Reshape, DCR ([b, b, C/b², H, W], perm
    /// [2, 3, 0, 4, 1]) or CRD ([C/b², b, b, H, W], perm [0, 3, 1, 4, 2]).
    mutating func depthToSpace(_ n: Node) throws {
        guard case .batched(let x, true) = try input(n, 0), batchPosition(x) == 0, mergedAxes[x] == nil else {
            throw unsupported(n, "DepthToSpace of anything but a batched [N, C, H, W] value")
        }
        let shape = builder.shape(of: x), b = Int(try int(n, "blocksize", 0))
        guard shape.count == 3, b >= 1, shape[0] % (b * b) == 0 else {
            throw invalid(n, "blocksize \(b) for a sample of shape \(shape)")
        }
        let (c, h, w) = (shape[0] / (b * b), shape[1], shape[2])
        let mode = n.attributes["mode"]?.s ?? "DCR"
        let split: [Int], perm: [Int]
        switch mode {
        case "DCR": (split, perm) = ([b, b, c, h, w], [2, 3, 0, 4, 1])
        case "CRD": (split, perm) = ([c, b, b, h, w], [0, 3, 1, 4, 2])
        default: throw unsupported(n, "mode '\(mode)'")
        }
        let blocks = try builder.apply(.reshape(shape: split), [x], name: currentNode + "/blocks")
        let op = try TransposeOp(perm: perm, inputShape: split, node: currentNode)
        let moved = try builder.apply(Operation(op), [blocks], name: currentNode + "/transpose")
        try set(n, .batched(try builder.apply(.reshape(shape: [c, h * b, w * b]), [moved], name: currentNode), batchAxis: true))
    }

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
