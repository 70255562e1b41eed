/// The contract every operation of the graph IR implements, and the value
/// type graphs store.
///
/// One op, one home: each operation is a small `Equatable` struct in
/// `Graph/Ops/<Name>.swift` holding its attributes, its shape rule, forward
/// pass, k-tangent JVP, VJP, the ONNX nodes it exports to and the ONNX op
/// types it imports from. `OpRegistry` lists them; the executor, planner,
/// exporter and importer reach ops only through this protocol and never
/// switch on op kinds.
///
/// Layouts (runtime): a batched value is `[batch] + shape`, its tangents
/// `[batch, k] + shape`, its gradient `[batch] + shape`; a parameter is its
/// `shape`. Axes stored in ops count per-sample axes only.
protocol GraphOp: Sendable, Equatable {
    /// A short name for messages, node names and `flowrt inspect`.
    var kindName: String { get }

    /// The per-sample output shape, after checking the inputs.
    /// - Throws: `.shapeMismatch`, `.unsupported` or `.invalidModel` naming `node`.
    func outputShape(_ inputs: [Graph.Value], node: String) throws -> [Int]

    /// The op applied to constant tensors (build-time folding).
    /// Default: `.unsupported` (the importer folds shape chains itself).
    func fold(_ inputs: [Tensor], node: String) throws -> Tensor

    /// y = op(inputs) into `c.out` (`[batch] + outputShape`). With
    /// `c.record`, caches what `jvp` and `vjp` need in `c.aux`.
    func forward(_ c: OpContext)

    /// ẏ = Σ_i ∂op/∂input_i · input_i˙ into `c.out` (`[batch, k] + outputShape`)
    /// after a recorded forward pass; inputs without a tangent contribute 0.
    func jvp(_ c: OpContext)

    /// Adds (g · ∂op/∂input_i) into every input that carries a gradient;
    /// `c.out` holds the output gradient g (`[batch] + outputShape`) and may
    /// be overwritten.
    func vjp(_ c: OpContext)

    /// Emits the ONNX nodes computing this op (default: `.unsupported`).
    func exportONNX(_ e: inout ONNXExporter, _ node: Graph.Node) throws

    /// Multiply-adds × 2 per sample (for benchmarks and `inspect`).
    func flops(_ inputs: [Graph.Value], output: Graph.Value) -> Int

    /// A weight input this op wants packed for `fr_gemm_packed`, if any.
    func weightPacking(_ inputs: [Graph.Value]) -> WeightPacking?

    /// A weight input this op wants as its own bf16 copy for passes run in
    /// `Precision.bf16` (ops other than Linear, whose bf16 copy follows its
    /// `weightPacking`), if any.
    func bf16Packing(_ inputs: [Graph.Value]) -> BF16Packing?

    /// A weight input this op wants kept, in float32, in a layout of its own
    /// that it computes from the weight (a 3×3 convolution's Winograd
    /// transform), if any. Kept when the store packs weights.
    func derivedWeights(_ inputs: [Graph.Value]) -> DerivedWeights?

    /// ONNX op types this op imports, each with its import rule.
    static var onnxImports: [String: ONNXImportRule] { get }
}

/// A weight the parameter store keeps packed in panels for `fr_gemm_packed`.
struct WeightPacking {
    /// Which input of the node holds the weight.
    var input: Int
    var out: Int, `in`: Int
    /// Weight stored `[in, out]` (MatMul) rather than `[out, in]` (PyTorch).
    var inOutLayout: Bool
}

/// A weight the parameter store keeps as a bf16 copy under `Precision.bf16`:
/// `count` UInt16 values written by `pack` from the float32 weight.
struct BF16Packing {
    /// Which input of the node holds the weight.
    var input: Int
    var count: Int
    var pack: (UnsafePointer<Float>, UnsafeMutablePointer<UInt16>) -> Void
}

/// A weight the parameter store keeps as `count` floats that `derive`
/// computes from the float32 weight, rebuilt whenever the weight changes.
struct DerivedWeights {
    /// Which input of the node holds the weight.
    var input: Int
    var count: Int
    var derive: (UnsafePointer<Float>, UnsafeMutablePointer<Float>) -> Void
}

/// Imports one ONNX node (`index` in the graph's node list).
typealias ONNXImportRule = (inout ONNXImporter, ONNXProtoModel.Node, Int) throws -> Void

extension GraphOp {
    func fold(_ inputs: [Tensor], node: String) throws -> Tensor {
        throw FlowError.unsupported(
            "node '\(node)': \(kindName) of constants only; fold it before building (the ONNX importer does)")
    }
    func exportONNX(_ e: inout ONNXExporter, _ node: Graph.Node) throws {
        throw FlowError.unsupported("node '\(node.name)': \(kindName) has no ONNX export")
    }
    func flops(_ inputs: [Graph.Value], output: Graph.Value) -> Int { 0 }
    func weightPacking(_ inputs: [Graph.Value]) -> WeightPacking? { nil }
    func bf16Packing(_ inputs: [Graph.Value]) -> BF16Packing? { nil }
    func derivedWeights(_ inputs: [Graph.Value]) -> DerivedWeights? { nil }
    static var onnxImports: [String: ONNXImportRule] { [:] }

    func isEqual(_ other: any GraphOp) -> Bool { (other as? Self) == self }
}

/// An operation of the IR: any `GraphOp`, compared by value.
///
/// Built with the static constructors (`.linear(…)`, `.conv(…)`, …) that each
/// op file adds; inspected with `as(_:)`.
public struct Operation: Sendable, Equatable, CustomStringConvertible {
    let op: any GraphOp

    init(_ op: any GraphOp) { self.op = op }

    public static func == (a: Operation, b: Operation) -> Bool { a.op.isEqual(b.op) }

    /// A short name for messages and node names.
    public var kindName: String { op.kindName }
    public var description: String { "\(op)" }

    /// The op as a concrete type, or nil.
    func `as`<T: GraphOp>(_: T.Type) -> T? { op as? T }
}

/// What an op sees while it runs: its node, the batch and the workspace's
/// buffers. Built by the executor for each node; ops use these accessors and
/// never index the workspace themselves.
struct OpContext {
    let executor: Executor
    /// Index of the node in `graph.nodes`.
    let index: Int
    let node: Graph.Node
    let ws: GraphWorkspace
    let batch: Int
    /// Tangents per sample (JVP only; 0 otherwise).
    let k: Int
    /// Whether the forward pass caches what derivatives need.
    let record: Bool
    /// Forward: the output values. JVP: the output tangents. VJP: the output gradient.
    let out: UnsafeMutablePointer<Float>

    var graph: Graph { executor.graph }
    var plan: ExecutionPlan { executor.plan }
    var inputCount: Int { node.inputs.count }

    /// Per-sample shape of input `i` (full shape for a parameter).
    @inline(__always) func shape(_ i: Int) -> [Int] { graph.values[node.inputs[i]].shape }
    /// Per-sample shape of the output.
    var outputShape: [Int] { graph.values[node.output].shape }
    /// Per-sample element count of input `i` (full count for a parameter).
    @inline(__always) func size(_ i: Int) -> Int { plan.sizes[node.inputs[i]] }
    var outputSize: Int { plan.sizes[node.output] }
    @inline(__always) func isBatched(_ i: Int) -> Bool { graph.values[node.inputs[i]].isBatched }

    /// Input `i`'s values (a batched buffer or a parameter).
    @inline(__always) func input(_ i: Int) -> UnsafeMutablePointer<Float> { executor.data(node.inputs[i], ws) }
    /// Input `i`'s tangents, or nil when it does not depend on x.
    @inline(__always) func tangent(_ i: Int) -> UnsafeMutablePointer<Float>? { executor.tangent(node.inputs[i], ws) }
    /// Where to accumulate input `i`'s gradient, or nil when it needs none.
    @inline(__always) func gradient(_ i: Int) -> UnsafeMutablePointer<Float>? { executor.gradient(node.inputs[i], ws) }
    /// The forward output values (valid in JVP and VJP too).
    var outputValue: UnsafeMutablePointer<Float> { executor.data(node.output, ws) }

    /// This node's plan of type `P` for this pass's batch and tangent count
    /// (`GraphWorkspace.plan`): `make` runs on the first call at them only.
    @inline(__always) func plan<P: AnyObject>(_ make: () -> P) -> P {
        ws.plan(node: index, owner: executor.plan, batch: batch, k: k, make)
    }
    /// This node's plan of type `P` that depends on static shapes only.
    @inline(__always) func staticPlan<P: AnyObject>(_ make: () -> P) -> P {
        ws.plan(node: index, owner: executor.plan, batch: -1, k: -1, make)
    }

    /// The node's derivative cache, grown to `count` floats (forward).
    @inline(__always) func aux(_ count: Int) -> UnsafeMutablePointer<Float> { ws.aux[index].reserve(count) }
    /// The node's derivative cache as recorded (JVP, VJP).
    var recorded: UnsafeMutablePointer<Float> { ws.aux[index].pointer }
    /// Scratch shared by all nodes: valid only inside one op call.
    @inline(__always) func scratch(_ count: Int) -> UnsafeMutablePointer<Float> { ws.scratch.reserve(count) }
    /// A second scratch buffer, independent of `scratch`.
    @inline(__always) func scratch2(_ count: Int) -> UnsafeMutablePointer<Float> { ws.scratch3.reserve(count) }
    /// The packed copy of this node's weight (see `GraphOp.weightPacking`).
    var packedWeights: UnsafeMutablePointer<Float>? { executor.params.packed[index] }
    /// This node's weight in the op's own layout (see `GraphOp.derivedWeights`), or nil.
    var derivedWeights: UnsafeMutablePointer<Float>? { executor.params.derived[index] }
    /// The copy of this node's weight packed for its input gradient
    /// (`fr_linear_backward`), kept by trainers' parameter stores; else nil.
    var packedBackwardWeights: UnsafeMutablePointer<Float>? { executor.params.packedBackward[index] }
    /// The bf16 copy of this node's packed weight when the pass runs in
    /// bf16 and the layer has one (`Precision`), else nil.
    var packedWeightsBF16: UnsafeMutablePointer<UInt16>? {
        executor.precision == .bf16 ? executor.params.bf16Weights(index) : nil
    }
    /// Raw scratch of at least `bytes` bytes (the float scratch): valid only inside one op call.
    @inline(__always) func scratchBytes(_ bytes: Int) -> UnsafeMutableRawPointer {
        UnsafeMutableRawPointer(ws.scratch.reserve((bytes + 3) / 4))
    }
    /// Leading axes of a tangent (`[batch, k]`) or value (`[batch]`).
    var lead: [Int] { k > 0 ? [batch, k] : [batch] }
}

/// Every operation type, and through them the ONNX op types FlowRuntime
/// imports. Adding an op means adding its file and one entry here.
enum OpRegistry {
    static let types: [any GraphOp.Type] = [
        LinearOp.self, MatMulOp.self, BinaryOp.self, UnaryOp.self, ConcatOp.self, LayerNormOp.self, ReduceOp.self,
        ReshapeOp.self, TransposeOp.self, SliceOp.self, PadOp.self, ResizeOp.self, LinearResizeOp.self, TileOp.self,
        EmbeddingOp.self, ConvOp.self, ConvTransposeOp.self, SoftmaxOp.self, GroupNormOp.self,
        PoolOp.self,
    ]
}
