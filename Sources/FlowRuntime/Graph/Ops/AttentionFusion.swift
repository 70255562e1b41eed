import CKernels

/// Attention as the importer leaves it, S = A₁·B₁' → P = softmax(S) along
/// the last axis → Y = P·B₂' (three nodes), run by inference passes as one
/// computation over blocks of query rows: K' and V' packed once per matrix
/// (`fr_gemm_pack_b`), then per block of query rows, S's rows
/// (`fr_gemm_prepacked`), their softmax, and Y's rows, while the block
/// (rows × keys floats) is still in cache. S and P are never stored whole:
/// at 784 tokens one S is 2.4 MB per head, and writing it, reading it three
/// times for the softmax and once more for P·V was a fifth of a torchcfm
/// U-Net's time.
///
/// Same values as the three nodes, bit for bit: `fr_gemm` (and
/// `fr_gemm_prepacked`, its blocks) computes each row of C from that row of
/// A alone in a fixed order (the k blocking does not depend on m), and the
/// softmax is per row. Recorded passes (derivatives)
/// run the three nodes, since their caches need S and P.
struct AttentionFusion {
    /// The nodes: Q·Kᵀ, softmax, P·V.
    let scores: Int, softmax: Int, product: Int

    /// Query rows per block: the block of S stays within ~128 KiB.
    static let blockFloats = 32768

    /// The chain that starts at node `n`, if `n` starts one that can run
    /// fused: the softmax over the last axis of S, S and P read only by the
    /// next node of the chain and not the graph output, no broadcast leading
    /// axes, and P·V's right operand computed before Q·Kᵀ (the fused chain
    /// runs at node `n`).
    static func starting(at n: Int, in graph: Graph, readers: [Int]) -> AttentionFusion? {
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
        let v = nodes[pv].inputs[1]
        switch graph.values[v].source {
        case .node(let producer): guard producer < n else { return nil }
        case .inputX, .inputT, .inputContext: break
        case .parameter: return nil
        }
        return AttentionFusion(scores: n, softmax: sm, product: pv)
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
        let kPacked = fr_gemm_packed_b_floats(keys, depth)
        let vPacked = narrow ? 16 * keys : fr_gemm_packed_b_floats(width, keys)
        let packed = c.scratch(kPacked + vPacked)
        let sBlock = c.scratch2(block * keys)
        let q = c.input(0), k = c.input(1), v = c.executor.data(product.inputs[1], c.ws)
        let matrices = g1.lead.reduce(1, *)
        let (qSize, kSize, vSize, ySize) = (rows * depth, keys * depth, keys * width, rows * width)
        let (tk, tv) = (first.transposeB ? 1 : 0, second.transposeB ? 1 : 0)
        for m in 0..<(c.batch * matrices) {
            let qm = q + m * qSize, ym = y + m * ySize
            fr_gemm_pack_b(Int32(tk), keys, depth, k + m * kSize, tk == 1 ? depth : keys, packed)
            if narrow {
                fr_gemm_n8_pack(Int32(tv), keys, v + m * vSize, tv == 1 ? keys : width, packed + kPacked)
            } else {
                fr_gemm_pack_b(Int32(tv), width, keys, v + m * vSize, tv == 1 ? keys : width, packed + kPacked)
            }
            var r0 = 0
            while r0 < rows {
                let rb = Swift.min(block, rows - r0)
                fr_gemm_prepacked(rb, keys, depth, qm + r0 * depth, depth, packed, sBlock, keys)
                fr_softmax_rows(sBlock, sBlock, rb, keys)
                if narrow {
                    fr_gemm_n8(rb, keys, sBlock, keys, packed + kPacked, ym + r0 * width, width)
                } else {
                    fr_gemm_prepacked(rb, width, keys, sBlock, keys, packed + kPacked, ym + r0 * width, width)
                }
                r0 += rb
            }
        }
    }

    /// The two products' geometries, made once per node (`OpContext.staticPlan`).
    final class Geometries {
        let pair: (MatMulOp.Geometry, MatMulOp.Geometry)
        init(_ g1: MatMulOp.Geometry, _ g2: MatMulOp.Geometry) { pair = (g1, g2) }
    }
}
