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
/// - Inputs: `x` with per-sample shape `[dim]` and `t` with per-sample shape
///   `[]` or `[1]` (both are `batch` contiguous floats). One output with
///   per-sample shape `[dim]`.
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
    /// The value id of the output (per-sample `[dim]`).
    public let output: ValueID

    /// The state dimension d.
    public var dimension: Int { values[x].shape.elementCount }
}

/// Index of a value in `Graph.values`.
public typealias ValueID = Int

extension Graph {
    /// A tensor in the graph.
    public struct Value: Sendable, Equatable {
        public enum Source: Sendable, Equatable {
            case inputX, inputT
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

/// The operations of the IR. Each is implemented in `Graph/Ops/<Name>.swift`
/// with its forward, JVP and VJP.
public enum Operation: Sendable, Equatable {
    /// y = f(x · Wᵀ + b) over the last axis: inputs `[x, W]` or `[x, W, b]`,
    /// x batched `[..., in]`, W a parameter `[out, in]` (`weightTransposed`,
    /// PyTorch's layout) or `[in, out]`, b a parameter `[out]`. Gemm and
    /// MatMul(+Add) import to this; `activation` fuses a pointwise function.
    case linear(weightTransposed: Bool, activation: UnaryFunction)
    /// Broadcasting elementwise binary operation (numpy rules on per-sample
    /// shapes; a parameter broadcasts over the batch).
    case binary(BinaryFunction)
    /// Pointwise function.
    case unary(UnaryFunction)
    /// Concatenation along a per-sample axis.
    case concat(axis: Int)
    /// Layer normalisation over the trailing per-sample axes from `axis`:
    /// inputs `[x, scale, bias]` (scale, bias parameters of the normalised shape)
    /// or `[x]`. y = (x − mean) / sqrt(var + epsilon) · scale + bias.
    case layerNorm(axis: Int, epsilon: Float)
    /// Mean over per-sample axes.
    case reduceMean(axes: [Int], keepDims: Bool)
    /// Sum over per-sample axes.
    case reduceSum(axes: [Int], keepDims: Bool)
    /// New per-sample shape with the same element count.
    case reshape(shape: [Int])
}

/// Elementwise binary functions with numpy broadcasting.
public enum BinaryFunction: String, Sendable, Equatable, CaseIterable {
    case add = "Add", sub = "Sub", mul = "Mul", div = "Div"
}

/// Pointwise functions. The derivative of each is known in closed form; the
/// kernels live in the C target CKernels (vectorised per ISA).
public enum UnaryFunction: Sendable, Equatable, Hashable {
    case identity, relu, sigmoid, tanh, silu, selu, gelu, geluTanh
    case leakyRelu(slope: Float)
    case elu(alpha: Float)
    /// (1/β) log(1 + exp(βx)), and x where βx > threshold (PyTorch's definition).
    case softplus(beta: Float, threshold: Float)
    case erf, exp, log, sqrt, neg, sin, cos, square, reciprocal, abs
    /// x^p for a constant p.
    case pow(Float)
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
    /// counting linear layers only (what the benchmarks report).
    public var flopsPerSample: Int {
        var f = 0
        for node in nodes {
            if case .linear(let transposed, _) = node.operation {
                let w = values[node.inputs[1]].shape
                let rows = values[node.inputs[0]].shape.dropLast().reduce(1, *)
                let (o, i) = transposed ? (w[0], w[1]) : (w[1], w[0])
                f += 2 * rows * o * i
            }
        }
        return f
    }
}
