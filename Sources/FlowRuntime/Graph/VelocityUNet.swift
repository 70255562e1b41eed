#if canImport(Glibc)
import Glibc
#endif

/// A native image velocity network v(t, x[, y]) with the U-Net layout of
/// guided-diffusion (Dhariwal & Nichol 2021) as torchcfm's
/// `UNetModelWrapper` uses it, so flow-matching users find the network they
/// know: x `[C, H, W]` per sample, t `[1]`, optionally a class label y
/// (the context input, shape `[]`, an integer held as a float).
///
/// Layout (E = 4·modelChannels, GN = GroupNorm, ε = 1e-5):
/// - time embedding: e = Linear(E) ∘ SiLU ∘ Linear(E) of
///   [cos(t·f_i), sin(t·f_i)], f_i = exp(−ln(10000)·i/half), i < half =
///   modelChannels/2 (guided-diffusion's `timestep_embedding`; t in [0, 1]
///   is passed as is, like torchcfm); with classes e += Embedding(y).
/// - input: Conv3×3(C → modelChannels·mult₀).
/// - per level ℓ (resolution H/2^ℓ): `resBlocksPerLevel` residual blocks to
///   modelChannels·mult_ℓ channels, each followed by self-attention when the
///   level's height is in `attentionResolutions`; then (except at the last
///   level) a downsample Conv3×3 stride 2, pads 1. Every output is kept
///   for a skip connection.
/// - middle: residual block, attention, residual block.
/// - up path, levels reversed: `resBlocksPerLevel + 1` residual blocks, each
///   on Concat(h, skip) along channels, attention as on the way down; at the
///   end of each level but the first, an upsample: nearest ×2 (Resize) then
///   Conv3×3.
/// - output: GN+SiLU → Conv3×3(→ C).
///
/// Residual block (cin → cout): h = Conv3×3(SiLU(GN(x))) + Linear(SiLU(e))
/// (one value per channel, broadcast over H, W); h = Conv3×3(SiLU(GN(h)));
/// y = skip(x) + h with skip the identity, or a 1×1 conv when cin ≠ cout.
///
/// Attention block (c channels, `heads` heads of d = c/heads, L = H·W):
/// n = GN(x); q, k, v = 1×1 convs of n, each `[heads, d, L]`;
/// P = softmax_s(qᵀk / √d) per head (`[heads, L, L]`); a = v·Pᵀ;
/// y = x + Conv1×1(a). The three 1×1 convs are drawn as one `[3c, c]`
/// weight in guided-diffusion's legacy per-head order (rows
/// [q_h; k_h; v_h] for each head h) and split, so the split of a torchcfm
/// checkpoint's `qkv` weight maps onto them the same way.
///
/// Parameter names are torchcfm's state-dict keys without the wrapper's
/// `net.` prefix (`input_blocks.1.0.in_layers.2.weight`, …; the three
/// attention convs are `….qkv.q`, `.k`, `.v`), and 1×1 attention convs are
/// 2-D (`[c, c, 1, 1]` for torchcfm's `[c, c, 1]`): with torchcfm's weights
/// the graph reproduces torchcfm's velocities (VelocityUNetTests).
///
/// Initialisation: PyTorch's defaults, drawn from
/// `RandomStream(seed, .initialization, layer)` with one layer index per
/// Conv/Linear/Embedding in build order: Conv2d and Linear weights and
/// biases U(−1/√fan_in, 1/√fan_in) (kaiming-uniform with a = √5), GroupNorm
/// scale 1 and bias 0, label embeddings N(0, 1). guided-diffusion
/// zero-initialises the output conv, each residual block's second conv and
/// attention's output projection; this builder does not: a zero output
/// makes the untrained velocity 0 (harmless for training from scratch, but
/// it hides every other layer from a derivative check or an export test),
/// and PyTorch's default is what a user gets from `nn.Conv2d`.
///
/// - Complexity: per sample, about Σ_conv cout·cin·k²·H'·W' + Σ_attention
///   2·c·L² multiply-adds (QᵀK and v·Pᵀ); an attention block holds
///   heads·L² floats per sample (28×28: 614,656 per head). A JVP costs about
///   one forward pass per tangent, a VJP about two.
public struct VelocityUNet: Sendable, Equatable {
    /// Input (and output) channels C.
    public var channels: Int
    /// Image height H; divisible by 2^(levels − 1).
    public var height: Int
    /// Image width W; divisible by 2^(levels − 1).
    public var width: Int
    /// Channels of the first level (torchcfm's `num_channels`); also the
    /// time-embedding frequency count ×2. Even.
    public var modelChannels: Int
    /// Channel multiplier per level (torchcfm's `channel_mult`); its length
    /// is the number of levels.
    public var channelMultipliers: [Int]
    /// Residual blocks per level on the way down (`num_res_blocks`); the up
    /// path has one more per level.
    public var resBlocksPerLevel: Int
    /// Feature-map heights (in pixels) at which residual blocks are followed
    /// by self-attention, e.g. `[14]` for the 14×14 level of a 28×28 input.
    /// torchcfm's string `"16"` for 28 px means downsample factor 28/16 = 1,
    /// i.e. `[28]` here. The middle block always has attention.
    public var attentionResolutions: Set<Int>
    /// Attention heads; must divide the channels of every attention block.
    public var heads: Int
    /// GroupNorm groups; each norm uses the largest divisor of its channel
    /// count that is ≤ `groups`.
    public var groups: Int
    /// Class count for label conditioning; 0 is unconditional (no context).
    public var numClasses: Int
    /// Seed of the initial weights.
    public var seed: UInt64

    /// - Parameters: see the properties. Defaults are torchcfm's MNIST
    ///   setting except the attention level (here 14×14, torchcfm 28×28).
    public init(channels: Int, height: Int, width: Int, modelChannels: Int = 32, channelMultipliers: [Int] = [1, 2, 2],
                resBlocksPerLevel: Int = 1, attentionResolutions: Set<Int> = [], heads: Int = 1, groups: Int = 32,
                numClasses: Int = 0, seed: UInt64 = 0) {
        self.channels = channels
        self.height = height
        self.width = width
        self.modelChannels = modelChannels
        self.channelMultipliers = channelMultipliers
        self.resBlocksPerLevel = resBlocksPerLevel
        self.attentionResolutions = attentionResolutions
        self.heads = heads
        self.groups = groups
        self.numClasses = numClasses
        self.seed = seed
    }

    /// The per-sample shape of x and of the velocity: `[channels, height, width]`.
    public var sampleShape: [Int] { [channels, height, width] }

    /// GroupNorm groups used for `c` channels: the largest divisor of `c`
    /// that is at most `groups`.
    public func groupCount(channels c: Int) -> Int {
        var g = Swift.max(1, Swift.min(groups, c))
        while c % g != 0 { g -= 1 }
        return g
    }

    /// Checks the configuration.
    /// - Throws: `.invalidArgument` naming the offending field.
    func validate() throws {
        func check(_ ok: Bool, _ message: @autoclosure () -> String) throws {
            if !ok { throw FlowError.invalidArgument(message()) }
        }
        try check((1...4096).contains(channels), "channels \(channels) must be in 1...4096")
        try check((1...4096).contains(height) && (1...4096).contains(width), "image size \(height)×\(width) must be in 1...4096")
        try check((2...4096).contains(modelChannels) && modelChannels % 2 == 0, "modelChannels \(modelChannels) must be even and in 2...4096")
        try check((1...8).contains(channelMultipliers.count) && channelMultipliers.allSatisfy { (1...64).contains($0) },
                  "channelMultipliers \(channelMultipliers) must hold 1 to 8 values in 1...64")
        try check((1...16).contains(resBlocksPerLevel), "resBlocksPerLevel \(resBlocksPerLevel) must be in 1...16")
        let factor = 1 << (channelMultipliers.count - 1)
        try check(height % factor == 0 && width % factor == 0,
                  "image size \(height)×\(width) must be divisible by \(factor) for \(channelMultipliers.count) levels")
        try check(heads >= 1, "heads \(heads) must be at least 1")
        try check(groups >= 1, "groups \(groups) must be at least 1")
        try check((0...1 << 20).contains(numClasses), "numClasses \(numClasses) must be in 0...1048576")
        let levelHeights = Set((0..<channelMultipliers.count).map { height >> $0 })
        for r in attentionResolutions {
            try check(levelHeights.contains(r), "attention resolution \(r) is not a level height (levels: \(levelHeights.sorted(by: >)))")
        }
        var attended = [modelChannels * channelMultipliers.last!]  // the middle block
        for (level, m) in channelMultipliers.enumerated() where attentionResolutions.contains(height >> level) {
            attended.append(modelChannels * m)
        }
        for c in attended { try check(c % heads == 0, "heads \(heads) must divide the \(c) channels of an attention block") }
    }

    /// Builds the graph: inputs x `[C, H, W]`, t `[1]` and, with classes, the
    /// context y `[]` (a label 0..<numClasses as a float; another value
    /// selects a zero embedding); output v `[C, H, W]`.
    /// - Throws: `.invalidArgument` for a configuration `validate` rejects.
    /// - Complexity: one uniform draw per weight.
    public func makeGraph() throws -> Graph {
        try validate()
        var unet = _UNetBuilder(config: self)
        return try unet.build()
    }

    /// Builds the model (graph plus metadata naming the architecture).
    /// - Throws: as `makeGraph`.
    public func makeModel() throws -> Model {
        try Model(graph: makeGraph(), metadata: ["flowrt.architecture": "unet"])
    }
}

/// The graph-building state of `VelocityUNet.makeGraph`: the builder, the
/// next layer index for initialisation, and the activated time embedding.
struct _UNetBuilder {
    let config: VelocityUNet
    var b: GraphBuilder
    var layer: UInt64 = 0
    /// SiLU(e), the time (and label) embedding every residual block reads.
    var embedding: ValueID = -1
    var embeddingWidth: Int { 4 * config.modelChannels }

    init(config: VelocityUNet) {
        self.config = config
        b = GraphBuilder(sampleShape: config.sampleShape)
    }

    /// PyTorch's default Conv/Linear initialisation: `count` weights and
    /// `biasCount` biases from U(−1/√fanIn, 1/√fanIn), one stream per layer.
    mutating func uniform(_ count: Int, _ biasCount: Int, fanIn: Int) -> ([Float], [Float]) {
        var rng = RandomStream(seed: config.seed, purpose: .initialization, index: layer)
        layer += 1
        let bound = 1 / Double(fanIn).squareRoot()
        let w = (0..<count).map { _ in Float((2 * rng.nextUniform() - 1) * bound) }
        let bias = (0..<biasCount).map { _ in Float((2 * rng.nextUniform() - 1) * bound) }
        return (w, bias)
    }

    mutating func conv(_ x: ValueID, to cout: Int, kernel k: Int, stride: Int = 1, name: String) throws -> ValueID {
        let cin = b.shape(of: x)[0]
        let (w, bias) = uniform(cout * cin * k * k, cout, fanIn: cin * k * k)
        return try convWith(x, weight: Tensor(shape: [cout, cin, k, k], scalars: w),
                            bias: Tensor(shape: [cout], scalars: bias), stride: stride, name: name)
    }

    mutating func convWith(_ x: ValueID, weight: Tensor, bias: Tensor, stride: Int = 1, name: String) throws -> ValueID {
        let k = weight.shape[2], pad = k / 2
        let wv = b.parameter("\(name).weight", weight), bv = b.parameter("\(name).bias", bias)
        return try b.apply(.conv(kernel: [k, k], strides: [stride, stride], padsBegin: [pad, pad], padsEnd: [pad, pad],
                                 dilations: [1, 1], groups: 1), [x, wv, bv], name: name)
    }

    mutating func linear(_ x: ValueID, to out: Int, activation: UnaryFunction = .identity, name: String) throws -> ValueID {
        let inp = b.shape(of: x).last!
        let (w, bias) = uniform(out * inp, out, fanIn: inp)
        return try b.linear(x, weight: Tensor(shape: [out, inp], scalars: w), bias: Tensor(shape: [out], scalars: bias),
                            activation: activation, name: name)
    }

    /// GroupNorm (γ = 1, β = 0), fused with SiLU when `silu`.
    mutating func norm(_ x: ValueID, silu: Bool, name: String) throws -> ValueID {
        let c = b.shape(of: x)[0]
        let gamma = b.parameter("\(name).weight", Tensor(shape: [c], repeating: 1))
        let beta = b.parameter("\(name).bias", Tensor(shape: [c], repeating: 0))
        return try b.apply(.groupNorm(groups: config.groupCount(channels: c), epsilon: 1e-5, silu: silu),
                           [x, gamma, beta], name: name)
    }

    /// Sinusoidal features of t → Linear → SiLU → Linear, plus the label
    /// embedding; stores SiLU of the sum in `embedding`.
    mutating func timeEmbedding() throws {
        let half = config.modelChannels / 2
        let freqs = (0..<half).map { Float(exp(-log(10000.0) * Double($0) / Double(half))) }
        let f = b.parameter("time_embed.frequencies", Tensor(shape: [half], scalars: freqs), trainable: false)
        let arg = try b.mul(b.t, f, name: "time_embed.arg")
        let cosine = try b.unary(.cos, arg, name: "time_embed.cos")
        let sine = try b.unary(.sin, arg, name: "time_embed.sin")
        let features = try b.concat([cosine, sine], name: "time_embed.features")
        let hidden = try linear(features, to: embeddingWidth, activation: .silu, name: "time_embed.0")
        var e = try linear(hidden, to: embeddingWidth, name: "time_embed.2")
        if config.numClasses > 0 {
            let label = b.addContext(shape: [], name: "y")
            var rng = RandomStream(seed: config.seed, purpose: .initialization, index: layer)
            layer += 1
            let table = (0..<(config.numClasses * embeddingWidth)).map { _ in Float(rng.nextNormal()) }
            let tv = b.parameter("label_emb.weight", Tensor(shape: [config.numClasses, embeddingWidth], scalars: table))
            let l = try b.apply(.embedding, [tv, label], name: "label_emb")
            e = try b.add(e, l, name: "embedding")
        }
        embedding = try b.unary(.silu, e, name: "embedding.silu")
    }

    mutating func resBlock(_ x: ValueID, to cout: Int, name: String) throws -> ValueID {
        let cin = b.shape(of: x)[0]
        var h = try norm(x, silu: true, name: "\(name).in_layers.0")
        h = try conv(h, to: cout, kernel: 3, name: "\(name).in_layers.2")
        let e = try linear(embedding, to: cout, name: "\(name).emb_layers.1")
        let film = try b.apply(.reshape(shape: [cout, 1, 1]), [e], name: "\(name).emb_layers.reshape")
        h = try b.add(h, film, name: "\(name).emb_add")
        h = try norm(h, silu: true, name: "\(name).out_layers.0")
        h = try conv(h, to: cout, kernel: 3, name: "\(name).out_layers.3")
        let skip = cin == cout ? x : try conv(x, to: cout, kernel: 1, name: "\(name).skip_connection")
        return try b.add(skip, h, name: "\(name).residual")
    }

    mutating func attention(_ x: ValueID, name: String) throws -> ValueID {
        let shape = b.shape(of: x)
        let c = shape[0], length = shape[1] * shape[2], heads = config.heads, d = c / heads
        let n = try norm(x, silu: false, name: "\(name).norm")
        // One [3c, c] draw in guided-diffusion's legacy per-head row order, split into q, k, v.
        let (w, bias) = uniform(3 * c * c, 3 * c, fanIn: c)
        var projected: [ValueID] = []
        for (part, label) in ["q", "k", "v"].enumerated() {
            var pw: [Float] = [], pb: [Float] = []
            for h in 0..<heads {
                let row0 = h * 3 * d + part * d
                pw += w[(row0 * c)..<((row0 + d) * c)]
                pb += bias[row0..<(row0 + d)]
            }
            let y = try convWith(n, weight: Tensor(shape: [c, c, 1, 1], scalars: pw), bias: Tensor(shape: [c], scalars: pb),
                                 name: "\(name).qkv.\(label)")
            projected.append(try b.apply(.reshape(shape: [heads, d, length]), [y], name: "\(name).\(label).heads"))
        }
        let scale = b.parameter("\(name).scale", Tensor(shape: [], scalars: [Float(1 / Double(d).squareRoot())]),
                                trainable: false)
        let q = try b.mul(projected[0], scale, name: "\(name).q.scaled")
        let qt = try b.apply(Operation(TransposeOp(perm: [0, 2, 1], inputShape: [heads, d, length], node: "\(name).q.T")),
                             [q], name: "\(name).q.T")
        let scores = try b.apply(.matMul(), [qt, projected[1]], name: "\(name).scores")
        let weights = try b.apply(Operation(SoftmaxOp(axis: -1)), [scores], name: "\(name).softmax")
        let a = try b.apply(.matMul(transposeB: true), [projected[2], weights], name: "\(name).mix")
        let image = try b.apply(.reshape(shape: shape), [a], name: "\(name).mix.image")
        let out = try conv(image, to: c, kernel: 1, name: "\(name).proj_out")
        return try b.add(x, out, name: "\(name).residual")
    }

    mutating func build() throws -> Graph {
        let mc = config.modelChannels, mults = config.channelMultipliers, levels = mults.count
        try timeEmbedding()
        var h = try conv(b.x, to: mc * mults[0], kernel: 3, name: "input_blocks.0.0")
        var skips = [h]
        var block = 1
        for (level, m) in mults.enumerated() {
            for _ in 0..<config.resBlocksPerLevel {
                h = try resBlock(h, to: mc * m, name: "input_blocks.\(block).0")
                if config.attentionResolutions.contains(config.height >> level) {
                    h = try attention(h, name: "input_blocks.\(block).1")
                }
                skips.append(h)
                block += 1
            }
            if level != levels - 1 {
                h = try conv(h, to: b.shape(of: h)[0], kernel: 3, stride: 2, name: "input_blocks.\(block).0.op")
                skips.append(h)
                block += 1
            }
        }
        h = try resBlock(h, to: b.shape(of: h)[0], name: "middle_block.0")
        h = try attention(h, name: "middle_block.1")
        h = try resBlock(h, to: b.shape(of: h)[0], name: "middle_block.2")
        block = 0
        for (level, m) in mults.enumerated().reversed() {
            for i in 0...config.resBlocksPerLevel {
                let skip = skips.removeLast()
                h = try b.concat([h, skip], axis: 0, name: "output_blocks.\(block).concat")
                h = try resBlock(h, to: mc * m, name: "output_blocks.\(block).0")
                var sub = 1
                if config.attentionResolutions.contains(config.height >> level) {
                    h = try attention(h, name: "output_blocks.\(block).1")
                    sub += 1
                }
                if level > 0 && i == config.resBlocksPerLevel {
                    let s = b.shape(of: h)
                    let up = [s[0], 2 * s[1], 2 * s[2]]
                    let nearest = try ResizeOp(shape: up, scales: [1, 2, 2], transform: .asymmetric, rounding: .floor,
                                               inputShape: s, node: "output_blocks.\(block).\(sub).resize")
                    h = try b.apply(Operation(nearest), [h], name: "output_blocks.\(block).\(sub).resize")
                    h = try conv(h, to: s[0], kernel: 3, name: "output_blocks.\(block).\(sub).conv")
                }
                block += 1
            }
        }
        h = try norm(h, silu: true, name: "out.0")
        h = try conv(h, to: config.channels, kernel: 3, name: "out.2")
        return try b.finish(output: h)
    }
}
