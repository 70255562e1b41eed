/// The graph IR: a DAG of tensor operations computing a velocity v(t, x).
///
/// Native builders (`GraphBuilder`, `VelocityMLP`) and the ONNX importer
/// produce the same `Graph`, so an imported PyTorch network can be sampled,
/// differentiated, fine-tuned and exported again.
///
/// Conventions:
/// - A value is *batched* (one slice per sample; runtime layout
///   `[batch] + shape`) or a *parameter* (one tensor for all samples, layout
///   `shape`). Every axis stored in an `Operation` counts the per-sample axes
///   only: axis 0 is the first axis after the batch.
/// - Inputs: `x` with a per-sample shape of any rank (`[d]` for vectors,
///   `[C, H, W]` for images; `d` = its element count), `t` with per-sample
///   shape `[]` or `[1]` (both are `batch` contiguous floats), and
///   optionally a context `c` (per-sample `[m]` floats, or `[]` holding an
///   integer class label as a float). One output with x's element count.
/// - Every operation has a forward pass, a JVP pushing k tangents per sample
///   (tangent layout `[batch, k] + shape`), and a VJP (gradients of inputs
///   and parameters). Values that do not depend on `x` carry no tangent.
public struct Graph: Sendable {
    /// Every value: inputs, parameters, and node outputs.
    public internal(set) var values: [Value]
    /// Nodes in a topological order (each node's inputs are computed earlier).
    public internal(set) var nodes: [Node]
    /// Parameter tensors (weights, biases, constants), indexed by `Value.Source.parameter`.
    public var parameters: [Parameter]
    /// The value id of input `x` (per-sample `[dim]`).
    public let x: ValueID
    /// The value id of input `t` (per-sample `[]` or `[1]`).
    public let t: ValueID
    /// The value id of the output (per-sample: x's shape).
    public let output: ValueID
    /// The value id of the context input, if the network is conditional.
    public internal(set) var context: ValueID? = nil

    /// The state dimension d (elements per sample).
    public var dimension: Int { values[x].shape.elementCount }
    /// The per-sample shape of x (`[d]`, or e.g. `[C, H, W]` for images).
    public var sampleShape: [Int] { values[x].shape }
    /// Context elements per sample (0 for an unconditional network).
    public var contextDimension: Int { context.map { Swift.max(1, values[$0].shape.elementCount) } ?? 0 }
}

/// Index of a value in `Graph.values`.
public typealias ValueID = Int

extension Graph {
    /// A tensor in the graph.
    public struct Value: Sendable, Equatable {
        public enum Source: Sendable, Equatable {
            case inputX, inputT, inputContext
            /// Index into `Graph.parameters`.
            case parameter(Int)
            /// Index into `Graph.nodes`.
            case node(Int)
        }
        /// A name (from ONNX, or made up by a builder); unique in the graph.
        public var name: String
        /// Per-sample shape if `isBatched`, otherwise the full shape.
        public var shape: [Int]
        /// Whether the value has one slice per sample.
        public var isBatched: Bool
        public var source: Source
    }

    /// A named tensor owned by the graph.
    public struct Parameter: Sendable, Equatable {
        public var name: String
        public var tensor: Tensor
        /// Whether training updates it (weights, biases, LayerNorm scales);
        /// false for constants (frequencies, epsilons).
        public var isTrainable: Bool
        public init(name: String, tensor: Tensor, isTrainable: Bool) {
            self.name = name
            self.tensor = tensor
            self.isTrainable = isTrainable
        }
    }

    /// One operation application.
    public struct Node: Sendable, Equatable {
        public var operation: Operation
        public var inputs: [ValueID]
        public var output: ValueID
        /// Name for messages (the ONNX node name, or a builder's).
        public var name: String
    }
}

extension Graph {
    /// Whether a value depends on `x` (and so carries a tangent in a JVP).
    /// - Complexity: O(values).
    func dependsOnX() -> [Bool] {
        var dep = [Bool](repeating: false, count: values.count)
        dep[x] = true
        for node in nodes where node.inputs.contains(where: { dep[$0] }) {
            dep[node.output] = true
        }
        return dep
    }

    /// Number of multiply-adds ×2 (FLOPs) of one forward pass per sample,
    /// as each op counts them (Linear, Conv, MatMul; pointwise ops count 0).
    public var flopsPerSample: Int {
        nodes.reduce(0) { $0 + $1.operation.op.flops($1.inputs.map { values[$0] }, output: values[$1.output]) }
    }
}
