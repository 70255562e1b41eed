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

    init(plan: ExecutionPlan, params: ParameterStore) {
        self.plan = plan
        self.params = params
        self.graph = plan.graph
    }

    /// Pointer to a value's data: a batched buffer or a parameter.
    @inline(__always)
    func data(_ v: ValueID, _ ws: GraphWorkspace) -> UnsafeMutablePointer<Float> {
        if case .parameter(let p) = graph.values[v].source { return params.pointers[p] }
        return ws.values[v].pointer
    }

    /// Forward pass for `batch` samples. `times` and `points` are `[batch]`
    /// and `[batch, d]`. Returns the output buffer `[batch, d]` (valid until
    /// the workspace is used again).
    @discardableResult
    func forward(times: UnsafeBufferPointer<Double>, points: UnsafePointer<Float>, batch: Int,
                 workspace ws: GraphWorkspace, record: Bool) -> UnsafeMutablePointer<Float> {
        ws.prepare(valueCount: graph.values.count, nodeCount: graph.nodes.count, parameterCount: graph.parameters.count)
        ws.batch = batch
        ws.recorded = record
        let d = graph.dimension
        ws.values[graph.x].reserve(batch * d).update(from: points, count: batch * d)
        let tp = ws.values[graph.t].reserve(Swift.max(batch, 1))
        for i in 0..<batch { tp[i] = Float(times[i]) }
        for (n, node) in graph.nodes.enumerated() {
            let out = ws.values[node.output].reserve(batch * plan.sizes[node.output])
            forward(node: n, node, out: out, batch: batch, ws: ws, record: record)
        }
        return ws.values[graph.output].pointer
    }

    private func forward(node n: Int, _ node: Graph.Node, out: UnsafeMutablePointer<Float>,
                         batch: Int, ws: GraphWorkspace, record: Bool) {
        switch node.operation {
        case .linear(let transposed, let activation):
            linearForward(n, node, transposed: transposed, activation: activation, out: out, batch: batch, ws: ws, record: record)
        case .binary(let f):
            binaryForward(node, f, out: out, batch: batch, ws: ws)
        case .unary(let f):
            let count = batch * plan.sizes[node.output]
            let (k, p1, p2) = f.kernel
            let x = data(node.inputs[0], ws)
            if record {
                fr_unary_forward_derivative(k, p1, p2, x, out, ws.aux[n].reserve(count), count)
            } else {
                fr_unary_forward(k, p1, p2, x, out, count)
            }
        case .concat(let axis):
            concat(node, axis: axis, lead: [batch], out: out, ws: ws, tangent: false)
        case .layerNorm(let axis, let eps):
            layerNormForward(n, node, axis: axis, epsilon: eps, out: out, batch: batch, ws: ws)
        case .reduceMean(let axes, _), .reduceSum(let axes, _):
            var scale: Float = 1
            if case .reduceMean = node.operation { scale = 1 / Float(reducedCount(node, axes)) }
            reduce(node, axes: axes, scale: scale, lead: [batch], src: data(node.inputs[0], ws), dst: out)
        case .reshape:
            out.update(from: data(node.inputs[0], ws), count: batch * plan.sizes[node.output])
        }
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
            jvp(node: n, node, out: out, batch: batch, k: k, ws: ws)
        }
        return plan.hasTangent[graph.output] ? ws.tangents[graph.output].pointer : nil
    }

    /// Tangent buffer of an input, or nil if it carries none.
    @inline(__always)
    func tangent(_ v: ValueID, _ ws: GraphWorkspace) -> UnsafeMutablePointer<Float>? {
        plan.hasTangent[v] ? ws.tangents[v].pointer : nil
    }

    private func jvp(node n: Int, _ node: Graph.Node, out: UnsafeMutablePointer<Float>, batch: Int, k: Int, ws: GraphWorkspace) {
        let outSize = plan.sizes[node.output]
        switch node.operation {
        case .linear(let transposed, let activation):
            let xin = node.inputs[0]
            let inDim = graph.values[xin].shape.last!
            let outDim = graph.values[node.output].shape.last!
            let rows = batch * k * (plan.sizes[xin] / inDim)
            if let wp = params.packed[n] {
                fr_gemm_packed(tangent(xin, ws)!, wp, nil, out, rows, outDim, inDim)
            } else {
                BLAS.gemm(transB: transposed, m: rows, n: outDim, k: inDim,
                          a: tangent(xin, ws)!, b: data(node.inputs[1], ws), c: out)
            }
            if activation != .identity {
                fr_mul_rows_k(ws.aux[n].pointer, out, out, batch, k, outSize)
            }
        case .unary:
            fr_mul_rows_k(ws.aux[n].pointer, tangent(node.inputs[0], ws)!, out, batch, k, outSize)
        case .binary(let f):
            binaryJVP(node, f, out: out, batch: batch, k: k, ws: ws)
        case .concat(let axis):
            concat(node, axis: axis, lead: [batch, k], out: out, ws: ws, tangent: true)
        case .layerNorm(let axis, _):
            layerNormJVP(n, node, axis: axis, out: out, batch: batch, k: k, ws: ws)
        case .reduceMean(let axes, _), .reduceSum(let axes, _):
            var scale: Float = 1
            if case .reduceMean = node.operation { scale = 1 / Float(reducedCount(node, axes)) }
            reduce(node, axes: axes, scale: scale, lead: [batch, k], src: tangent(node.inputs[0], ws)!, dst: out)
        case .reshape:
            out.update(from: tangent(node.inputs[0], ws)!, count: batch * k * outSize)
        }
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
            vjp(node: n, node, batch: batch, ws: ws)
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

    private func vjp(node n: Int, _ node: Graph.Node, batch: Int, ws: GraphWorkspace) {
        let g = ws.gradients[node.output].pointer
        let outSize = plan.sizes[node.output]
        switch node.operation {
        case .linear(let transposed, let activation):
            linearVJP(n, node, transposed: transposed, activation: activation, g: g, batch: batch, ws: ws)
        case .unary:
            if let gx = gradient(node.inputs[0], ws) {
                let count = batch * outSize
                let d = ws.aux[n].pointer
                for i in 0..<count { gx[i] += g[i] * d[i] }
            }
        case .binary(let f):
            binaryVJP(node, f, g: g, batch: batch, ws: ws)
        case .concat(let axis):
            concatVJP(node, axis: axis, g: g, batch: batch, ws: ws)
        case .layerNorm(let axis, _):
            layerNormVJP(n, node, axis: axis, g: g, batch: batch, ws: ws)
        case .reduceMean(let axes, _), .reduceSum(let axes, _):
            guard let gx = gradient(node.inputs[0], ws) else { return }
            var scale: Float = 1
            if case .reduceMean = node.operation { scale = 1 / Float(reducedCount(node, axes)) }
            let inShape = [batch] + graph.values[node.inputs[0]].shape
            let ax = Set(axes.map { ($0 < 0 ? $0 + inShape.count - 1 : $0) + 1 })
            let kept = inShape.enumerated().map { ax.contains($0.offset) ? 1 : $0.element }
            Strided.apply(.scale(scale), shape: inShape, dst: gx,
                          dstStrides: Strided.strides(of: inShape, broadcastTo: inShape), accumulate: true,
                          StridedOperand(pointer: g, strides: Strided.strides(of: kept, broadcastTo: inShape)))
        case .reshape:
            if let gx = gradient(node.inputs[0], ws) {
                for i in 0..<(batch * outSize) { gx[i] += g[i] }
            }
        }
    }

    // MARK: Shared helpers

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

    /// Concatenation of inputs (values or tangents) along per-sample `axis`;
    /// inputs without a tangent contribute zeros.
    func concat(_ node: Graph.Node, axis: Int, lead: [Int], out: UnsafeMutablePointer<Float>,
                ws: GraphWorkspace, tangent: Bool) {
        let shape = graph.values[node.output].shape
        let ax = axis < 0 ? axis + shape.count : axis
        let outer = lead.reduce(1, *) * shape[..<ax].reduce(1, *)
        let outChunk = shape[ax...].reduce(1, *)
        var offset = 0
        for i in node.inputs {
            let s = graph.values[i].shape
            let chunk = s[ax...].reduce(1, *)
            let src: UnsafeMutablePointer<Float>? = tangent ? self.tangent(i, ws) : data(i, ws)
            for o in 0..<outer {
                let dst = out + o * outChunk + offset
                if let src { dst.update(from: src + o * chunk, count: chunk) }
                else { dst.update(repeating: 0, count: chunk) }
            }
            offset += chunk
        }
    }

    func concatVJP(_ node: Graph.Node, axis: Int, g: UnsafeMutablePointer<Float>, batch: Int, ws: GraphWorkspace) {
        let shape = graph.values[node.output].shape
        let ax = axis < 0 ? axis + shape.count : axis
        let outer = batch * shape[..<ax].reduce(1, *)
        let outChunk = shape[ax...].reduce(1, *)
        var offset = 0
        for i in node.inputs {
            let chunk = graph.values[i].shape[ax...].reduce(1, *)
            if let gi = gradient(i, ws) {
                for o in 0..<outer {
                    let src = g + o * outChunk + offset, dst = gi + o * chunk
                    for j in 0..<chunk { dst[j] += src[j] }
                }
            }
            offset += chunk
        }
    }
}

extension UnaryFunction {
    /// The CKernels kind and its two parameters.
    var kernel: (Int32, Float, Float) {
        switch self {
        case .identity: return (Int32(FR_IDENTITY.rawValue), 0, 0)
        case .relu: return (Int32(FR_RELU.rawValue), 0, 0)
        case .leakyRelu(let s): return (Int32(FR_LEAKY_RELU.rawValue), s, 0)
        case .elu(let a): return (Int32(FR_ELU.rawValue), a, 0)
        case .selu: return (Int32(FR_SELU.rawValue), 0, 0)
        case .sigmoid: return (Int32(FR_SIGMOID.rawValue), 0, 0)
        case .tanh: return (Int32(FR_TANH.rawValue), 0, 0)
        case .silu: return (Int32(FR_SILU.rawValue), 0, 0)
        case .softplus(let b, let th): return (Int32(FR_SOFTPLUS.rawValue), b, th)
        case .gelu: return (Int32(FR_GELU.rawValue), 0, 0)
        case .geluTanh: return (Int32(FR_GELU_TANH.rawValue), 0, 0)
        case .erf: return (Int32(FR_ERF.rawValue), 0, 0)
        case .exp: return (Int32(FR_EXP.rawValue), 0, 0)
        case .log: return (Int32(FR_LOG.rawValue), 0, 0)
        case .sqrt: return (Int32(FR_SQRT.rawValue), 0, 0)
        case .neg: return (Int32(FR_NEG.rawValue), 0, 0)
        case .sin: return (Int32(FR_SIN.rawValue), 0, 0)
        case .cos: return (Int32(FR_COS.rawValue), 0, 0)
        case .square: return (Int32(FR_SQUARE.rawValue), 0, 0)
        case .reciprocal: return (Int32(FR_RECIPROCAL.rawValue), 0, 0)
        case .abs: return (Int32(FR_ABS.rawValue), 0, 0)
        case .pow(let p): return (Int32(FR_POW.rawValue), p, 0)
        }
    }

    /// f(x) for one value (constant folding, tests).
    public func callAsFunction(_ x: Float) -> Float {
        var y: Float = 0
        var v = x
        let (k, p1, p2) = kernel
        fr_unary_forward(k, p1, p2, &v, &y, 1)
        return y
    }

    /// f'(x) for one value.
    public func derivative(_ x: Float) -> Float {
        var y: Float = 0
        var v = x
        let (k, p1, p2) = kernel
        fr_unary_derivative(k, p1, p2, &v, &y, 1)
        return y
    }
}
