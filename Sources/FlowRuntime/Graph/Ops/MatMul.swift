import CKernels

/// Batched matrix product of two batched values (attention's Q·Kᵀ and P·V):
/// per sample, A `[..., M, K]` · B `[..., K, N]` → `[..., M, N]`, the
/// leading axes broadcast (numpy `matmul` rules). `transposeB` reads B as
/// `[..., N, K]` (so Q·Kᵀ needs no Transpose node).
///
/// JVP: Ȧ B + A Ḃ. VJP: g_A += g Bᵀ, g_B += Aᵀ g (summed over broadcast axes).
/// A MatMul with a constant 2-D right operand imports as `Linear` instead.
struct MatMulOp: GraphOp {
    var transposeB: Bool = false

    var kindName: String { "MatMul" }

    /// (leading shape, M, K, N) and the two operands' leading shapes.
    struct Geometry {
        var lead: [Int], m: Int, k: Int, n: Int
        var leadA: [Int], leadB: [Int]
    }

    func geometry(_ a: [Int], _ b: [Int]) -> Geometry? {
        guard a.count >= 2, b.count >= 2 else { return nil }
        let m = a[a.count - 2], k = a[a.count - 1]
        let (kb, n) = transposeB ? (b[b.count - 1], b[b.count - 2]) : (b[b.count - 2], b[b.count - 1])
        guard k == kb else { return nil }
        let la = Array(a.dropLast(2)), lb = Array(b.dropLast(2))
        guard let lead = ShapeInference.broadcast(la, lb) else { return nil }
        return Geometry(lead: lead, m: m, k: k, n: n, leadA: la, leadB: lb)
    }

    func outputShape(_ inputs: [Graph.Value], node: String) throws -> [Int] {
        guard inputs.count == 2 else { throw FlowError.invalidModel("node '\(node)': MatMul takes 2 inputs") }
        guard inputs[0].isBatched, inputs[1].isBatched else {
            throw FlowError.unsupported("node '\(node)': MatMul of a batched value with a constant of rank > 2")
        }
        guard let g = geometry(inputs[0].shape, inputs[1].shape) else {
            throw FlowError.shapeMismatch("node '\(node)': MatMul of \(inputs[0].shape) and \(inputs[1].shape)\(transposeB ? "ᵀ" : "")")
        }
        return g.lead + [g.m, g.n]
    }

    func flops(_ inputs: [Graph.Value], output: Graph.Value) -> Int {
        guard let g = geometry(inputs[0].shape, inputs[1].shape) else { return 0 }
        return 2 * g.lead.reduce(1, *) * g.m * g.n * g.k
    }

    /// A node's geometry and its matrices' offsets in A, B and C per sample,
    /// in row-major order of the output (the leading axes broadcast); made
    /// once per node (`OpContext.staticPlan`).
    final class Matrices {
        let g: Geometry
        /// (A, B, C) offsets in floats, three per matrix.
        let offsets: [Int]

        init(_ g: Geometry) {
            self.g = g
            let count = g.lead.reduce(1, *)
            let sa = Strided.strides(of: g.leadA, broadcastTo: g.lead)
            let sb = Strided.strides(of: g.leadB, broadcastTo: g.lead)
            let sizeA = g.m * g.k, sizeB = g.k * g.n, sizeC = g.m * g.n
            var index = [Int](repeating: 0, count: g.lead.count), offsets: [Int] = []
            offsets.reserveCapacity(3 * count)
            for i in 0..<count {
                var oa = 0, ob = 0
                for (d, e) in index.enumerated() { oa += e * sa[d]; ob += e * sb[d] }
                offsets += [oa * sizeA, ob * sizeB, i * sizeC]
                var d = g.lead.count - 1
                while d >= 0 { index[d] += 1; if index[d] < g.lead[d] { break }; index[d] = 0; d -= 1 }
            }
            self.offsets = offsets
        }
    }

    private func matrices(_ c: OpContext) -> Matrices {
        c.staticPlan { Matrices(geometry(c.shape(0), c.shape(1))!) }
    }

    /// Calls `body(aOffset, bOffset, cOffset)` for every matrix of a sample.
    private func forEachMatrix(_ p: Matrices, _ body: (Int, Int, Int) -> Void) {
        p.offsets.withUnsafeBufferPointer { o in
            for i in stride(from: 0, to: o.count, by: 3) { body(o[i], o[i + 1], o[i + 2]) }
        }
    }

    /// C (=, or += with `accumulate`) A·B' for every sample `s` and matrix,
    /// where `a(s)`, `b(s)`, `c(s)` give each sample's base pointers.
    private func multiply(_ c: OpContext, _ p: Matrices, samples: Int, accumulate: Bool,
                          a: (Int) -> UnsafePointer<Float>, b: (Int) -> UnsafePointer<Float>,
                          c out: (Int) -> UnsafeMutablePointer<Float>) {
        let g = p.g
        let scratch = c.scratch(fr_gemm_scratch_floats(g.m, g.n, g.k))
        for s in 0..<samples {
            let pa = a(s), pb = b(s), pc = out(s)
            forEachMatrix(p) { oa, ob, oc in
                fr_gemm(0, transposeB ? 1 : 0, g.m, g.n, g.k, pa + oa, g.k, pb + ob, transposeB ? g.k : g.n,
                        accumulate ? 1 : 0, pc + oc, g.n, scratch)
            }
        }
    }

    func forward(_ c: OpContext) {
        let p = matrices(c)
        let (sa, sb, so) = (c.size(0), c.size(1), c.outputSize)
        let a = c.input(0), b = c.input(1), out = c.out
        if runsBF16(c, p.g) {
            multiplyBF16(c, p, a: { UnsafePointer(a + $0 * sa) }, b: { UnsafePointer(b + $0 * sb) }, c: { out + $0 * so })
            return
        }
        multiply(c, p, samples: c.batch, accumulate: false,
                 a: { UnsafePointer(a + $0 * sa) }, b: { UnsafePointer(b + $0 * sb) }, c: { out + $0 * so })
    }

    /// Under `Precision.bf16` (and AVX512_BF16), products of two computed
    /// operands — attention's Q·Kᵀ and P·V — with K and N at least
    /// `Precision.bf16MinimumWidth` run in bf16 like wide Linear layers:
    /// B is rounded and packed per matrix (O(K·N), against the product's
    /// O(M·K·N)), A per block of rows, float32 accumulation. Narrow heads
    /// (diffusers' 8 heads of 8 channels) stay float32. Forward only: the
    /// JVP has two terms to accumulate and stays float32.
    private func runsBF16(_ c: OpContext, _ g: Geometry) -> Bool {
        c.executor.precision == .bf16 && Precision.bf16Available && g.k >= Precision.bf16MinimumWidth
            && g.n >= Precision.bf16MinimumWidth && g.m > 0
    }

    private func multiplyBF16(_ c: OpContext, _ p: Matrices, a: (Int) -> UnsafePointer<Float>,
                              b: (Int) -> UnsafePointer<Float>, c out: (Int) -> UnsafeMutablePointer<Float>) {
        let g = p.g
        let packedCount = fr_bf16_packed_count(g.n, g.k)
        let packed = UnsafeMutableRawPointer(c.scratch2((packedCount + 1) / 2 + 16))
            .alignedUp(toMultipleOf: 64).bindMemory(to: UInt16.self, capacity: packedCount)
        let scratch = c.scratchBytes(fr_gemm_bf16_scratch_bytes(g.k))
        for s in 0..<c.batch {
            let pa = a(s), pb = b(s), pc = out(s)
            forEachMatrix(p) { oa, ob, oc in
                // B stored [N, K] (transposeB) is W's [out, in]; B [K, N] is [in, out].
                fr_pack_weights_bf16(pb + ob, transposeB ? 0 : 1, packed, g.n, g.k)
                fr_gemm_bf16(pa + oa, packed, nil, pc + oc, g.m, g.n, g.k, scratch, Int32(FR_IDENTITY.rawValue), 0, 0)
            }
        }
    }

    func jvp(_ c: OpContext) {
        let p = matrices(c)
        let (sa, sb, so, k) = (c.size(0), c.size(1), c.outputSize, c.k)
        let a = c.input(0), b = c.input(1), out = c.out
        out.update(repeating: 0, count: c.batch * k * so)
        // Tangent row r = sample·k + j pairs with primal sample r / k.
        if let ta = c.tangent(0) {
            multiply(c, p, samples: c.batch * k, accumulate: true,
                     a: { UnsafePointer(ta + $0 * sa) }, b: { UnsafePointer(b + ($0 / k) * sb) }, c: { out + $0 * so })
        }
        if let tb = c.tangent(1) {
            multiply(c, p, samples: c.batch * k, accumulate: true,
                     a: { UnsafePointer(a + ($0 / k) * sa) }, b: { UnsafePointer(tb + $0 * sb) }, c: { out + $0 * so })
        }
    }

    func vjp(_ c: OpContext) {
        let p = matrices(c), g = p.g
        let (sa, sb, so) = (c.size(0), c.size(1), c.outputSize)
        let a = c.input(0), b = c.input(1), gy = c.out
        let ga = c.gradient(0), gb = c.gradient(1)
        let scratch = c.scratch(Swift.max(fr_gemm_scratch_floats(g.m, g.k, g.n), fr_gemm_scratch_floats(g.k, g.n, g.m),
                                          fr_gemm_scratch_floats(g.n, g.k, g.m)))
        for s in 0..<c.batch {
            let pa = a + s * sa, pb = b + s * sb, pg = gy + s * so
            forEachMatrix(p) { oa, ob, oc in
                if let ga {
                    // g_A [M, K] += g [M, N] · B'ᵀ: B' = B [K, N] → transB; B' = Bᵀ (B stored [N, K]) → B as is.
                    fr_gemm(0, transposeB ? 0 : 1, g.m, g.k, g.n, pg + oc, g.n, pb + ob, transposeB ? g.k : g.n,
                            1, ga + s * sa + oa, g.k, scratch)
                }
                if let gb {
                    if transposeB {  // B stored [N, K]: g_B += gᵀ A
                        fr_gemm(1, 0, g.n, g.k, g.m, pg + oc, g.n, pa + oa, g.k, 1, gb + s * sb + ob, g.k, scratch)
                    } else {         // g_B [K, N] += Aᵀ g
                        fr_gemm(1, 0, g.k, g.n, g.m, pa + oa, g.k, pg + oc, g.n, 1, gb + s * sb + ob, g.n, scratch)
                    }
                }
            }
        }
    }

    func exportONNX(_ e: inout ONNXExporter, _ n: Graph.Node) throws {
        var b = e.name(n.inputs[1])
        if transposeB {
            let r = e.graph.values[n.inputs[1]].shape.count + 1
            var perm = (0..<Int64(r)).map { $0 }
            perm.swapAt(r - 1, r - 2)
            let t = e.fresh(b + "/T")
            e.node("Transpose", [b], t, ["perm": .ints(perm)])
            b = t
        }
        e.node("MatMul", [e.name(n.inputs[0]), b], e.name(n.output))
    }

    static var onnxImports: [String: ONNXImportRule] {
        ["MatMul": { i, n, index in try i.matMul(n, index: index) },
         "Einsum": { i, n, _ in try i.einsum(n) },
         // Opset 23 Attention: MatMul, Softmax, MatMul (ONNXImporter+Attention.swift).
         "Attention": { i, n, _ in try i.attention(n) }]
    }
}

extension Operation {
    /// Per-sample batched matrix product of two batched values.
    public static func matMul(transposeB: Bool = false) -> Operation { Operation(MatMulOp(transposeB: transposeB)) }
}

// MARK: ONNX import

extension ONNXImporter {
    /// MatMul: with a constant 2-D right operand, a Linear layer (fused with
    /// a following bias Add); with two batched operands, a batched MatMul.
    mutating func matMul(_ n: Node, index: Int) throws {
        let lhs = try input(n, 0), rhs = try input(n, 1)
        switch (lhs, rhs) {
        case (.batched(let a, true), .float(let w, let trainable)) where w.rank == 2:
            try emitLinear(n, index: index, x: a, weight: w, trainable: trainable, transposed: false, bias: nil)
        case (.batched, .batched):
            var (ids, axis) = try aligned(n, [lhs, rhs])
            var transposeB = false
            if let (k, c) = scaledTranspose(ids[1]) {
                // (Kᵀ·c) read as K·c transposed: the same products in the same
                // order, without the transposed copy of K.
                let scaled = try builder.apply(.binary(.mul), [k, c], name: currentNode + "/scaled_b")
                if let m = mergedAxes[ids[1]] { mergedAxes[scaled] = m }
                ids[1] = scaled
                transposeB = true
            }
            let y = try builder.apply(.matMul(transposeB: transposeB), ids, name: currentNode)
            try propagateMerge(n, from: ids, to: y)
            try set(n, .batched(y, batchAxis: axis))
        case (.float, .float):
            throw unsupported(n, "MatMul of two constants")
        default:
            throw unsupported(n, "MatMul of these operands (a batched value times a constant of rank \(constantShape(rhs)?.count ?? 0), or a constant times a batched value)")
        }
    }
}

extension ONNXImporter {
    /// (K, c) when batched value `b` is Kᵀ·c: a Mul by a scalar constant c of
    /// a Transpose swapping the last two axes of K, with only same-shape
    /// Reshapes between them (the dynamo export's SDPA scales Q and Kᵀ by
    /// √scale each, after transposing K). Multiplying by a scalar commutes
    /// with the transpose element for element, so MatMul(A, K·c, transposeB)
    /// has the values of MatMul(A, Kᵀ·c). The unread Transpose is pruned.
    func scaledTranspose(_ b: ValueID) -> (ValueID, ValueID)? {
        let g = builder.graph
        func producer(_ v: ValueID) -> Graph.Node? {
            if case .node(let i) = g.values[v].source { return g.nodes[i] }
            return nil
        }
        /// Through Reshapes that keep the shape.
        func skipReshapes(_ v: ValueID) -> ValueID {
            var v = v
            while let p = producer(v), p.operation.as(ReshapeOp.self) != nil, g.values[p.inputs[0]].shape == g.values[v].shape {
                v = p.inputs[0]
            }
            return v
        }
        guard batchPositions[b] == nil, let mul = producer(b), mul.operation.as(BinaryOp.self)?.function == .mul,
              mul.inputs.count == 2 else { return nil }
        for (ui, ci) in [(0, 1), (1, 0)] {
            let c = mul.inputs[ci]
            guard !g.values[c].isBatched, g.values[c].shape.elementCount == 1, g.values[c].shape.count <= 1,
                  let t = producer(skipReshapes(mul.inputs[ui])), let tr = t.operation.as(TransposeOp.self) else { continue }
            let r = tr.perm.count
            guard r >= 2, tr.perm == Array(0..<(r - 2)) + [r - 1, r - 2], (mergedAxes[b] ?? 0) <= r - 2 else { continue }
            let k = skipReshapes(t.inputs[0])
            guard g.values[k].isBatched, batchPositions[k] == nil, mergedAxes[k] == mergedAxes[b],
                  g.values[k].shape == g.values[t.inputs[0]].shape else { continue }
            return (k, c)
        }
        return nil
    }

    /// Einsum of one batched operand (a transpose) or two (a batched
    /// MatMul between transposes and reshapes): batch letters (in both
    /// operands and the output), contracted letters (both operands only),
    /// left and right free letters. The ONNX batch axis must be the first
    /// letter of every operand and of the output.
    mutating func einsum(_ n: Node) throws {
        guard let eq = n.attributes["equation"]?.s?.filter({ !$0.isWhitespace }) else { throw invalid(n, "missing equation") }
        guard !eq.contains(".") else { throw unsupported(n, "Einsum with an ellipsis ('\(eq)')") }
        let chars = Array(eq)
        let arrow = (0..<Swift.max(0, chars.count - 1)).first { chars[$0] == "-" && chars[$0 + 1] == ">" }
        let sides: [[Character]] = arrow.map { [Array(chars[..<$0]), Array(chars[($0 + 2)...])] } ?? [chars]
        var operands: [[Character]] = sides[0].split(separator: ",", omittingEmptySubsequences: false).map { Array($0) }
        var output: [Character]
        if sides.count == 2 { output = sides[1] } else {
            let all = operands.flatMap { $0 }
            output = Set(all).filter { c in all.filter { $0 == c }.count == 1 }.sorted()
        }
        guard operands.count == n.inputs.count, (1...2).contains(operands.count), sides.count <= 2 else {
            throw unsupported(n, "Einsum '\(eq)' with \(n.inputs.count) operands")
        }
        // Operands whose batch axis merges m per-sample axes (heads folded
        // into the batch, `mergedAxes`): those axes get m letters of their
        // own after the batch letter, in every operand and the output.
        let merges = Set(try (0..<operands.count).map { k -> Int in
            guard case .batched(let id, true) = try input(n, k) else { return 0 }
            return mergedAxes[id] ?? 0
        })
        guard merges.count == 1, let merged = merges.first else { throw unsupported(n, "Einsum '\(eq)' of operands with different batch merges") }
        if merged > 0 {
            let fresh = (0..<merged).map { Character(UnicodeScalar(0x3B1 + $0)!) }  // α, β, … (not in any equation)
            operands = operands.map { $0.isEmpty ? $0 : [$0[0]] + fresh + $0.dropFirst() }
            if !output.isEmpty { output = [output[0]] + fresh + output.dropFirst() }
        }
        var ids: [ValueID] = []
        for (k, letters) in operands.enumerated() {
            guard case .batched(let id, true) = try input(n, k) else { throw unsupported(n, "Einsum '\(eq)' of a constant operand") }
            guard letters.count == builder.shape(of: id).count + 1, Set(letters).count == letters.count else {
                throw unsupported(n, "Einsum '\(eq)': operand \(k) has shape \(builder.shape(of: id)) or repeated letters")
            }
            ids.append(id)
        }
        let batchLetter = operands[0][0]
        guard operands.allSatisfy({ $0.first == batchLetter }), output.first == batchLetter else {
            throw unsupported(n, "Einsum '\(eq)' whose first letters are not the batch axis of every operand and the output")
        }
        output.removeFirst()
        let letters: [[Character]] = operands.map { Array($0.dropFirst()) }
        var extent: [Character: Int] = [:]
        for (k, l) in letters.enumerated() {
            for (d, c) in l.enumerated() {
                let e = builder.shape(of: ids[k])[d]
                if let seen = extent[c], seen != e { throw FlowError.shapeMismatch("node '\(currentNode)': letter \(c) has extents \(seen) and \(e)") }
                extent[c] = e
            }
        }
        func permute(_ id: ValueID, from: [Character], to: [Character]) throws -> ValueID {
            guard from != to else { return id }
            let op = try TransposeOp(perm: to.map { from.firstIndex(of: $0)! }, inputShape: builder.shape(of: id), node: currentNode)
            return try builder.apply(Operation(op), [id], name: currentNode + "/transpose")
        }
        func reshape(_ id: ValueID, _ shape: [Int]) throws -> ValueID {
            builder.shape(of: id) == shape ? id : try builder.apply(.reshape(shape: shape), [id], name: currentNode + "/reshape")
        }
        if letters.count == 1 {
            guard Set(output) == Set(letters[0]), output.count == letters[0].count else {
                throw unsupported(n, "Einsum '\(eq)': a one-operand form other than a transpose")
            }
            let y = try permute(ids[0], from: letters[0], to: output)
            if merged > 0 { mergedAxes[y] = merged }
            try set(n, .batched(y, batchAxis: true))
            return
        }
        let a: [Character] = letters[0], b: [Character] = letters[1]
        let both: [Character] = a + b, shared: [Character] = a.filter { b.contains($0) }
        guard Set(output).isSubset(of: Set(both)), Set(both).isSubset(of: Set(output + shared)) else {
            throw unsupported(n, "Einsum '\(eq)': a letter summed within one operand")
        }
        let batch: [Character] = output.filter { a.contains($0) && b.contains($0) }
        let contracted: [Character] = a.filter { b.contains($0) && !output.contains($0) }
        let left: [Character] = output.filter { a.contains($0) && !b.contains($0) }
        let right: [Character] = output.filter { b.contains($0) && !a.contains($0) }
        func size(_ l: [Character]) -> Int { l.reduce(1) { $0 * extent[$1]! } }
        let lead = batch.map { extent[$0]! }
        let (m, k, nn) = (size(left), size(contracted), size(right))
        let orderA: [Character] = batch + left + contracted
        let orderBT: [Character] = batch + right + contracted, orderB: [Character] = batch + contracted + right
        let pa = try reshape(try permute(ids[0], from: a, to: orderA), lead + [m, k])
        let transposeB = b == orderBT
        let pb = try reshape(try permute(ids[1], from: b, to: transposeB ? b : orderB),
                             lead + (transposeB ? [nn, k] : [k, nn]))
        var y = try builder.apply(.matMul(transposeB: transposeB), [pa, pb], name: currentNode)
        let resultShape: [Int] = lead + left.map { extent[$0]! } + right.map { extent[$0]! }
        y = try reshape(y, resultShape)
        let resultOrder: [Character] = batch + left + right
        y = try permute(y, from: resultOrder, to: output)
        if merged > 0 { mergedAxes[y] = merged }
        try set(n, .batched(y, batchAxis: true))
    }
}
