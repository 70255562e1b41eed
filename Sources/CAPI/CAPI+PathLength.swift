// Path-length optimisation from C: a trainer that learns its Fourier
// schedule, its state, and the flow it has trained (with any trainer).
import CFlowRT
import FlowRuntime

func defaultPathParams() -> flowrt_path_params {
    let d = PathLengthConfiguration()
    return flowrt_path_params(struct_size: UInt32(MemoryLayout<flowrt_path_params>.size), terms: 4,
                              learning_rate: d.learningRate, warmup_steps: UInt64(d.warmupSteps),
                              network_steps: UInt32(d.networkStepsPerUpdate), batch_size: 0,
                              coefficient_bound: d.coefficientBound)
}

@_cdecl("flowrt_path_params_init")
public func flowrt_path_params_init(_ params: UnsafeMutablePointer<flowrt_path_params>?) -> flowrt_status {
    guarded("flowrt_path_params_init") {
        try initParams(params, defaults: defaultPathParams(), firstSize: MemoryLayout<flowrt_path_params>.size, "params")
    }
}

/// The Swift configuration of a `flowrt_path_params` (ranges checked here
/// and in `PathLengthConfiguration.validate()`).
func pathSettings(_ p: flowrt_path_params) throws -> (terms: Int, configuration: PathLengthConfiguration) {
    guard (1...UInt32(ScheduleMetadata.maximumFourierTerms)).contains(p.terms) else {
        throw FlowError.invalidArgument("path->terms = \(p.terms) must be in 1...\(ScheduleMetadata.maximumFourierTerms)")
    }
    guard p.learning_rate.isFinite, p.coefficient_bound.isFinite else {
        throw FlowError.nonFinite("path->learning_rate = \(p.learning_rate) and path->coefficient_bound = \(p.coefficient_bound) must be finite")
    }
    guard p.warmup_steps < 1 << 62 else { throw FlowError.invalidArgument("path->warmup_steps = \(p.warmup_steps) is too large") }
    let configuration = PathLengthConfiguration(
        learningRate: p.learning_rate, warmupSteps: Int(p.warmup_steps), networkStepsPerUpdate: Int(p.network_steps),
        batchSize: p.batch_size == 0 ? nil : Int(p.batch_size), coefficientBound: p.coefficient_bound)
    do { try configuration.validate() } catch let FlowError.invalidArgument(m) { throw FlowError.invalidArgument("path: \(m)") }
    return (Int(p.terms), configuration)
}

@_cdecl("flowrt_trainer_create_path_length")
public func flowrt_trainer_create_path_length(_ initial: OpaquePointer?, _ data: UnsafePointer<Float>?, _ n: Int, _ dim: Int,
                                              _ params: UnsafePointer<flowrt_trainer_params>?,
                                              _ path: UnsafePointer<flowrt_path_params>?,
                                              _ out: UnsafeMutablePointer<OpaquePointer?>?) -> flowrt_status {
    guarded("flowrt_trainer_create_path_length") {
        let (out, model, _, x, total) = try trainerData(initial, data, n, dim, out) { model in
            guard model.contextDimension == 0 else {
                throw FlowError.invalidArgument("path-length optimisation takes an unconditional model; this one has \(model.contextDimension) context values per sample")
            }
        }
        var p = try readParams(params, defaults: defaultTrainerParams(), knownSizes: trainerParamsSizes, "params")
        guard p.schedule_fn == nil else {
            throw FlowError.invalidArgument("params->schedule_fn must be NULL: a path-length trainer learns its own (Fourier) schedule")
        }
        guard try minibatchCoupling(p.coupling, "params->coupling") == nil else {
            throw FlowError.invalidArgument("params->coupling must be FLOWRT_COUPLING_INDEPENDENT for a path-length trainer (the schedule moves with independent pairs)")
        }
        p.interpolant = Int32(FLOWRT_INTERPOLANT_LINEAR.rawValue)  // ignored: the Fourier schedule replaces it
        let (config, loss) = try trainerSettings(p)
        let q = try readParams(path, defaults: defaultPathParams(), firstSize: MemoryLayout<flowrt_path_params>.size, "path")
        let (terms, pathConfiguration) = try pathSettings(q)
        try HostMemory.reserve(2 * total, of: Float.self, for: "flowrt_trainer_create_path_length (copy of the data)")
        let optimizer = try PathLengthOptimizer(
            graph: model.graph, data: .samples(Array(UnsafeBufferPointer(start: x, count: total))),
            schedule: FourierSchedule(terms: terms), timeDistribution: loss.timeDistribution,
            trainerConfiguration: config, configuration: pathConfiguration, metadata: model.metadata)
        out.pointee = retainHandle(TrainerHandle(optimizer))
        return FLOWRT_OK
    }
}

/// Writes a coefficient list into the caller's arrays (`capacity` entries
/// each), setting `*terms` first so that a call with a short capacity
/// learns K.
private func writeCoefficients(_ schedule: FourierSchedule?, _ alpha: UnsafeMutablePointer<Double>?,
                               _ beta: UnsafeMutablePointer<Double>?, _ capacity: Int,
                               _ terms: UnsafeMutablePointer<Int>) throws {
    let k = schedule?.terms ?? 0
    terms.pointee = k
    guard capacity >= k else {
        throw FlowError.invalidArgument("capacity = \(unsigned(capacity)) is below the \(k) Fourier terms (*terms is set)")
    }
    guard let schedule, k > 0 else { return }
    let a = try require(alpha, "alpha"), b = try require(beta, "beta")
    for i in 0..<k {
        a[i] = schedule.alphaCoefficients[i]
        b[i] = schedule.betaCoefficients[i]
    }
}

@_cdecl("flowrt_trainer_path_state")
public func flowrt_trainer_path_state(_ handle: OpaquePointer?, _ alpha: UnsafeMutablePointer<Double>?,
                                      _ beta: UnsafeMutablePointer<Double>?, _ capacity: Int,
                                      _ terms: UnsafeMutablePointer<Int>?,
                                      _ kineticEnergy: UnsafeMutablePointer<Double>?) -> flowrt_status {
    guarded("flowrt_trainer_path_state") {
        let h = try object(handle, TrainerHandle.self, "trainer")
        let terms = try require(terms, "terms")
        guard let optimizer = h.pathOptimizer else {
            throw FlowError.invalidArgument("the trainer is not a path-length trainer (create it with flowrt_trainer_create_path_length)")
        }
        kineticEnergy?.pointee = optimizer.lastReport?.kineticEnergy ?? .nan
        try writeCoefficients(optimizer.schedule, alpha, beta, capacity, terms)
        return FLOWRT_OK
    }
}

@_cdecl("flowrt_trainer_flow")
public func flowrt_trainer_flow(_ handle: OpaquePointer?, _ out: UnsafeMutablePointer<OpaquePointer?>?) -> flowrt_status {
    guarded("flowrt_trainer_flow") {
        let out = try require(out, "out")
        out.pointee = nil
        let h = try object(handle, TrainerHandle.self, "trainer")
        out.pointee = retainHandle(FlowHandle(try h.trainer.flow()))
        return FLOWRT_OK
    }
}

@_cdecl("flowrt_flow_fourier_coefficients")
public func flowrt_flow_fourier_coefficients(_ handle: OpaquePointer?, _ alpha: UnsafeMutablePointer<Double>?,
                                             _ beta: UnsafeMutablePointer<Double>?, _ capacity: Int,
                                             _ terms: UnsafeMutablePointer<Int>?) -> flowrt_status {
    guarded("flowrt_flow_fourier_coefficients") {
        let flow = try flowObject(handle)
        let terms = try require(terms, "terms")
        try writeCoefficients(flow.schedule as? FourierSchedule, alpha, beta, capacity, terms)
        return FLOWRT_OK
    }
}
