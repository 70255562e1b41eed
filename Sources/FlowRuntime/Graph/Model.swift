/// A velocity network v̂(t, x): an immutable graph plus metadata.
///
/// A `Model` is immutable after it is built or loaded and safe for concurrent
/// use from many threads; each caller brings its own `FieldWorkspace`
/// (`makeWorkspace()`), which keeps buffers between calls so that repeated
/// evaluations of one batch size allocate nothing after the first.
public final class Model: VelocityField, @unchecked Sendable {
    /// The network.
    public let graph: Graph
    /// Key/value metadata (`flowrt.*` keys on export, ONNX metadata_props on import).
    public let metadata: [String: String]
    /// Compiled execution plan (value sizes, dependence on x, gradients).
    let plan: ExecutionPlan

    /// - Throws: `FlowError.invalidModel` when the graph is inconsistent.
    public init(graph: Graph, metadata: [String: String] = [:]) throws {
        self.graph = graph
        self.metadata = metadata
        self.plan = try ExecutionPlan(graph)
    }

    public var dimension: Int { graph.dimension }

    public func makeWorkspace() -> FieldWorkspace { GraphWorkspace() }
}
