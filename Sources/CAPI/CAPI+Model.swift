// flowrt_model: creation, evaluation, divergence.
import CFlowRT
import FlowRuntime

/// The object behind a `flowrt_model *`.
final class ModelHandle {
    let model: Model
    init(_ model: Model) { self.model = model }
}

/// The model behind a handle, or `.invalidArgument`.
func modelObject(_ handle: OpaquePointer?, _ name: String = "model") throws -> Model {
    try object(handle, ModelHandle.self, name).model
}

func defaultMLPParams() -> flowrt_mlp_params {
    flowrt_mlp_params(
        struct_size: UInt32(MemoryLayout<flowrt_mlp_params>.size), dim: 2, depth: 3, width: 256,
        activation: Int32(FLOWRT_ACT_SILU.rawValue), time_encoding: Int32(FLOWRT_TIME_CONCAT.rawValue),
        time_frequencies: 16, residual: 0, seed: 0)
}

func unaryFunction(activation code: Int32) throws -> UnaryFunction {
    switch UInt32(bitPattern: code) {
    case FLOWRT_ACT_SILU.rawValue: return .silu
    case FLOWRT_ACT_TANH.rawValue: return .tanh
    case FLOWRT_ACT_RELU.rawValue: return .relu
    case FLOWRT_ACT_GELU.rawValue: return .gelu
    case FLOWRT_ACT_SOFTPLUS.rawValue: return .softplus(beta: 1, threshold: 20)
    case FLOWRT_ACT_SIGMOID.rawValue: return .sigmoid
    case FLOWRT_ACT_ELU.rawValue: return .elu(alpha: 1)
    case FLOWRT_ACT_SELU.rawValue: return .selu
    case FLOWRT_ACT_LEAKY_RELU.rawValue: return .leakyRelu(slope: 0.01)
    default: throw FlowError.invalidArgument("activation = \(code) is not a flowrt_activation")
    }
}

@_cdecl("flowrt_model_create_mlp")
public func flowrt_model_create_mlp(_ params: UnsafePointer<flowrt_mlp_params>?,
                                    _ out: UnsafeMutablePointer<OpaquePointer?>?) -> flowrt_status {
    guarded("flowrt_model_create_mlp") {
        let out = try require(out, "out")
        out.pointee = nil
        let p = try readParams(try require(params, "params"), defaults: defaultMLPParams(),
                               firstSize: MemoryLayout<flowrt_mlp_params>.size, "params")
        guard p.dim > 0 else { throw FlowError.invalidArgument("params->dim must be > 0") }
        guard p.depth > 0, p.depth <= 1024 else { throw FlowError.invalidArgument("params->depth = \(p.depth) must be in 1...1024") }
        guard p.width > 0 else { throw FlowError.invalidArgument("params->width must be > 0") }
        let encoding: VelocityMLP.TimeEncoding
        switch UInt32(bitPattern: p.time_encoding) {
        case FLOWRT_TIME_CONCAT.rawValue: encoding = .concat
        case FLOWRT_TIME_SINUSOIDAL.rawValue: encoding = .sinusoidal(frequencies: Int(p.time_frequencies))
        default: throw FlowError.invalidArgument("params->time_encoding = \(p.time_encoding) is not a flowrt_time_encoding")
        }
        let mlp = VelocityMLP(dimension: Int(p.dim), hiddenWidths: Array(repeating: Int(p.width), count: Int(p.depth)),
                              activation: try unaryFunction(activation: p.activation), timeEncoding: encoding,
                              residual: p.residual != 0, seed: p.seed)
        out.pointee = retainHandle(ModelHandle(try mlp.makeModel()))
        return FLOWRT_OK
    }
}

@_cdecl("flowrt_model_free")
public func flowrt_model_free(_ model: OpaquePointer?) {
    releaseHandle(model, ModelHandle.self)
}

@_cdecl("flowrt_model_dim")
public func flowrt_model_dim(_ handle: OpaquePointer?) -> Int {
    (try? modelObject(handle).dimension) ?? 0
}

@_cdecl("flowrt_model_parameter_count")
public func flowrt_model_parameter_count(_ handle: OpaquePointer?) -> Int {
    (try? modelObject(handle).parameterCount) ?? 0
}

@_cdecl("flowrt_model_shape")
public func flowrt_model_shape(_ handle: OpaquePointer?, _ shape: UnsafeMutablePointer<Int>?, _ capacity: Int,
                               _ rank: UnsafeMutablePointer<Int>?) -> flowrt_status {
    guarded("flowrt_model_shape") {
        let model = try modelObject(handle)
        let rank = try require(rank, "rank")
        let s = model.sampleShape
        rank.pointee = s.count
        guard capacity >= s.count else {
            throw FlowError.invalidArgument("capacity \(UInt(bitPattern: capacity)) is below the model's rank \(s.count)")
        }
        let out = try require(shape, "shape")
        for (i, e) in s.enumerated() { out[i] = e }
        return FLOWRT_OK
    }
}

@_cdecl("flowrt_model_context_dim")
public func flowrt_model_context_dim(_ handle: OpaquePointer?) -> Int {
    (try? modelObject(handle).contextDimension) ?? 0
}

@_cdecl("flowrt_model_num_classes")
public func flowrt_model_num_classes(_ handle: OpaquePointer?) -> Int {
    (try? modelObject(handle).classCount) ?? 0
}

@_cdecl("flowrt_model_velocity_conditional")
public func flowrt_model_velocity_conditional(_ handle: OpaquePointer?, _ n: Int, _ t: UnsafePointer<Double>?,
                                              _ x: UnsafePointer<Float>?, _ context: UnsafePointer<Float>?,
                                              _ v: UnsafeMutablePointer<Float>?) -> flowrt_status {
    guarded("flowrt_model_velocity_conditional") {
        let a = try BatchArguments(handle, n, t, x)
        let m = a.model.contextDimension
        if a.n == 0 { return FLOWRT_OK }
        let v = try require(v, "v")
        var contexts: UnsafeBufferPointer<Float>?
        if m > 0 {
            let count = try checkedProduct(a.n, m, "context")
            contexts = UnsafeBufferPointer(start: try require(context, "context"), count: count)
            try a.model.validateContexts(contexts!, count: a.n)
        }
        a.model.velocity(times: a.t, points: a.x, contexts: contexts,
                         into: UnsafeMutableBufferPointer(start: v, count: a.n * a.d), threads: Parallel.defaultThreads)
        return FLOWRT_OK
    }
}

/// Validated inputs of a batched model call.
struct BatchArguments {
    let model: Model
    let n: Int
    let d: Int
    let t: UnsafeBufferPointer<Double>
    let x: UnsafeBufferPointer<Float>

    init(_ handle: OpaquePointer?, _ n: Int, _ t: UnsafePointer<Double>?, _ x: UnsafePointer<Float>?) throws {
        model = try modelObject(handle)
        self.n = try batchCount(n)
        d = model.dimension
        let nd = try checkedProduct(self.n, d, "x")
        guard self.n > 0 else {
            self.t = UnsafeBufferPointer(start: nil, count: 0)
            self.x = UnsafeBufferPointer(start: nil, count: 0)
            return
        }
        let tp = try require(t, "t"), xp = try require(x, "x")
        try requireFinite(tp, self.n, "t")
        try requireFinite(xp, nd, "x")
        self.t = UnsafeBufferPointer(start: tp, count: self.n)
        self.x = UnsafeBufferPointer(start: xp, count: nd)
    }
}

@_cdecl("flowrt_model_velocity")
public func flowrt_model_velocity(_ handle: OpaquePointer?, _ n: Int, _ t: UnsafePointer<Double>?,
                                  _ x: UnsafePointer<Float>?, _ v: UnsafeMutablePointer<Float>?) -> flowrt_status {
    guarded("flowrt_model_velocity") {
        let a = try BatchArguments(handle, n, t, x)
        guard a.model.contextDimension == 0 else {
            throw FlowError.invalidArgument("the model is conditional (context_dim \(a.model.contextDimension)); call flowrt_model_velocity_conditional")
        }
        if a.n == 0 { return FLOWRT_OK }
        let v = try require(v, "v")
        a.model.velocity(times: a.t, points: a.x, into: UnsafeMutableBufferPointer(start: v, count: a.n * a.d),
                         threads: Parallel.defaultThreads)
        return FLOWRT_OK
    }
}

/// Rows per call of flowrt_model_divergence without v (a multiple of the
/// model's divergence chunk of 512, so blocks give the same results).
let divergenceBlock = 1 << 16

@_cdecl("flowrt_model_divergence")
public func flowrt_model_divergence(_ handle: OpaquePointer?, _ n: Int, _ t: UnsafePointer<Double>?,
                                    _ x: UnsafePointer<Float>?, _ v: UnsafeMutablePointer<Float>?,
                                    _ div: UnsafeMutablePointer<Double>?) -> flowrt_status {
    guarded("flowrt_model_divergence") {
        let a = try BatchArguments(handle, n, t, x)
        if a.n == 0 { return FLOWRT_OK }
        let div = try require(div, "div")
        // Without v, the velocities go to a scratch block of `divergenceBlock`
        // rows at a time (bounded memory whatever n).
        let block = v == nil ? Swift.min(a.n, divergenceBlock) : a.n
        let scratch = v == nil ? try HostBuffer<Float>(count: block * a.d, for: "flowrt_model_divergence scratch") : nil
        var start = 0
        while start < a.n {
            let m = Swift.min(block, a.n - start)
            let vb = v.map { UnsafeMutableBufferPointer(start: $0 + start * a.d, count: m * a.d) }
                ?? UnsafeMutableBufferPointer(start: scratch!.pointer, count: m * a.d)
            a.model.velocityDivergence(times: UnsafeBufferPointer(rebasing: a.t[start..<start + m]),
                                       points: UnsafeBufferPointer(rebasing: a.x[start * a.d..<(start + m) * a.d]), into: vb,
                                       divergences: UnsafeMutableBufferPointer(start: div + start, count: m),
                                       threads: Parallel.defaultThreads)
            start += m
        }
        for i in 0..<a.n where !div[i].isFinite {
            throw FlowError.nonFinite("the divergence at sample \(i) is \(div[i]) (the network overflowed)")
        }
        return FLOWRT_OK
    }
}

// MARK: U-Net image velocities (issue 14)

func defaultUNetParams() -> flowrt_unet_params {
    flowrt_unet_params(
        struct_size: UInt32(MemoryLayout<flowrt_unet_params>.size), channels: 1, height: 28, width: 28,
        model_channels: 32, channel_mult: (1, 2, 2, 0), channel_mult_count: 3, res_blocks: 1,
        attention: (14, 0, 0, 0), attention_count: 1, heads: 1, groups: 32, num_classes: 0, reserved: 0, seed: 0)
}

@_cdecl("flowrt_unet_params_init")
public func flowrt_unet_params_init(_ params: UnsafeMutablePointer<flowrt_unet_params>?) -> flowrt_status {
    guarded("flowrt_unet_params_init") {
        try initParams(params, defaults: defaultUNetParams(), firstSize: MemoryLayout<flowrt_unet_params>.size, "params")
    }
}

@_cdecl("flowrt_model_create_unet")
public func flowrt_model_create_unet(_ params: UnsafePointer<flowrt_unet_params>?,
                                     _ out: UnsafeMutablePointer<OpaquePointer?>?) -> flowrt_status {
    guarded("flowrt_model_create_unet") {
        let out = try require(out, "out")
        out.pointee = nil
        let p = try readParams(try require(params, "params"), defaults: defaultUNetParams(),
                               firstSize: MemoryLayout<flowrt_unet_params>.size, "params")
        guard (1...4).contains(p.channel_mult_count) else {
            throw FlowError.invalidArgument("params->channel_mult_count = \(p.channel_mult_count) must be in 1...4")
        }
        guard p.attention_count <= 4 else {
            throw FlowError.invalidArgument("params->attention_count = \(p.attention_count) must be in 0...4")
        }
        guard p.reserved == 0 else { throw FlowError.invalidArgument("params->reserved must be 0") }
        let mult = [p.channel_mult.0, p.channel_mult.1, p.channel_mult.2, p.channel_mult.3]
        let attention = [p.attention.0, p.attention.1, p.attention.2, p.attention.3]
        let unet = VelocityUNet(
            channels: Int(p.channels), height: Int(p.height), width: Int(p.width), modelChannels: Int(p.model_channels),
            channelMultipliers: mult.prefix(Int(p.channel_mult_count)).map(Int.init),
            resBlocksPerLevel: Int(p.res_blocks),
            attentionResolutions: Set(attention.prefix(Int(p.attention_count)).map(Int.init)),
            heads: Int(p.heads), groups: Int(p.groups), numClasses: Int(p.num_classes), seed: p.seed)
        out.pointee = retainHandle(ModelHandle(try unet.makeModel()))
        return FLOWRT_OK
    }
}
