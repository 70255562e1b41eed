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
    private let pool = WorkspacePool()

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
    }

    public var dimension: Int { graph.dimension }

    /// Number of trainable scalars.
    public var parameterCount: Int {
        graph.parameters.filter(\.isTrainable).reduce(0) { $0 + $1.tensor.count }
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
        try Model(graph: graph, metadata: metadata, packWeights: plan.parameters.packsWeights)
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
