/// ONNX `Attention` (opset 23, what torch's exporter emits for
/// `scaled_dot_product_attention` at opset ≥ 23), rewritten at import into
/// the IR's batched MatMul and Softmax (which the inference planner fuses
/// back into one attention kernel):
///
///     Y = softmax(scale · Q Kᵀ + mask) V,   scale = 1/√head_size by default,
///
/// per batch and head. Q [B, H, Tq, Dh], K [B, H, Tk, Dh], V [B, H, Tk, Dv]
/// (or the 3-D forms [B, T, H·D] with `q_num_heads` / `kv_num_heads`);
/// `attn_mask` may be an additive float constant. Not supported (named at
/// import): causal masking, softcap, boolean or computed masks, a KV cache
/// (past_key/past_value), grouped heads (kv_num_heads ≠ q_num_heads), and
/// reading the optional present_key/present_value/qk outputs.
extension ONNXImporter {
    mutating func attention(_ n: Node) throws {
        if try int(n, "is_causal", 0) != 0 { throw unsupported(n, "is_causal = 1 (causal masking)") }
        if try float(n, "softcap", 0) != 0 { throw unsupported(n, "softcap ≠ 0") }
        for (i, what) in [(4, "past_key"), (5, "past_value"), (6, "nonpad_kv_seqlen")] where i < n.inputs.count && !n.inputs[i].isEmpty {
            throw unsupported(n, "input \(what) (a KV cache)")
        }
        for o in n.outputs.dropFirst() where !o.isEmpty && !(readers[o]?.isEmpty ?? true) {
            throw unsupported(n, "output '\(o)' (present_key, present_value or the QK product) is read")
        }
        var qkv: [ValueID] = []
        for i in 0..<3 {
            guard case .batched(let id, true) = try input(n, i) else {
                throw unsupported(n, "input \(i) (Q, K, V) is a constant or has no batch axis")
            }
            qkv.append(id)
        }
        let rank = builder.shape(of: qkv[0]).count + 1
        guard qkv.allSatisfy({ builder.shape(of: $0).count + 1 == rank }), rank == 3 || rank == 4 else {
            throw unsupported(n, "Q, K, V of ONNX ranks \(qkv.map { builder.shape(of: $0).count + 1 }) (3 or 4, all equal)")
        }
        let qHeads = Int(try int(n, "q_num_heads", 0)), kvHeads = Int(try int(n, "kv_num_heads", 0))
        if rank == 3 {
            guard qHeads > 0, kvHeads > 0 else { throw invalid(n, "3-D inputs need q_num_heads and kv_num_heads") }
            guard qHeads == kvHeads else { throw unsupported(n, "grouped heads (q_num_heads \(qHeads), kv_num_heads \(kvHeads))") }
            // [T, H·D] → [T, H, D] → [H, T, D]
            qkv = try qkv.enumerated().map { i, id in
                let s = builder.shape(of: id)
                guard s[1] % qHeads == 0 else { throw invalid(n, "input \(i) has \(s[1]) features, not a multiple of \(qHeads) heads") }
                let split = try builder.apply(.reshape(shape: [s[0], qHeads, s[1] / qHeads]), [id], name: "\(currentNode)/heads\(i)")
                let op = try TransposeOp(perm: [1, 0, 2], inputShape: builder.shape(of: split), node: currentNode)
                return try builder.apply(Operation(op), [split], name: "\(currentNode)/heads\(i)/transpose")
            }
        }
        let (q, k, v) = (builder.shape(of: qkv[0]), builder.shape(of: qkv[1]), builder.shape(of: qkv[2]))
        guard q[0] == k[0], k[0] == v[0] else { throw unsupported(n, "grouped heads (Q has \(q[0]) heads, K \(k[0]), V \(v[0]))") }
        guard q[2] == k[2], k[1] == v[1] else {
            throw FlowError.shapeMismatch("node '\(currentNode)': Q \(q), K \(k), V \(v) (per sample) do not fit Q Kᵀ V")
        }
        let scale = try float(n, "scale", 1 / Float(q[2]).squareRoot())
        var scores = try builder.apply(.matMul(transposeB: true), [qkv[0], qkv[1]], name: "\(currentNode)/qk")
        let (scaled, _) = try aligned(n, [.batched(scores, batchAxis: true), .float(Tensor(shape: [], scalars: [scale]), trainable: false)])
        scores = try builder.apply(.binary(.mul), scaled, name: "\(currentNode)/scale")
        if let mask = try optionalInput(n, 3) {
            guard case .float = mask else { throw unsupported(n, "attn_mask that is not a float constant (boolean or computed)") }
            let (ids, _) = try aligned(n, [.batched(scores, batchAxis: true), mask])
            scores = try builder.apply(.binary(.add), ids, name: "\(currentNode)/mask")
        }
        let weights = try builder.apply(Operation(SoftmaxOp(axis: -1)), [scores], name: "\(currentNode)/softmax")
        var y = try builder.apply(.matMul(), [weights, qkv[2]], name: currentNode)
        if rank == 3 {  // [H, Tq, Dv] → [Tq, H, Dv] → [Tq, H·Dv]
            let op = try TransposeOp(perm: [1, 0, 2], inputShape: builder.shape(of: y), node: currentNode)
            y = try builder.apply(Operation(op), [y], name: "\(currentNode)/merge/transpose")
            y = try builder.apply(.reshape(shape: [q[1], q[0] * v[2]]), [y], name: "\(currentNode)/merge")
        }
        try set(n, .batched(y, batchAxis: true))
    }
}
