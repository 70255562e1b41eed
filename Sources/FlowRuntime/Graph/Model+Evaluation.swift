/// Velocity, JVP and divergence of a `Model` (the `VelocityField` and
/// `ConditionalVelocityField` contracts; an unconditional network has
/// context dimension 0 and ignores contexts).
extension Model: ConditionalVelocityField {
    /// A float32 executor (tests drive passes with it directly).
    var executor: Executor { executor(likelihood: false, precision: .float32) }
    @inline(__always)
    func graphWorkspace(_ ws: FieldWorkspace) -> GraphWorkspace {
        // Any other workspace type is a programming error of the caller.
        ws as? GraphWorkspace ?? GraphWorkspace()
    }

    /// Evaluates in passes of at most `batchChunkSize` samples, so that a
    /// big network's live activations stay bounded (results do not depend
    /// on the passes: every kernel computes a sample independently).
    public func velocity(times: UnsafeBufferPointer<Double>,
                         points: UnsafeBufferPointer<Float>,
                         into velocities: UnsafeMutableBufferPointer<Float>,
                         workspace: FieldWorkspace) {
        velocity(times: times, points: points, contexts: nil, into: velocities, workspace: workspace)
    }

    /// Velocities of a conditional network: `contexts` is `[n, contextDimension]`
    /// (class labels as floats), or nil for zeros (and for unconditional
    /// networks, which ignore it).
    public func velocity(times: UnsafeBufferPointer<Double>,
                         points: UnsafeBufferPointer<Float>,
                         contexts: UnsafeBufferPointer<Float>?,
                         into velocities: UnsafeMutableBufferPointer<Float>,
                         workspace: FieldWorkspace) {
        velocity(times: times, points: points, contexts: contexts, into: velocities, workspace: workspace,
                 chunk: batchChunkSize)
    }

    /// The same in passes of at most `chunk` samples.
    func velocity(times: UnsafeBufferPointer<Double>, points: UnsafeBufferPointer<Float>,
                  contexts: UnsafeBufferPointer<Float>?, into velocities: UnsafeMutableBufferPointer<Float>,
                  workspace: FieldWorkspace, chunk: Int) {
        let n = times.count, d = dimension, m = graph.contextDimension
        precondition(points.count >= n * d && velocities.count >= n * d)
        precondition(contexts.map { $0.count >= n * m } ?? true)
        let ws = graphWorkspace(workspace)
        let ex = executor(likelihood: false)
        var start = 0
        while start < n {
            let count = Swift.min(Swift.max(1, chunk), n - start)
            let c = m > 0 ? contexts.map { $0.baseAddress! + start * m } : nil
            let out = ex.forward(times: UnsafeBufferPointer(rebasing: times[start..<start + count]),
                                 points: points.baseAddress! + start * d, context: c.map { UnsafePointer($0) },
                                 batch: count, workspace: ws, record: false)
            (velocities.baseAddress! + start * d).update(from: out, count: count * d)
            start += count
        }
    }

    /// Samples per evaluation chunk (fixed per model, so results never
    /// depend on the thread count): a power of two ≤ 1024 with about 2^20
    /// floats (4 MiB) of live activations and, for networks above 1 MFLOP
    /// per sample, about 2^27 FLOPs (~0.5 ms), so that batches of big
    /// networks spread over threads. An MLP of width 256: 1024; the small
    /// DiT (11 MFLOP): 8; a 28×28 U-Net: 1 (a batched velocity call groups
    /// up to `batchChunkSize` of them).
    static func chunkSize(peakLiveSize: Int, flopsPerSample: Int) -> Int {
        var c = 1
        while c < 1024 && 2 * c * peakLiveSize <= 1 << 20
                && (flopsPerSample <= 1 << 20 || 2 * c * flopsPerSample <= 1 << 27) { c *= 2 }
        return c
    }

    /// Samples per chunk of a batched velocity call (`velocity(…threads:)`),
    /// at most: networks above 2^27 FLOPs per sample (U-Nets, evaluated one
    /// sample a chunk by `chunkSize`) take up to 4 while their activations
    /// stay within 2^23 floats (32 MiB) a chunk. Their low-resolution
    /// layers then fill the GEMM engine (a 7×7 map is 16 Winograd tiles a
    /// sample, one panel) and each weight is read from cache once for 4
    /// samples: the torchcfm U-Net at batch 16, one thread, ~8 % faster;
    /// chunks of 8 gained nothing more. Others: `preferred`.
    static func batchChunkSize(peakLiveSize: Int, flopsPerSample: Int, preferred: Int) -> Int {
        guard flopsPerSample > 1 << 27 else { return preferred }
        var c = preferred
        while c < 4 * preferred && 2 * c * peakLiveSize <= 1 << 23 { c *= 2 }
        return c
    }

    /// The chunk of a batched velocity call of `n` samples on `threads`
    /// threads: `preferredChunkSize`, or up to `batchChunkSize` where that
    /// still leaves at least two chunks per thread (a batch of 2 U-Net
    /// samples on 2 threads stays 2 chunks of 1). Every kernel computes a
    /// sample on its own, so the values do not depend on it.
    func batchChunk(count n: Int, threads: Int) -> Int {
        guard batchChunkSize > preferredChunkSize else { return preferredChunkSize }
        let spread = threads <= 1 ? n : n / (2 * threads)
        return Swift.max(preferredChunkSize, Swift.min(batchChunkSize, spread))
    }

    /// Runs in chunks whose recorded values and k tangents per sample stay
    /// within about 2^24 floats (`recordedChunkSize`), so a U-Net's
    /// Hutchinson probes do not hold a whole solver chunk's activations.
    public func velocityJVP(times: UnsafeBufferPointer<Double>,
                            points: UnsafeBufferPointer<Float>,
                            tangents: UnsafeBufferPointer<Float>, k: Int,
                            into velocities: UnsafeMutableBufferPointer<Float>,
                            products: UnsafeMutableBufferPointer<Float>,
                            workspace: FieldWorkspace) {
        velocityJVP(times: times, points: points, contexts: nil, tangents: tangents, k: k, into: velocities,
                    products: products, workspace: workspace)
    }

    /// JVPs in x of a conditional network, each sample's context `[n,
    /// contextDimension]` held fixed (nil: zeros, and for unconditional
    /// networks, which ignore it).
    public func velocityJVP(times: UnsafeBufferPointer<Double>,
                            points: UnsafeBufferPointer<Float>,
                            contexts: UnsafeBufferPointer<Float>?,
                            tangents: UnsafeBufferPointer<Float>, k: Int,
                            into velocities: UnsafeMutableBufferPointer<Float>,
                            products: UnsafeMutableBufferPointer<Float>,
                            workspace: FieldWorkspace) {
        let n = times.count, d = dimension, m = graph.contextDimension
        precondition(points.count >= n * d && tangents.count >= n * k * d && products.count >= n * k * d)
        precondition(contexts.map { $0.count >= n * m } ?? true)
        let ws = graphWorkspace(workspace)
        let ex = executor(likelihood: true)
        let chunk = recordedChunkSize(tangents: k)
        var start = 0
        while start < n {
            let count = Swift.min(chunk, n - start)
            let c = m > 0 ? contexts.map { UnsafePointer($0.baseAddress! + start * m) } : nil
            let out = ex.forward(times: UnsafeBufferPointer(rebasing: times[start..<start + count]),
                                 points: points.baseAddress! + start * d, context: c, batch: count, workspace: ws, record: true)
            (velocities.baseAddress! + start * d).update(from: out, count: count * d)
            let dst = products.baseAddress! + start * k * d
            if let jv = ex.jvp(tangents: tangents.baseAddress! + start * k * d, k: k, workspace: ws) {
                dst.update(from: jv, count: count * k * d)
            } else {
                dst.update(repeating: 0, count: count * k * d)
            }
            start += count
        }
    }

    /// Samples per recorded pass with `k` tangents: values and their k
    /// tangents (about (1 + k) floats per value element) within 2^24 floats;
    /// at least 1. An MLP of width 256 takes its whole batch.
    func recordedChunkSize(tangents k: Int) -> Int {
        let perSample = (1 + k) * Swift.max(1, plan.batchedSizePerSample)
        return Swift.max(1, (1 << 24) / perSample)
    }

    /// Exact divergence from one batched k = d tangent pass, chunked so that
    /// at most about 4 M tangent floats of the widest layer are live.
    /// - Cost: about (1 + d) forward passes; no tape.
    public func velocityDivergence(times: UnsafeBufferPointer<Double>,
                                   points: UnsafeBufferPointer<Float>,
                                   into velocities: UnsafeMutableBufferPointer<Float>,
                                   divergences: UnsafeMutableBufferPointer<Double>,
                                   workspace: FieldWorkspace) {
        velocityDivergence(times: times, points: points, contexts: nil, into: velocities, divergences: divergences,
                           workspace: workspace)
    }

    /// Exact divergences in x of a conditional network, each sample's
    /// context held fixed (nil: zeros; ignored by unconditional networks).
    public func velocityDivergence(times: UnsafeBufferPointer<Double>,
                                   points: UnsafeBufferPointer<Float>,
                                   contexts: UnsafeBufferPointer<Float>?,
                                   into velocities: UnsafeMutableBufferPointer<Float>,
                                   divergences: UnsafeMutableBufferPointer<Double>,
                                   workspace: FieldWorkspace) {
        let n = times.count, d = dimension, cm = graph.contextDimension
        if n == 0 { return }
        precondition(contexts.map { $0.count >= n * cm } ?? true)
        let ws = graphWorkspace(workspace)
        let ex = executor(likelihood: true)
        let chunk = Swift.max(1, Swift.min(n, (1 << 22) / Swift.max(1, d * plan.widestBatchedSize)))
        let basis = ws.scratch2.reserve(chunk * d * d)
        basis.update(repeating: 0, count: chunk * d * d)
        for i in 0..<chunk { for j in 0..<d { basis[(i * d + j) * d + j] = 1 } }
        var start = 0
        while start < n {
            let m = Swift.min(chunk, n - start)
            let sub = UnsafeBufferPointer(rebasing: times[start..<start + m])
            let c = cm > 0 ? contexts.map { UnsafePointer($0.baseAddress! + start * cm) } : nil
            let out = ex.forward(times: sub, points: points.baseAddress! + start * d, context: c, batch: m,
                                 workspace: ws, record: true)
            (velocities.baseAddress! + start * d).update(from: out, count: m * d)
            if let jv = ex.jvp(tangents: basis, k: d, workspace: ws) {
                for i in 0..<m {
                    var tr = 0.0
                    for j in 0..<d { tr += Double(jv[(i * d + j) * d + j]) }
                    divergences[start + i] = tr
                }
            } else {
                for i in 0..<m { divergences[start + i] = 0 }
            }
            start += m
        }
    }

    /// Convenience: velocities of a batch as a tensor. `x: [n, d]`, `t: [n]`.
    public func velocity(t: [Double], x: Tensor) -> Tensor {
        precondition(x.shape == [t.count, dimension], "x must be [\(t.count), \(dimension)]")
        return velocity(t: t, x: x, context: nil)
    }

    /// Convenience: velocities of a batch of a conditional network, on the
    /// calling thread in passes of `batchChunk(count:threads: 1)` samples.
    /// `x: [n] + sampleShape` or `[n, d]`, `t: [n]`, `context: [n, m]`
    /// (class labels as floats for label contexts; nil gives zeros).
    public func velocity(t: [Double], x: Tensor, context: Tensor?) -> Tensor {
        precondition(x.count == t.count * dimension, "x must hold \(t.count) samples of \(dimension) values")
        precondition(context.map { $0.count == t.count * graph.contextDimension } ?? true, "context size")
        var v = Tensor(shape: x.shape)
        let chunk = batchChunk(count: t.count, threads: 1)
        withWorkspace { ws in
            t.withUnsafeBufferPointer { tb in
                x.scalars.withUnsafeBufferPointer { xb in
                    v.scalars.withUnsafeMutableBufferPointer { vb in
                        if let context {
                            context.scalars.withUnsafeBufferPointer {
                                velocity(times: tb, points: xb, contexts: $0, into: vb, workspace: ws, chunk: chunk)
                            }
                        } else {
                            velocity(times: tb, points: xb, contexts: nil, into: vb, workspace: ws, chunk: chunk)
                        }
                    }
                }
            }
        }
        return v
    }

    /// Convenience: exact divergences of a batch.
    public func divergence(t: [Double], x: Tensor) -> [Double] {
        precondition(x.shape == [t.count, dimension])
        var v = Tensor(shape: x.shape)
        var div = [Double](repeating: 0, count: t.count)
        let ws = makeWorkspace()
        t.withUnsafeBufferPointer { tb in
            x.scalars.withUnsafeBufferPointer { xb in
                v.scalars.withUnsafeMutableBufferPointer { vb in
                    div.withUnsafeMutableBufferPointer { db in
                        velocityDivergence(times: tb, points: xb, into: vb, divergences: db, workspace: ws)
                    }
                }
            }
        }
        return div
    }

    /// A copy of this model with other parameter values (same graph shape),
    /// e.g. a trainer's EMA weights.
    public func replacingParameters(_ parameters: [Graph.Parameter]) throws -> Model {
        var g = graph
        guard parameters.count == g.parameters.count,
              zip(parameters, g.parameters).allSatisfy({ $0.tensor.shape == $1.tensor.shape }) else {
            throw FlowError.shapeMismatch("replacement parameters do not match the graph's")
        }
        g.parameters = parameters
        return try Model(graph: g, metadata: metadata, packWeights: plan.parameters.packsWeights)
    }
}

/// Differentiation of a graph with respect to its parameters, for trainers.
///
/// Holds its own mutable parameter copy; `forward` then `backward` on one
/// workspace gives parameter gradients of Σ_i ⟨g_i, v_i⟩ for output
/// gradients g.
public final class GraphDifferentiator: @unchecked Sendable {
    let plan: ExecutionPlan
    let store: ParameterStore

    public init(graph: Graph) throws {
        plan = try ExecutionPlan(graph, packWeights: false)
        store = ParameterStore(graph, packBackward: true)
    }

    public var graph: Graph { plan.graph }
    var executor: Executor { Executor(plan: plan, params: store) }

    /// The most samples a recorded pass (forward + backward) should hold at
    /// once: a power of two ≤ 1024 keeping values, gradients and caches
    /// (about 3 floats per value element) within 2^24 floats (64 MiB).
    /// An MLP of width 256: 1024; a 28×28 U-Net: 1 or 2. Trainers cap
    /// their chunks with it, so a big network trains in bounded memory.
    public var preferredChunkSize: Int {
        let perSample = 3 * plan.batchedSizePerSample
        var c = 1
        while c < 1024 && 2 * c * Swift.max(perSample, 1) <= 1 << 24 { c *= 2 }
        return c
    }

    /// Indices (into `graph.parameters`) of the trainable parameters.
    public var trainableIndices: [Int] { graph.parameters.indices.filter { graph.parameters[$0].isTrainable } }

    /// Mutable access to parameter `i`'s elements (optimisers update in place).
    /// Not thread-safe: call between evaluations.
    public func withParameter<R>(_ i: Int, _ body: (UnsafeMutableBufferPointer<Float>) throws -> R) rethrows -> R {
        defer { store.repack(parameter: i) }
        return try body(UnsafeMutableBufferPointer(start: store.pointers[i], count: store.counts[i]))
    }

    /// The current parameters as graph parameters.
    public var parameters: [Graph.Parameter] { store.snapshot(graph.parameters) }

    /// Parameter `i`'s elements, for updates split over threads (disjoint
    /// ranges per thread). Not thread-safe against evaluations; call
    /// `repack(parameter:)` once the parameter is final, before the next pass.
    func parameterPointer(_ i: Int) -> UnsafeMutablePointer<Float> { store.pointers[i] }

    /// Rebuilds parameter `i`'s packed copies (after writes through
    /// `parameterPointer`). Different parameters may repack concurrently.
    func repack(parameter i: Int) { store.repack(parameter: i) }

    /// Parameter `i`'s gradient in `workspace` after `backward`.
    func gradientPointer(_ i: Int, workspace: GraphWorkspace) -> UnsafePointer<Float> {
        UnsafePointer(workspace.parameterGradients[i].pointer)
    }

    /// Forward pass recording derivatives; returns the output `[n, d]` (valid
    /// until the workspace is used again).
    public func forward(times: UnsafeBufferPointer<Double>, points: UnsafePointer<Float>,
                        workspace: GraphWorkspace) -> UnsafePointer<Float> {
        UnsafePointer(executor.forward(times: times, points: points, batch: times.count, workspace: workspace, record: true))
    }

    /// `forward` of a conditional graph: `contexts` is `[n, contextDimension]`.
    public func forward(times: UnsafeBufferPointer<Double>, points: UnsafePointer<Float>, contexts: UnsafePointer<Float>?,
                        workspace: GraphWorkspace) -> UnsafePointer<Float> {
        UnsafePointer(executor.forward(times: times, points: points, context: contexts, batch: times.count,
                                       workspace: workspace, record: true))
    }

    /// Zeroes, then fills `workspace`'s parameter gradients with the gradient
    /// of Σ_i ⟨outputGradient_i, v_i⟩ for the last `forward` on `workspace`.
    public func backward(outputGradient: UnsafePointer<Float>, workspace: GraphWorkspace) {
        let ex = executor
        ex.zeroParameterGradients(workspace)
        ex.backward(outputGradient: outputGradient, workspace: workspace)
    }

    /// Read access to parameter `i`'s gradient after `backward`.
    public func withGradient<R>(_ i: Int, workspace: GraphWorkspace,
                                _ body: (UnsafeBufferPointer<Float>) throws -> R) rethrows -> R {
        try body(UnsafeBufferPointer(start: workspace.parameterGradients[i].pointer, count: store.counts[i]))
    }
}

extension Model {
    /// Velocities of a large batch, split into chunks of `chunkSize` rows
    /// (narrower at the end on several threads: `TaperedChunks`) run on up
    /// to `threads` threads. Results do not depend on `threads`.
    /// `times: [n]`, `points`/`velocities: [n, d]`.
    /// Default chunks: `preferredChunkSize` (1024 rows of a 256-wide MLP
    /// keep its activations (1 MiB) in L2), or for networks whose
    /// `batchChunkSize` is larger (U-Nets: 4) up to that many samples where
    /// two chunks per thread remain.
    public func velocity(times: UnsafeBufferPointer<Double>, points: UnsafeBufferPointer<Float>,
                         contexts: UnsafeBufferPointer<Float>? = nil,
                         into velocities: UnsafeMutableBufferPointer<Float>,
                         threads: Int, chunkSize: Int? = nil) {
        let n = times.count, d = dimension, m = graph.contextDimension
        let chunkSize = chunkSize ?? batchChunk(count: n, threads: threads)
        // One network pass never holds more than batchChunkSize samples.
        let pass = Swift.min(chunkSize, Swift.max(preferredChunkSize, batchChunkSize))
        if n <= chunkSize {
            // One chunk: the threads go to ops that split a call's work.
            withWorkspace { fw in
                let ws = graphWorkspace(fw)
                ws.opThreads = threads
                defer { ws.opThreads = 1 }
                velocity(times: times, points: points, contexts: contexts, into: velocities, workspace: ws, chunk: pass)
            }
            return
        }
        let schedule = TaperedChunks(count: n, chunk: chunkSize, threads: threads)
        Parallel.forEachChunk(count: schedule.chunks, chunkSize: 1, threads: threads) { _, k in
            let r = schedule.range(k.lowerBound)
            withWorkspace { ws in
                velocity(times: UnsafeBufferPointer(rebasing: times[r]),
                         points: UnsafeBufferPointer(rebasing: points[(r.lowerBound * d)..<(r.upperBound * d)]),
                         contexts: contexts.map { UnsafeBufferPointer(rebasing: $0[(r.lowerBound * m)..<(r.upperBound * m)]) },
                         into: UnsafeMutableBufferPointer(rebasing: velocities[(r.lowerBound * d)..<(r.upperBound * d)]),
                         workspace: ws, chunk: pass)
            }
        }
    }

    /// The chunks of a batched call on `threads` threads: chunks of `chunk`
    /// samples, except that the last `threads` × `chunk` samples or so
    /// (all of the batch's last R samples, threads × chunk ≤ R < (threads
    /// + 1) × chunk) run in chunks of max(1, chunk / 4). Threads claim
    /// chunks as they finish, so a thread that the machine holds up (a
    /// neighbour's process, an interrupt) leaves the others at most a
    /// narrow chunk to wait for at the end: a U-Net at batch 64 on 2
    /// threads runs 14 chunks of 4 and 8 of 1 rather than ending on a
    /// 4-sample chunk (~20 ms of one thread's ~170). One thread: uniform.
    /// Values never depend on it: every sample is computed on its own.
    struct TaperedChunks {
        let count: Int, wide: Int, narrow: Int, wideChunks: Int, chunks: Int

        init(count n: Int, chunk: Int, threads: Int) {
            count = n
            wide = Swift.max(1, chunk)
            let tail = threads > 1 && wide > 1 ? threads * wide : 0
            wideChunks = n > tail ? (n - tail) / wide : 0
            narrow = tail > 0 ? Swift.max(1, wide / 4) : wide
            let rest = n - wideChunks * wide
            chunks = wideChunks + (rest + narrow - 1) / narrow
        }

        /// Chunk k's samples.
        func range(_ k: Int) -> Range<Int> {
            if k < wideChunks { return k * wide..<(k + 1) * wide }
            let start = wideChunks * wide + (k - wideChunks) * narrow
            return start..<Swift.min(count, start + narrow)
        }
    }

    /// Exact divergences of a large batch, chunked over threads like `velocity(…threads:)`.
    public func velocityDivergence(times: UnsafeBufferPointer<Double>, points: UnsafeBufferPointer<Float>,
                                   into velocities: UnsafeMutableBufferPointer<Float>,
                                   divergences: UnsafeMutableBufferPointer<Double>,
                                   threads: Int, chunkSize: Int = 512) {
        let d = dimension
        Parallel.forEachChunk(count: times.count, chunkSize: chunkSize, threads: threads) { _, r in
            withWorkspace { ws in
                velocityDivergence(
                    times: UnsafeBufferPointer(rebasing: times[r]),
                    points: UnsafeBufferPointer(rebasing: points[(r.lowerBound * d)..<(r.upperBound * d)]),
                    into: UnsafeMutableBufferPointer(rebasing: velocities[(r.lowerBound * d)..<(r.upperBound * d)]),
                    divergences: UnsafeMutableBufferPointer(rebasing: divergences[r]), workspace: ws)
            }
        }
    }
}

extension ExecutionPlan {
    /// Floats per sample of all batched values together: what a recorded
    /// pass keeps (sizes chunks of JVPs and training passes).
    var batchedSizePerSample: Int {
        zip(graph.values, sizes).reduce(0) { $0 + ($1.0.isBatched ? $1.1 : 0) }
    }
}
