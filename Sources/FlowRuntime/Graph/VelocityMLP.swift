/// Native velocity networks.
///
/// `VelocityMLP` builds v(t, x) = W_L σ(… σ(W_1 [x, φ(t)] + b_1) …) + b_L with
/// φ(t) = t (concatenated) or a sinusoidal embedding
/// [sin(2π f_i t), cos(2π f_i t)] with frequencies f_i = 2^(i/2), i < K.
/// With `residual`, hidden layers are blocks h ← h + W₂ σ(W₁ LN(h) + b₁) + b₂.
///
/// Conditional (`contextDimension` m > 0): a context input c `[m]` per
/// sample is concatenated after the time features, v(t, x, c) =
/// W_L σ(… σ(W_1 [x, φ(t), c] + b_1) …) + b_L (DESIGN.md §5). With m = 0
/// (the default) the graph is exactly the unconditional one.
/// Label-conditional (`classCount` K > 0): a class label per sample (one
/// float, an integer in 0..<K) selects a row of a learned embedding
/// `[K, labelEmbeddingWidth]` (initialised N(0, 1), as PyTorch's
/// nn.Embedding), concatenated in the same place. Train with label dropout
/// to make the last class the null label ∅ of guidance.
///
/// Initialisation is PyTorch's default for Linear (U(−1/√fan_in, 1/√fan_in)
/// for weights and biases), drawn from `RandomStream(seed, .initialization,
/// layer)`, so a seed gives the same network everywhere.
public struct VelocityMLP: Sendable, Equatable {
    public enum TimeEncoding: Sendable, Equatable {
        /// t is appended to x: input width d + 1.
        case concat
        /// 2K sinusoidal features of t are appended to x.
        case sinusoidal(frequencies: Int)
    }

    public var dimension: Int
    public var hiddenWidths: [Int]
    public var activation: UnaryFunction
    public var timeEncoding: TimeEncoding
    public var residual: Bool
    public var seed: UInt64
    /// Context values per sample m (0: unconditional).
    public var contextDimension: Int
    /// Classes K of a label-conditional MLP (0: none). Exclusive with
    /// `contextDimension`.
    public var classCount: Int
    /// Width of a class label's embedding (default 16).
    public var labelEmbeddingWidth: Int

    public init(dimension: Int, hiddenWidths: [Int] = [256, 256, 256], activation: UnaryFunction = .silu,
                timeEncoding: TimeEncoding = .concat, residual: Bool = false, seed: UInt64 = 0,
                contextDimension: Int = 0, classCount: Int = 0, labelEmbeddingWidth: Int = 16) {
        self.dimension = dimension
        self.hiddenWidths = hiddenWidths
        self.activation = activation
        self.timeEncoding = timeEncoding
        self.residual = residual
        self.seed = seed
        self.contextDimension = contextDimension
        self.classCount = classCount
        self.labelEmbeddingWidth = labelEmbeddingWidth
    }

    /// Builds the graph.
    /// - Throws: `.invalidArgument` for a zero dimension or width, a
    ///   context dimension outside 0...65536, or a residual net whose hidden
    ///   widths differ.
    public func makeGraph() throws -> Graph {
        guard dimension > 0, dimension <= 1 << 16 else { throw FlowError.invalidArgument("dimension \(dimension) must be in 1...65536") }
        guard !hiddenWidths.isEmpty, hiddenWidths.allSatisfy({ $0 > 0 && $0 <= 1 << 16 }) else {
            throw FlowError.invalidArgument("hidden widths \(hiddenWidths) must be non-empty and in 1...65536")
        }
        if residual, Set(hiddenWidths).count != 1 {
            throw FlowError.invalidArgument("a residual MLP needs equal hidden widths, got \(hiddenWidths)")
        }
        guard contextDimension >= 0, contextDimension <= 1 << 16 else {
            throw FlowError.invalidArgument("context dimension \(contextDimension) must be in 0...65536")
        }
        guard classCount >= 0, classCount <= 1 << 20, labelEmbeddingWidth > 0, labelEmbeddingWidth <= 1 << 16 else {
            throw FlowError.invalidArgument("class count \(classCount) must be in 0...2^20 and the label embedding width \(labelEmbeddingWidth) in 1...65536")
        }
        guard classCount == 0 || contextDimension == 0 else {
            throw FlowError.invalidArgument("an MLP takes a float context (contextDimension) or class labels (classCount), not both")
        }
        var b = GraphBuilder(dimension: dimension)
        var context: [ValueID] = []
        var contextWidth = contextDimension
        if contextDimension > 0 {
            context = [b.addContext(shape: [contextDimension])]
        } else if classCount > 0 {
            let label = b.addContext(shape: [])
            var rng = RandomStream(seed: seed, purpose: .initialization, index: 1 << 32)
            let table = Tensor(shape: [classCount, labelEmbeddingWidth],
                               scalars: (0..<(classCount * labelEmbeddingWidth)).map { _ in Float(rng.nextNormal()) })
            let t = b.parameter("label.embedding", table)
            context = [try b.apply(.embedding, [t, label], name: "label.embed")]
            contextWidth = labelEmbeddingWidth
        }
        var layer: UInt64 = 0
        func init_(_ out: Int, _ inp: Int) -> (Tensor, Tensor) {
            var rng = RandomStream(seed: seed, purpose: .initialization, index: layer)
            layer += 1
            let bound = 1 / Double(inp).squareRoot()
            let w = (0..<(out * inp)).map { _ in Float((2 * rng.nextUniform() - 1) * bound) }
            let bias = (0..<out).map { _ in Float((2 * rng.nextUniform() - 1) * bound) }
            return (Tensor(shape: [out, inp], scalars: w), Tensor(shape: [out], scalars: bias))
        }
        var input: ValueID
        var width: Int
        switch timeEncoding {
        case .concat:
            input = try b.concat([b.x, b.t] + context, name: "xt")
            width = dimension + 1 + contextWidth
        case .sinusoidal(let k):
            guard k > 0 && k <= 1024 else { throw FlowError.invalidArgument("frequencies \(k) must be in 1...1024") }
            let freqs = (0..<k).map { Float(2 * Double.pi * Double(sqrt(pow(2.0, Double($0))))) }
            let f = b.parameter("time.frequencies", Tensor(shape: [k], scalars: freqs), trainable: false)
            let arg = try b.mul(b.t, f, name: "time.arg")
            let s = try b.unary(.sin, arg, name: "time.sin")
            let c = try b.unary(.cos, arg, name: "time.cos")
            input = try b.concat([b.x, s, c] + context, name: "xt")
            width = dimension + 2 * k + contextWidth
        }
        var h = input
        if residual {
            let w0 = hiddenWidths[0]
            let (w, bias) = init_(w0, width)
            h = try b.linear(h, weight: w, bias: bias, activation: .identity, name: "input")
            for (i, wi) in hiddenWidths.enumerated() {
                let scale = b.parameter("block\(i).norm.weight", Tensor(shape: [wi], repeating: 1))
                let shift = b.parameter("block\(i).norm.bias", Tensor(shape: [wi], repeating: 0))
                let n = try b.apply(.layerNorm(axis: -1, epsilon: 1e-5), [h, scale, shift], name: "block\(i).norm")
                let (w1, b1) = init_(wi, wi)
                let a = try b.linear(n, weight: w1, bias: b1, activation: activation, name: "block\(i).fc1")
                let (w2, b2) = init_(wi, wi)
                let r = try b.linear(a, weight: w2, bias: b2, activation: .identity, name: "block\(i).fc2")
                h = try b.add(h, r, name: "block\(i).residual")
            }
            width = w0
        } else {
            for (i, wi) in hiddenWidths.enumerated() {
                let (w, bias) = init_(wi, width)
                h = try b.linear(h, weight: w, bias: bias, activation: activation, name: "hidden\(i)")
                width = wi
            }
        }
        let (w, bias) = init_(dimension, width)
        let out = try b.linear(h, weight: w, bias: bias, activation: .identity, name: "output")
        return try b.finish(output: out)
    }

    /// Builds the model (graph plus metadata describing the architecture).
    public func makeModel() throws -> Model {
        try Model(graph: makeGraph(), metadata: ["flowrt.architecture": "mlp"])
    }
}

#if canImport(Glibc)
import Glibc
#endif
