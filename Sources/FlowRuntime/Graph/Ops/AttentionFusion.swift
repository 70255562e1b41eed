import CKernels

/// Attention as the importer leaves it, S = A₁·B₁' → P = softmax(S) along
/// the last axis → Y = P·B₂' (three nodes), run by inference passes as one
/// computation over blocks of query rows: K' packed once per matrix
/// (`fr_gemm_pack_b`; V' too unless P·V reads it in place), then per block
/// of query rows, S's rows (`fr_gemm_prepacked`), their softmax, and Y's
/// rows, while the block (rows × keys floats) is still in cache. S and P
/// are never stored whole: at 784 tokens one S is 2.4 MB per head, and
/// writing it, reading it three times for the softmax and once more for P·V
/// was a fifth of a torchcfm U-Net's time. With ≤ 256 keys, query rows go
/// 32 or 16 at a time key-major (`fr_attention_key_major`: the queries in
/// vector lanes, so a DiT's 49 keys fill whole vectors and the softmax
/// needs no horizontal reductions); the rows past the last 16 of a matrix
/// take the row form.
///
/// Same values as the three nodes, bit for bit: `fr_gemm` (and
/// `fr_gemm_prepacked`, its blocks) computes each row of C from that row of
/// A alone in a fixed order (the k blocking does not depend on m), the
/// softmax is per row, and the key-major form takes the same operations in
/// the same order per row (ckernels.h). Recorded passes (derivatives)
/// run the three nodes, since their caches need S and P.
///
/// Operands read in place (`Operand`): where Q, K or V is a Reshape,
/// Transpose or Slice (and at most one Mul by a one-element constant) of a
/// value computed earlier — a transformer's fused qkv projection split into
/// heads: Reshape → Transpose → three Slices → the √scale Muls — and every
/// matrix of it is rows of contiguous floats in that value, the chain reads
/// that value with a row stride and the copying nodes do not run (when no
/// other node reads them). Likewise Y is written straight into the layout
/// of a Transpose that is Y's only reader (heads merged back). Same values:
/// the constant multiplies each element as the Mul node did (Q per block of
/// rows, K per matrix), and the copies only moved values.
struct AttentionFusion {
    /// The nodes: Q·Kᵀ, softmax, P·V.
    let scores: Int, softmax: Int, product: Int
    /// Q, K (as B₁) and V (as B₂).
    let q: Operand, k: Operand, v: Operand
    /// Where Y goes: `output` is the value the chain produces (P·V's output,
    /// or the Transpose of it written in place).
    let output: ValueID, y: Operand
    /// Nodes that no inference pass runs: the softmax, P·V and the view
    /// nodes the operands replace.
    let away: [Int]

    /// A matrix operand [lead…, rows, cols] of the chain in a value `base`
    /// computed earlier: per sample, matrix m's element (i, j) is
    /// `base[offsets[m] + i·rowStride + j]`, times parameter `scale` if any.
    struct Operand {
        let base: ValueID
        let offsets: [Int]
        let rowStride: Int
        let scale: ValueID?
        /// The view and scale nodes between `base` and the operand.
        let nodes: [Int]
    }

    /// Query rows per block: the block of S stays within ~128 KiB.
    static let blockFloats = 32768
    /// The chain that starts at node `n`, if `n` starts one that can run
    /// fused: the softmax over the last axis of S, S and P read only by the
    /// next node of the chain and not the graph output, no broadcast leading
    /// axes, and P·V's right operand computed before Q·Kᵀ (the fused chain
    /// runs at node `n`).
    /// `skipped`: nodes earlier chains skip (never traced through: the Y
    /// Transpose of one has its output written, its input never); `pinned`:
    /// the values earlier chains read in place (kept, as if read by a node).
    static func starting(at n: Int, in graph: Graph, readers: [Int], skipped: [Bool],
                         pinned: Set<ValueID>) -> AttentionFusion? {
        let nodes = graph.nodes
        guard let first = nodes[n].operation.as(MatMulOp.self) else { return nil }
        let s = nodes[n].output
        guard readers[s] == 1, s != graph.output,
              let sm = nodes.indices[(n + 1)...].first(where: { nodes[$0].inputs.contains(s) }),
              let softmax = nodes[sm].operation.as(SoftmaxOp.self) else { return nil }
        let p = nodes[sm].output, rank = graph.values[s].shape.count
        let axis = softmax.axis < 0 ? softmax.axis + rank : softmax.axis
        guard axis == rank - 1, readers[p] == 1, p != graph.output,
              let pv = nodes.indices[(sm + 1)...].first(where: { nodes[$0].inputs.contains(p) }),
              let second = nodes[pv].operation.as(MatMulOp.self), nodes[pv].inputs[0] == p,
              nodes[pv].inputs[1] != p else { return nil }
        let shape = { (v: ValueID) in graph.values[v].shape }
        guard let g1 = first.geometry(shape(nodes[n].inputs[0]), shape(nodes[n].inputs[1])),
              let g2 = second.geometry(shape(p), shape(nodes[pv].inputs[1])),
              g1.leadA == g1.lead, g1.leadB == g1.lead, g2.leadA == g2.lead, g2.leadB == g2.lead,
              g1.lead == g2.lead, g2.m == g1.m, g2.k == g1.n else { return nil }
        func computedBefore(_ v: ValueID) -> Bool {
            switch graph.values[v].source {
            case .node(let producer): return producer < n
            case .inputX, .inputT, .inputContext: return true
            case .parameter: return false
            }
        }
        guard computedBefore(nodes[pv].inputs[1]) else { return nil }
        let matrices = g1.lead.reduce(1, *)
        let q = Operand.tracing(nodes[n].inputs[0], matrices: matrices, rows: g1.m, cols: g1.k, in: graph,
                                before: n, skipped: skipped)
        let k = Operand.tracing(nodes[n].inputs[1], matrices: matrices, rows: first.transposeB ? g1.n : g1.k,
                                cols: first.transposeB ? g1.k : g1.n, in: graph, before: n, skipped: skipped)
        let v = Operand.tracing(nodes[pv].inputs[1], matrices: matrices, rows: second.transposeB ? g2.n : g2.k,
                                cols: second.transposeB ? g2.k : g2.n, in: graph, before: n, skipped: skipped)
        /// Where each input element of a permutation goes.
        func inverse(_ sources: [Int32]) -> [Int] {
            var inv = [Int](repeating: -1, count: sources.count)
            for (t, e) in sources.enumerated() where e >= 0 && Int(e) < inv.count { inv[Int(e)] = t }
            return inv
        }
        // Y [lead, M, N] into the output of a Transpose that is its only reader.
        var output = nodes[pv].output, y = Operand.plain(output, matrices: matrices, rows: g2.m, cols: g2.n)
        if readers[output] == 1, output != graph.output,
           let t = nodes.indices[(pv + 1)...].first(where: { nodes[$0].inputs.contains(output) }),
           let tr = nodes[t].operation.as(TransposeOp.self),
           let placed = Operand.affine(inverse(tr.map.sources), base: nodes[t].output, matrices: matrices,
                                       rows: g2.m, cols: g2.n, scale: nil, nodes: [t]) {
            output = nodes[t].output
            y = placed
        }
        // The view nodes to skip: those whose output only chain nodes read
        // and no chain reads in place.
        var chain = Set(q.nodes + k.nodes + v.nodes)
        let kept = pinned.union([q.base, k.base, v.base])
        let fused: Set<Int> = [n, sm, pv]
        var changed = true
        while changed {
            changed = false
            for c in chain {
                let out = nodes[c].output
                let outside = out == graph.output || kept.contains(out) || nodes.indices.contains { r in
                    !chain.contains(r) && !fused.contains(r) && nodes[r].inputs.contains(out)
                }
                if outside { chain.remove(c); changed = true }
            }
        }
        return AttentionFusion(scores: n, softmax: sm, product: pv, q: q, k: k, v: v, output: output, y: y,
                               away: [sm, pv] + y.nodes + chain.sorted())
    }

    /// Y = softmax(A₁·B₁')·B₂' for `c.batch` samples into `y`; `c` is the
    /// context of the Q·Kᵀ node.
    func forward(_ c: OpContext, product: Graph.Node, into y: UnsafeMutablePointer<Float>) {
        let graph = c.graph
        let first = c.node.operation.as(MatMulOp.self)!, second = product.operation.as(MatMulOp.self)!
        let (g1, g2) = c.staticPlan {
            Geometries(first.geometry(c.shape(0), c.shape(1))!,
                       second.geometry(graph.values[c.node.output].shape, graph.values[product.inputs[1]].shape)!)
        }.pair
        let (rows, keys, width, depth) = (g1.m, g1.n, g2.n, g1.k)
        let block = Swift.min(rows, Swift.max(16, Self.blockFloats / Swift.max(keys, 1) / 16 * 16))
        // 8-wide heads (the diffusers U-Net): P·V on fr_gemm_n8, two rows of Y
        // per vector instead of half-empty 16-lane panels; same values as
        // fr_gemm's AVX-512 engine (0, then one FMA per key in order), so only
        // where that engine is the one the unfused nodes use.
        let narrow = width == 8 && fr_dense_avx512_active() != 0
        let (tk, tv) = (first.transposeB ? 1 : 0, second.transposeB ? 1 : 0)
        let blocks = (rows + block - 1) / Swift.max(block, 1)
        // Query rows 32 or 16 at a time with the scores key-major
        // (`fr_attention_key_major`, ≤ 256 keys): full vectors where a row
        // of few keys leaves lanes idle, no horizontal reductions; same
        // values. The rows past the last 16 of a matrix take the row form.
        let keyMajor = !narrow && tv == 0 && fr_attention_key_major_applies(keys, depth, width) != 0
        // V as stored (rows of `width` floats) is read in place by P·V where
        // packing it would copy it for one block of rows (or for the
        // key-major form, which reads it in place); many row blocks (784
        // tokens: 25) read it packed.
        let vInPlace = keyMajor || (!narrow && tv == 0 && blocks == 1)
        let rowForm = !keyMajor || rows % 16 != 0
        let kPacked = rowForm ? fr_gemm_packed_b_floats(keys, depth) : 0
        let vPacked = narrow ? 16 * keys : (vInPlace ? 0 : fr_gemm_packed_b_floats(width, keys))
        // Scaled copies (a Mul by a constant read through): K whole, Q per block.
        let kCopy = k.scale == nil ? 0 : keys * depth, qCopy = q.scale == nil ? 0 : block * depth
        let sFloats = Swift.max(block * keys + qCopy,
                                keyMajor ? fr_attention_key_major_scratch_floats(keys, depth) : 0)
        let ex = c.executor, ws = c.ws, sizes = c.plan.sizes
        let (qBase, kBase, vBase) = (ex.data(q.base, ws), ex.data(k.base, ws), ex.data(v.base, ws))
        let qScale = q.scale.map { UnsafePointer(ex.data($0, ws)) }, kc = k.scale.map { ex.data($0, ws)[0] }
        let (qs, ks, vs, ys) = (sizes[q.base], sizes[k.base], sizes[v.base], sizes[output])
        let matrices = g1.lead.reduce(1, *), units = c.batch * matrices
        let (lq, ly) = (q.rowStride, self.y.rowStride)

        /// Matrix `u` (sample u / matrices)'s K rows and their stride: as
        /// stored, or c·K in `kScaled` (written by `pack`) when scaled.
        func kRows(_ u: Int, kScaled: UnsafePointer<Float>) -> (UnsafePointer<Float>, Int) {
            let (s, m) = u.quotientAndRemainder(dividingBy: matrices)
            return kc == nil ? (UnsafePointer(kBase + s * ks + k.offsets[m]), k.rowStride)
                             : (kScaled, tk == 1 ? depth : keys)
        }
        /// Matrix `u`'s c·K into `kScaled` when scaled, K packed into
        /// `packed` where the row form needs it, and V packed where it is not
        /// read in place.
        func pack(_ u: Int, into packed: UnsafeMutablePointer<Float>, kScaled: UnsafeMutablePointer<Float>) {
            let (s, m) = u.quotientAndRemainder(dividingBy: matrices)
            if var kc {
                // K · c as the Mul node computed it (`fr_binary_rows`, op 2).
                let (r, w) = tk == 1 ? (keys, depth) : (depth, keys)
                fr_binary_rows(2, kBase + s * ks + k.offsets[m], k.rowStride, 1, &kc, 0, 0, kScaled, r, w)
            }
            let (km, lk) = kRows(u, kScaled: kScaled)
            if rowForm { fr_gemm_pack_b(Int32(tk), keys, depth, km, lk, packed) }
            let vm = vBase + s * vs + v.offsets[m]
            if narrow {
                fr_gemm_n8_pack(Int32(tv), keys, vm, v.rowStride, packed + kPacked)
            } else if !vInPlace {
                fr_gemm_pack_b(Int32(tv), width, keys, vm, v.rowStride, packed + kPacked)
            }
        }
        /// Row block `b` of matrix `u`: S's rows, their softmax, Y's rows.
        func rowBlock(_ u: Int, _ b: Int, packed: UnsafePointer<Float>, kScaled: UnsafePointer<Float>,
                      sBlock: UnsafeMutablePointer<Float>, qScaled: UnsafeMutablePointer<Float>) {
            let (s, m) = u.quotientAndRemainder(dividingBy: matrices)
            let qm = qBase + s * qs + q.offsets[m], ym = y + s * ys + self.y.offsets[m]
            let vm = vBase + s * vs + v.offsets[m]
            var r0 = b * block
            let end = Swift.min(r0 + block, rows)
            if keyMajor {
                let (km, lk) = kRows(u, kScaled: kScaled)
                while r0 + 16 <= end {
                    let n = r0 + 32 <= end ? 32 : 16
                    fr_attention_key_major(n, keys, depth, width, Int32(tk), qm + r0 * lq, lq, qScale, km, lk, vm,
                                           v.rowStride, ym + r0 * ly, ly, sBlock)
                    r0 += n
                }
                if r0 == end { return }
            }
            let rb = end - r0
            if let qScale {
                fr_binary_rows(2, qm + r0 * lq, lq, 1, qScale, 0, 0, qScaled, rb, depth)
                fr_gemm_prepacked(rb, keys, depth, qScaled, depth, packed, sBlock, keys)
            } else {
                fr_gemm_prepacked(rb, keys, depth, qm + r0 * lq, lq, packed, sBlock, keys)
            }
            fr_softmax_rows(sBlock, sBlock, rb, keys)
            if narrow {
                fr_gemm_n8(rb, keys, sBlock, keys, packed + kPacked, ym + r0 * ly, ly)
            } else if vInPlace {
                fr_gemm_b_in_place(rb, width, keys, sBlock, keys, vm, v.rowStride, ym + r0 * ly, ly)
            } else {
                fr_gemm_prepacked(rb, width, keys, sBlock, keys, packed + kPacked, ym + r0 * ly, ly)
            }
        }

        let threads = ws.splitThreads(flops: 2 * units * rows * keys * (depth + width), parts: units * blocks)
        if threads > 1 {
            // One call's attention over several cores (a batch of one U-Net
            // sample): every matrix's K and V prepared first (each its own
            // scaled K), then the row blocks on the workers, each with its
            // own S block. Same values.
            let per = kPacked + vPacked + kCopy
            let packed = c.scratch(units * per)
            for u in 0..<units { pack(u, into: packed + u * per, kScaled: packed + u * per + kPacked + vPacked) }
            ws.split(parts: units * blocks, threads: threads, scratch: sFloats) { sBlock, i in
                let (u, b) = i.quotientAndRemainder(dividingBy: blocks)
                let base = packed + u * per
                rowBlock(u, b, packed: base, kScaled: base + kPacked + vPacked, sBlock: sBlock,
                         qScaled: sBlock + block * keys)
            }
            return
        }
        let packed = c.scratch(kPacked + vPacked + kCopy + qCopy)
        let kScaled = packed + kPacked + vPacked, qScaled = kScaled + kCopy
        let sBlock = c.scratch2(sFloats)
        for u in 0..<units {
            pack(u, into: packed, kScaled: kScaled)
            for b in 0..<blocks {
                rowBlock(u, b, packed: packed, kScaled: kScaled, sBlock: sBlock, qScaled: qScaled)
            }
        }
    }

    /// The two products' geometries, made once per node (`OpContext.staticPlan`).
    final class Geometries {
        let pair: (MatMulOp.Geometry, MatMulOp.Geometry)
        init(_ g1: MatMulOp.Geometry, _ g2: MatMulOp.Geometry) { pair = (g1, g2) }
    }
}

extension AttentionFusion.Operand {
    /// The operand as stored: matrix m at m·rows·cols, rows of `cols`.
    static func plain(_ v: ValueID, matrices: Int, rows: Int, cols: Int) -> Self {
        Self(base: v, offsets: (0..<matrices).map { $0 * rows * cols }, rowStride: cols, scale: nil, nodes: [])
    }

    /// The operand when `sources` (per element of [matrices, rows, cols],
    /// its index in `base`) puts every matrix's rows at one stride apart
    /// (≥ 0), each row's floats consecutive; else nil.
    static func affine(_ sources: [Int], base: ValueID, matrices: Int, rows: Int, cols: Int, scale: ValueID?,
                       nodes: [Int]) -> Self? {
        let per = rows * cols
        guard sources.count == matrices * per, per > 0 else { return nil }
        let stride = rows > 1 ? sources[cols] - sources[0] : cols
        guard stride >= 0 else { return nil }
        var offsets: [Int] = []
        for m in 0..<matrices {
            let o = sources[m * per]
            guard o >= 0 else { return nil }
            for i in 0..<rows {
                for j in 0..<cols where sources[m * per + i * cols + j] != o + i * stride + j { return nil }
            }
            offsets.append(o)
        }
        return Self(base: base, offsets: offsets, rowStride: stride, scale: scale, nodes: nodes)
    }

    /// Operand value `v` read through the longest chain of Reshapes,
    /// Transposes, Slices and (once) a Mul by a one-element parameter
    /// behind it whose source is `affine`; `v` itself when there is none.
    static func tracing(_ v: ValueID, matrices: Int, rows: Int, cols: Int, in graph: Graph, before n: Int,
                        skipped: [Bool]) -> Self {
        var best = plain(v, matrices: matrices, rows: rows, cols: cols)
        var sources = Array(0..<(matrices * rows * cols)), cur = v, nodes: [Int] = [], scale: ValueID?
        while case .node(let p) = graph.values[cur].source, p < n, !skipped[p] {
            let node = graph.nodes[p], op = node.operation
            let batched = node.inputs.filter { graph.values[$0].isBatched }
            guard batched.count == 1 else { break }
            let view = node.inputs.count == 1 && graph.values[node.inputs[0]].isBatched
            if view, op.as(ReshapeOp.self) != nil {
                cur = node.inputs[0]
            } else if view, let map = op.as(TransposeOp.self)?.map ?? op.as(SliceOp.self)?.map,
                      map.sources.allSatisfy({ $0 >= 0 }) {
                sources = sources.map { Int(map.sources[$0]) }
                cur = node.inputs[0]
            } else if let b = op.as(BinaryOp.self), b.function == .mul, scale == nil, node.inputs.count == 2,
                      let c = node.inputs.first(where: { !graph.values[$0].isBatched }),
                      graph.values[c].shape.reduce(1, *) == 1,
                      graph.values[batched[0]].shape == graph.values[node.output].shape {
                if case .parameter = graph.values[c].source {} else { break }
                scale = c
                cur = batched[0]
            } else {
                break
            }
            nodes.append(p)
            if let a = affine(sources, base: cur, matrices: matrices, rows: rows, cols: cols, scale: scale, nodes: nodes) {
                best = a
            }
        }
        return best
    }
}
