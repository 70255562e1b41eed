#if canImport(Glibc)
import Glibc
#endif

/// A velocity network v̂(t, x): an immutable graph plus metadata.
///
/// A `Model` is immutable after it is built or loaded and safe for concurrent
/// use from many threads. Each caller brings its own `FieldWorkspace`
/// (`makeWorkspace()`), or borrows one from the model's pool
/// (`withWorkspace`); workspaces keep their buffers between calls, so
/// repeated evaluations of one batch size allocate nothing after the first.
public final class Model: VelocityField, @unchecked Sendable {
    /// The network.
    public let graph: Graph
    /// Key/value metadata (`flowrt.*` keys on export, ONNX metadata_props on import).
    public let metadata: [String: String]
    /// Compiled execution plan (value sizes, dependence on x, gradients).
    let plan: ExecutionPlan
    /// Samples per evaluation chunk (`chunkSize(peakLiveSize:flopsPerSample:)`).
    public let preferredChunkSize: Int
    /// Most samples per chunk of a batched velocity call
    /// (`batchChunkSize(peakLiveSize:flopsPerSample:preferred:)`).
    public let batchChunkSize: Int
    private let pool = WorkspacePool()
    /// Requested precisions (`setPrecision`); float32 by default.
    let precisionSetting = PrecisionSetting()

    /// - Throws: `FlowError.invalidModel` when the graph is inconsistent.
    public convenience init(graph: Graph, metadata: [String: String] = [:]) throws {
        try self.init(graph: graph, metadata: metadata, packWeights: PackedWeights.available)
    }

    /// `packWeights: false` runs Linear layers on the unpacked kernels (tests);
    /// true packs only where the CPU has the packed kernel.
    init(graph: Graph, metadata: [String: String] = [:], packWeights: Bool) throws {
        self.graph = graph
        self.metadata = metadata
        self.plan = try ExecutionPlan(graph, packWeights: packWeights)
        self.preferredChunkSize = Model.chunkSize(peakLiveSize: plan.peakLiveSize, flopsPerSample: graph.flopsPerSample)
        self.batchChunkSize = Model.batchChunkSize(peakLiveSize: plan.peakLiveSize, flopsPerSample: graph.flopsPerSample,
                                                   preferred: preferredChunkSize)
    }

    public var dimension: Int { graph.dimension }
    /// The per-sample shape of x (`[d]`, or `[C, H, W]` for images).
    public var sampleShape: [Int] { graph.sampleShape }
    /// Context values per sample (0: unconditional; 1 for a class label).
    public var contextDimension: Int { graph.contextDimension }
    /// The number of classes of a label-conditional network (the rows of the
    /// embedding its label indexes), or nil.
    public var classCount: Int? { graph.classCount }

    /// Checks host contexts `[n, contextDimension]`: finite, and for label
    /// contexts integers in 0..<classCount.
    /// - Throws: `.nonFinite` or `.invalidArgument` naming the sample.
    public func validateContexts(_ contexts: UnsafeBufferPointer<Float>, count n: Int) throws {
        let m = contextDimension
        guard contexts.count >= n * m else {
            throw FlowError.shapeMismatch("contexts hold \(contexts.count) values; \(n) samples need \(n * m)")
        }
        if let i = UnsafeBufferPointer(rebasing: contexts[0..<(n * m)]).firstNonFiniteIndex {
            throw FlowError.nonFinite("context of sample \(i / Swift.max(m, 1)) is not finite")
        }
        if let classes = classCount {
            for i in 0..<n {
                let c = contexts[i]
                guard c >= 0, c < Float(classes), c == c.rounded(.down) else {
                    throw FlowError.invalidArgument("label \(c) of sample \(i) is not a class in 0..<\(classes)")
                }
            }
        }
    }

    /// Number of trainable scalars.
    public var parameterCount: Int {
        graph.parameters.filter(\.isTrainable).reduce(0) { $0 + $1.tensor.count }
    }

    /// Convolution nodes by how their forward pass runs: Winograd's
    /// F(2×2, 3×3) (3×3, stride 1, ≥ 16 channels in and out, weights that
    /// are parameters, the AVX-512F path) or the direct implicit-im2col form.
    public var convolutionAlgorithms: (direct: Int, winograd: Int) {
        var direct = 0, winograd = 0
        for (n, node) in graph.nodes.enumerated() where node.operation.as(ConvOp.self) != nil {
            if plan.parameters.derived[n] != nil { winograd += 1 } else { direct += 1 }
        }
        return (direct, winograd)
    }

    public func makeWorkspace() -> FieldWorkspace { GraphWorkspace() }

    /// Runs `body` with a workspace borrowed from the model's pool (returned
    /// afterwards), so callers without their own workspace still reuse buffers.
    public func withWorkspace<R>(_ body: (FieldWorkspace) throws -> R) rethrows -> R {
        let ws = pool.take() ?? GraphWorkspace()
        defer { pool.give(ws) }
        return try body(ws)
    }

    /// A copy with other metadata.
    public func withMetadata(_ metadata: [String: String]) throws -> Model {
        let copy = try Model(graph: graph, metadata: metadata, packWeights: plan.parameters.packsWeights)
        copy.setPrecision(precision)
        copy.setPrecision(likelihoodPrecision, likelihood: true)
        return copy
    }
}

extension Graph {
    /// The number of classes of a label-conditional graph (the rows of the
    /// embedding its label context indexes), or nil.
    public var classCount: Int? {
        guard let c = context, values[c].shape.isEmpty else { return nil }
        return nodes.first { $0.operation.as(EmbeddingOp.self) != nil && $0.inputs[1] == c }
            .map { values[$0.inputs[0]].shape[0] }
    }
}

/// A small lock-protected free list of workspaces.
final class WorkspacePool: @unchecked Sendable {
    private let lock = Mutex()
    private var free: [GraphWorkspace] = []

    func take() -> GraphWorkspace? {
        lock.lock(); defer { lock.unlock() }
        return free.popLast()
    }

    func give(_ ws: GraphWorkspace) {
        lock.lock(); defer { lock.unlock() }
        if free.count < 16 { free.append(ws) }
    }
}
