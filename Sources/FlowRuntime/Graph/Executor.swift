import CKernels

/// Runs a graph on a batch: forward, k-tangent JVP, VJP.
///
/// The executor holds no mutable state: buffers live in the caller's
/// `GraphWorkspace`, parameters in a `ParameterStore` (the model's, or a
/// trainer's). A JVP or VJP follows a forward pass with `record: true` on
/// the same workspace.
struct Executor {
    let plan: ExecutionPlan
    let params: ParameterStore
    /// Stored (not computed) so that node loops do not copy the graph's
    /// arrays, which costs retain/release pairs on every access.
    let graph: Graph
    /// The arithmetic of Linear layers that have bf16 weights (`Precision`).
    let precision: Precision

    init(plan: ExecutionPlan, params: ParameterStore, precision: Precision = .float32) {
        self.plan = plan
        self.params = params
        self.graph = plan.graph
        self.precision = precision
    }

    /// Pointer to a value's data: a batched buffer or a parameter.
    @inline(__always)
    func data(_ v: ValueID, _ ws: GraphWorkspace) -> UnsafeMutablePointer<Float> {
        if case .parameter(let p) = graph.values[v].source { return params.pointers[p] }
        return ws.recorded ? ws.values[v].pointer : ws.slotBuffers[plan.slots[v]].pointer
    }

    /// Forward pass for `batch` samples. `times` and `points` are `[batch]`
    /// and `[batch, d]`; `context` is `[batch, m]` for a conditional graph
    /// (nil otherwise). Returns the output buffer `[batch, d]` (valid until
    /// the workspace is used again).
    @discardableResult
    func forward(times: UnsafeBufferPointer<Double>, points: UnsafePointer<Float>, context: UnsafePointer<Float>? = nil,
                 batch: Int, workspace ws: GraphWorkspace, record: Bool) -> UnsafeMutablePointer<Float> {
        ws.prepare(valueCount: graph.values.count, nodeCount: graph.nodes.count, parameterCount: graph.parameters.count)
        ws.batch = batch
        ws.recorded = record
        if !record && ws.slotBuffers.count != plan.slotCount {
            ws.slotBuffers = (0..<plan.slotCount).map { _ in FloatBuffer() }
        }
        /// The buffer of value `v` for this pass, grown to `count` floats.
        func buffer(_ v: ValueID, _ count: Int) -> UnsafeMutablePointer<Float> {
            record ? ws.values[v].reserve(count) : ws.slotBuffers[plan.slots[v]].reserve(count)
        }
        let d = graph.dimension
        buffer(graph.x, batch * d).update(from: points, count: batch * d)
        let tp = buffer(graph.t, Swift.max(batch, 1))
        for i in 0..<batch { tp[i] = Float(times[i]) }
        if let c = graph.context {
            let m = plan.sizes[c]
            let cp = buffer(c, Swift.max(batch * m, 1))
            if let context { cp.update(from: context, count: batch * m) } else { cp.update(repeating: 0, count: batch * m) }
        }
        for (n, node) in graph.nodes.enumerated() {
            if !record {
                if plan.fusedAway[n] { continue }
                if let fusion = plan.attentionFusions[n] {
                    let product = graph.nodes[fusion.product]
                    let out = buffer(fusion.output, batch * plan.sizes[fusion.output])
                    fusion.forward(OpContext(executor: self, index: n, node: node, ws: ws, batch: batch, k: 0,
                                             record: false, out: out), product: product, into: out)
                    continue
                }
            }
            let out = buffer(node.output, batch * plan.sizes[node.output])
            node.operation.op.forward(OpContext(executor: self, index: n, node: node, ws: ws, batch: batch, k: 0,
                                                record: record, out: out))
        }
        return data(graph.output, ws)
    }

    // MARK: JVP

    /// Pushes `k` tangents per sample of x (`[batch, k, d]`) through the graph
    /// recorded by the last forward pass. Returns the output tangents
    /// `[batch, k, d]`, or nil when the output does not depend on x.
    func jvp(tangents: UnsafePointer<Float>, k: Int, workspace ws: GraphWorkspace) -> UnsafeMutablePointer<Float>? {
        precondition(ws.recorded, "jvp needs a recorded forward pass")
        let batch = ws.batch, d = graph.dimension
        ws.k = k
        ws.tangents[graph.x].reserve(batch * k * d).update(from: tangents, count: batch * k * d)
        for (n, node) in graph.nodes.enumerated() where plan.hasTangent[node.output] {
            let out = ws.tangents[node.output].reserve(batch * k * plan.sizes[node.output])
            node.operation.op.jvp(OpContext(executor: self, index: n, node: node, ws: ws, batch: batch, k: k,
                                            record: true, out: out))
        }
        return plan.hasTangent[graph.output] ? ws.tangents[graph.output].pointer : nil
    }

    /// Tangent buffer of an input, or nil if it carries none.
    @inline(__always)
    func tangent(_ v: ValueID, _ ws: GraphWorkspace) -> UnsafeMutablePointer<Float>? {
        plan.hasTangent[v] ? ws.tangents[v].pointer : nil
    }

    // MARK: VJP

    /// Backpropagates `outputGradient` (`[batch, d]`, the gradient of a scalar
    /// loss with respect to the output) through the recorded forward pass and
    /// *adds* the parameter gradients into `ws.parameterGradients` (zero them
    /// with `zeroParameterGradients` first).
    func backward(outputGradient: UnsafePointer<Float>, workspace ws: GraphWorkspace) {
        precondition(ws.recorded, "backward needs a recorded forward pass")
        let batch = ws.batch
        for (v, has) in plan.hasGradient.enumerated() where has && graph.values[v].isBatched {
            ws.gradients[v].zero(batch * plan.sizes[v])
        }
        guard plan.hasGradient[graph.output] else { return }
        let go = ws.gradients[graph.output].pointer
        go.update(from: outputGradient, count: batch * graph.dimension)
        for (n, node) in graph.nodes.enumerated().reversed() where plan.hasGradient[node.output] {
            node.operation.op.vjp(OpContext(executor: self, index: n, node: node, ws: ws, batch: batch, k: 0,
                                            record: true, out: ws.gradients[node.output].pointer))
        }
    }

    func zeroParameterGradients(_ ws: GraphWorkspace) {
        ws.prepare(valueCount: graph.values.count, nodeCount: graph.nodes.count, parameterCount: graph.parameters.count)
        for (i, c) in params.counts.enumerated() { ws.parameterGradients[i].zero(c) }
    }

    /// Gradient buffer to accumulate into for an input value, or nil.
    @inline(__always)
    func gradient(_ v: ValueID, _ ws: GraphWorkspace) -> UnsafeMutablePointer<Float>? {
        guard plan.hasGradient[v] else { return nil }
        if case .parameter(let p) = graph.values[v].source { return ws.parameterGradients[p].pointer }
        return ws.gradients[v].pointer
    }

}
