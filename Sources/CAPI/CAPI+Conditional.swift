// Conditional flows: contexts per point for sampling, transport, encoding
// and log-densities; conditional MLPs; training on pairs (x_i, c_i).
import CFlowRT
import FlowRuntime

@_cdecl("flowrt_flow_context_dim")
public func flowrt_flow_context_dim(_ flow: OpaquePointer?) -> Int {
    (try? flowObject(flow).contextDimension) ?? 0
}

@_cdecl("flowrt_flow_num_classes")
public func flowrt_flow_num_classes(_ flow: OpaquePointer?) -> Int {
    (try? flowObject(flow))?.classCount ?? 0
}

@_cdecl("flowrt_flow_sample_conditional")
public func flowrt_flow_sample_conditional(_ handle: OpaquePointer?, _ firstIndex: UInt64, _ n: Int, _ seed: UInt64,
                                           _ context: UnsafePointer<Float>?, _ contextRows: Int, _ guidance: Double,
                                           _ params: UnsafePointer<flowrt_solver_params>?,
                                           _ xOut: UnsafeMutablePointer<Float>?,
                                           _ logProbOut: UnsafeMutablePointer<Double>?,
                                           _ stats: UnsafeMutablePointer<flowrt_solver_stats>?) -> flowrt_status {
    sampleCall("flowrt_flow_sample_conditional", handle, firstIndex, n, seed, params, xOut, logProbOut, stats,
               conditional: true, context: context, contextRows: contextRows, guidance: guidance)
}

@_cdecl("flowrt_flow_transport_conditional")
public func flowrt_flow_transport_conditional(_ handle: OpaquePointer?, _ n: Int, _ xIn: UnsafePointer<Float>?,
                                              _ context: UnsafePointer<Float>?, _ tFrom: Double, _ tTo: Double,
                                              _ params: UnsafePointer<flowrt_solver_params>?,
                                              _ xOut: UnsafeMutablePointer<Float>?,
                                              _ stats: UnsafeMutablePointer<flowrt_solver_stats>?) -> flowrt_status {
    transportCall("flowrt_flow_transport_conditional", handle, n, xIn, tFrom, tTo, params, xOut, stats,
                  conditional: true, context: context)
}

@_cdecl("flowrt_flow_encode_conditional")
public func flowrt_flow_encode_conditional(_ handle: OpaquePointer?, _ n: Int, _ x: UnsafePointer<Float>?,
                                           _ context: UnsafePointer<Float>?,
                                           _ params: UnsafePointer<flowrt_solver_params>?,
                                           _ zOut: UnsafeMutablePointer<Float>?,
                                           _ stats: UnsafeMutablePointer<flowrt_solver_stats>?) -> flowrt_status {
    transportCall("flowrt_flow_encode_conditional", handle, n, x, 1, 0, params, zOut, stats,
                  conditional: true, context: context)
}

@_cdecl("flowrt_flow_log_prob_conditional")
public func flowrt_flow_log_prob_conditional(_ handle: OpaquePointer?, _ n: Int, _ x: UnsafePointer<Float>?,
                                             _ context: UnsafePointer<Float>?, _ t: Double,
                                             _ params: UnsafePointer<flowrt_solver_params>?,
                                             _ logProb: UnsafeMutablePointer<Double>?,
                                             _ stdError: UnsafeMutablePointer<Double>?,
                                             _ stats: UnsafeMutablePointer<flowrt_solver_stats>?) -> flowrt_status {
    logProbCall("flowrt_flow_log_prob_conditional", handle, n, x, t, params, logProb, stdError, stats,
                conditional: true, context: context)
}

@_cdecl("flowrt_model_create_mlp_conditional")
public func flowrt_model_create_mlp_conditional(_ params: UnsafePointer<flowrt_mlp_params>?, _ contextDim: Int,
                                                _ out: UnsafeMutablePointer<OpaquePointer?>?) -> flowrt_status {
    guarded("flowrt_model_create_mlp_conditional") {
        guard contextDim >= 0, contextDim <= 1 << 16 else {
            throw FlowError.invalidArgument("context_dim = \(unsigned(contextDim)) must be in 0...65536")
        }
        return try conditionalMLP(params, out) { $0.contextDimension = contextDim }
    }
}

@_cdecl("flowrt_model_create_mlp_labels")
public func flowrt_model_create_mlp_labels(_ params: UnsafePointer<flowrt_mlp_params>?, _ numClasses: Int,
                                           _ embeddingWidth: Int,
                                           _ out: UnsafeMutablePointer<OpaquePointer?>?) -> flowrt_status {
    guarded("flowrt_model_create_mlp_labels") {
        guard numClasses >= 1, numClasses <= 1 << 20 else {
            throw FlowError.invalidArgument("num_classes = \(unsigned(numClasses)) must be in 1...2^20")
        }
        guard embeddingWidth >= 0, embeddingWidth <= 1 << 16 else {
            throw FlowError.invalidArgument("embedding_width = \(unsigned(embeddingWidth)) must be in 0...65536 (0 = 16)")
        }
        return try conditionalMLP(params, out) {
            $0.classCount = numClasses
            $0.labelEmbeddingWidth = embeddingWidth == 0 ? 16 : embeddingWidth
        }
    }
}

/// The MLP of `params` (validated by flowrt_model_create_mlp: same checks,
/// same messages) with a context set by `condition`.
func conditionalMLP(_ params: UnsafePointer<flowrt_mlp_params>?, _ out: UnsafeMutablePointer<OpaquePointer?>?,
                    _ condition: (inout VelocityMLP) -> Void) throws -> flowrt_status {
    let out = try require(out, "out")
    out.pointee = nil
    // flowrt_model_create_mlp validates the params (same checks, same
    // messages); its unconditional model is then rebuilt with the context.
    var plain: OpaquePointer?
    let status = flowrt_model_create_mlp(params, &plain)
    guard status == FLOWRT_OK else { return status }
    let base = try modelObject(plain)
    flowrt_model_free(plain)
    let p = try readParams(try require(params, "params"), defaults: defaultMLPParams(),
                           firstSize: MemoryLayout<flowrt_mlp_params>.size, "params")
    let encoding: VelocityMLP.TimeEncoding = UInt32(bitPattern: p.time_encoding) == FLOWRT_TIME_SINUSOIDAL.rawValue
        ? .sinusoidal(frequencies: Int(p.time_frequencies)) : .concat
    var mlp = VelocityMLP(dimension: Int(p.dim), hiddenWidths: Array(repeating: Int(p.width), count: Int(p.depth)),
                          activation: try unaryFunction(activation: p.activation), timeEncoding: encoding,
                          residual: p.residual != 0, seed: p.seed)
    condition(&mlp)
    out.pointee = retainHandle(ModelHandle(try Model(graph: mlp.makeGraph(), metadata: base.metadata)))
    return FLOWRT_OK
}

@_cdecl("flowrt_trainer_create_conditional")
public func flowrt_trainer_create_conditional(_ initial: OpaquePointer?, _ data: UnsafePointer<Float>?,
                                              _ context: UnsafePointer<Float>?, _ n: Int, _ dim: Int, _ contextDim: Int,
                                              _ params: UnsafePointer<flowrt_trainer_params>?,
                                              _ out: UnsafeMutablePointer<OpaquePointer?>?) -> flowrt_status {
    guarded("flowrt_trainer_create_conditional") {
        let (out, model, rows, x, total) = try trainerData(initial, data, n, dim, out) { model in
            guard contextDim == model.contextDimension else {
                throw FlowError.shapeMismatch("context_dim = \(unsigned(contextDim)) but the model takes \(model.contextDimension) context values per sample")
            }
        }
        var contexts: [Float]? = nil
        if contextDim > 0 {
            let ctotal = try checkedProduct(rows, contextDim, "context")
            let c = try require(context, "context")
            try requireFinite(c, ctotal, "context")
            try HostMemory.reserve(2 * ctotal, of: Float.self, for: "flowrt_trainer_create_conditional (copy of the contexts)")
            contexts = Array(UnsafeBufferPointer(start: c, count: ctotal))
        } else if context != nil {
            throw FlowError.invalidArgument("context is not NULL, but the model is unconditional (context_dim 0): pass NULL")
        }
        let p = try readParams(params, defaults: defaultTrainerParams(), knownSizes: trainerParamsSizes, "params")
        let (config, loss) = try trainerSettings(p)
        try HostMemory.reserve(2 * total, of: Float.self, for: "flowrt_trainer_create_conditional (copy of the data)")
        let trainer = try Trainer(graph: model.graph, data: .samples(Array(UnsafeBufferPointer(start: x, count: total))),
                                  contexts: contexts, loss: loss, configuration: config, metadata: model.metadata)
        out.pointee = retainHandle(try TrainerHandle(trainer, p))
        return FLOWRT_OK
    }
}
