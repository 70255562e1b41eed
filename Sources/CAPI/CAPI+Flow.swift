// flowrt_flow: sampling, transport, encoding and log-densities.
import CFlowRT
import FlowRuntime

/// The object behind a `flowrt_flow *`.
final class FlowHandle {
    let flow: Flow
    init(_ flow: Flow) { self.flow = flow }
}

func flowObject(_ handle: OpaquePointer?) throws -> Flow {
    try object(handle, FlowHandle.self, "flow").flow
}

func defaultFlowParams() -> flowrt_flow_params {
    flowrt_flow_params(struct_size: UInt32(MemoryLayout<flowrt_flow_params>.size),
                       interpolant: Int32(FLOWRT_INTERPOLANT_TRIG.rawValue),
                       base: Int32(FLOWRT_BASE_STANDARD_NORMAL.rawValue), schedule_fn: nil, schedule_user_data: nil)
}

func defaultSolverParams() -> flowrt_solver_params {
    flowrt_solver_params(
        struct_size: UInt32(MemoryLayout<flowrt_solver_params>.size),
        method: Int32(FLOWRT_SOLVER_DOPRI5.rawValue), rtol: 1e-5, atol: 1e-5, fixed_steps: 0, max_steps: 10_000,
        divergence: Int32(FLOWRT_DIVERGENCE_AUTO.rawValue), probes: 1,
        probe_kind: Int32(FLOWRT_PROBE_RADEMACHER.rawValue), seed: 0, threads: 0,
        progress: nil, progress_user_data: nil, max_step: 0)
}

/// sizeof(flowrt_solver_params) before `max_step` was appended: the smallest
/// struct_size accepted.
let solverParamsFirstSize = MemoryLayout<flowrt_solver_params>.offset(of: \flowrt_solver_params.max_step)!

/// A validated `flowrt_solver_params`.
struct SolverCall {
    var options: SolverOptions
    /// The divergence asked for; `auto` resolves per flow (`divergence(for:)`).
    private var requested: DivergenceMethod?
    private var hutchinson: DivergenceMethod
    var progress: SolverProgress?

    /// Dimensions up to which FLOWRT_DIVERGENCE_AUTO takes the exact trace.
    static let exactDivergenceLimit = 256

    /// The divergence method for a flow of dimension `d`.
    func divergence(for d: Int) -> DivergenceMethod {
        requested ?? (d <= Self.exactDivergenceLimit ? .exact : hutchinson)
    }

    init(_ pointer: UnsafePointer<flowrt_solver_params>?) throws {
        let p = try readParams(pointer, defaults: defaultSolverParams(),
                               firstSize: solverParamsFirstSize, "params")
        let tableau: ButcherTableau
        switch UInt32(bitPattern: p.method) {
        case FLOWRT_SOLVER_DOPRI5.rawValue: tableau = .dopri5
        case FLOWRT_SOLVER_EULER.rawValue: tableau = .euler
        case FLOWRT_SOLVER_HEUN.rawValue: tableau = .heun
        case FLOWRT_SOLVER_MIDPOINT.rawValue: tableau = .midpoint
        case FLOWRT_SOLVER_RK4.rawValue: tableau = .rk4
        default: throw FlowError.invalidArgument("params->method = \(p.method) is not a flowrt_solver_method")
        }
        if p.fixed_steps > 0 {
            options = SolverOptions(tableau: tableau, control: .fixed(steps: Int(p.fixed_steps)))
        } else {
            guard tableau.isAdaptive else {
                throw FlowError.invalidArgument("params->fixed_steps = 0 asks for adaptive steps, which \(tableau.name) cannot take: set fixed_steps > 0 or use FLOWRT_SOLVER_DOPRI5")
            }
            var controller = StepSizeController(relativeTolerance: p.rtol, absoluteTolerance: p.atol)
            guard p.max_step >= 0, p.max_step.isFinite else {
                throw FlowError.invalidArgument("params->max_step = \(p.max_step) must be finite and ≥ 0 (0 = unbounded)")
            }
            if p.max_step > 0 { controller.maxStep = p.max_step }
            options = SolverOptions(tableau: tableau, control: .adaptive(controller))
        }
        guard p.max_steps > 0 else { throw FlowError.invalidArgument("params->max_steps must be > 0") }
        options.maxSteps = Int(p.max_steps)
        options.threads = p.threads == 0 ? Parallel.defaultThreads : Int(p.threads)
        do { try options.validate() } catch let FlowError.invalidArgument(m) { throw FlowError.invalidArgument("params: \(m)") }
        // Probe settings matter (and are checked) unless the trace is exact.
        if UInt32(bitPattern: p.divergence) == FLOWRT_DIVERGENCE_EXACT.rawValue {
            hutchinson = .exact
        } else {
            try Limits.checkProbes(Int(p.probes), "params->probes =")
            let kind: DivergenceMethod.ProbeKind
            switch UInt32(bitPattern: p.probe_kind) {
            case FLOWRT_PROBE_RADEMACHER.rawValue: kind = .rademacher
            case FLOWRT_PROBE_GAUSSIAN.rawValue: kind = .gaussian
            default: throw FlowError.invalidArgument("params->probe_kind = \(p.probe_kind) is not a flowrt_probe_kind")
            }
            hutchinson = .hutchinson(probes: Int(p.probes), kind: kind, seed: p.seed)
        }
        switch UInt32(bitPattern: p.divergence) {
        case FLOWRT_DIVERGENCE_EXACT.rawValue: requested = .exact
        case FLOWRT_DIVERGENCE_HUTCHINSON.rawValue: requested = hutchinson
        case FLOWRT_DIVERGENCE_AUTO.rawValue: requested = nil
        default: throw FlowError.invalidArgument("params->divergence = \(p.divergence) is not a flowrt_divergence")
        }
        progress = hostProgress(p.progress, p.progress_user_data)
    }
}

/// A params struct's `flowrt_progress_fn` as a solver progress closure
/// (done, total, mean fraction; non-zero return cancels), shared by the
/// ODE and SDE calls; nil without a function.
func hostProgress(_ fn: flowrt_progress_fn?, _ user: UnsafeMutableRawPointer?) -> SolverProgress? {
    guard let fn else { return nil }
    return { done, total, fraction in fn(user, UInt64(done), UInt64(total), fraction) == 0 }
}

/// Writes the statistics into the caller's struct (only the bytes its
/// struct_size covers) and maps incomplete runs to FLOWRT_STEP_UNDERFLOW
/// (any sample's step underflowed) or FLOWRT_SOLVER_INCOMPLETE.
/// `precision` is the one the call's network evaluations ran in.
func finish(_ function: StaticString, _ statistics: SolverStatistics,
            _ out: UnsafeMutablePointer<flowrt_solver_stats>?, precision: Precision) throws -> flowrt_status {
    if let out {
        let size = Int(UnsafeRawPointer(out).load(as: UInt32.self))
        guard size >= MemoryLayout<UInt32>.size, size <= (1 << 16) else {
            throw FlowError.invalidArgument("stats->struct_size = \(size); set it to sizeof(flowrt_solver_stats)")
        }
        var s = flowrt_solver_stats(
            struct_size: UInt32(size), samples: UInt64(statistics.samples), steps: UInt64(statistics.steps),
            rejections: UInt64(statistics.rejections), evaluations: UInt64(statistics.evaluations),
            max_steps_samples: UInt64(statistics.maxStepsSamples), non_finite_samples: UInt64(statistics.nonFiniteSamples),
            max_steps_per_sample: UInt64(statistics.maxStepsPerSample),
            step_underflow_samples: UInt64(statistics.stepUnderflowSamples), precision: precision.rawValue)
        withUnsafeBytes(of: &s) { src in
            UnsafeMutableRawPointer(out).copyMemory(from: src.baseAddress!, byteCount: Swift.min(size, src.count))
        }
    }
    if statistics.isComplete { return FLOWRT_OK }
    let status = statistics.stepUnderflowSamples > 0 ? FLOWRT_STEP_UNDERFLOW : FLOWRT_SOLVER_INCOMPLETE
    return report(function, status, statistics.incompleteDescription)
}

/// The first NaN log-density of a run (index into the batch), kept while
/// blocks are written: a NaN in a run whose samples all finished means the
/// base density's log-density failed (a host callback reported an error).
struct FirstNaN {
    var index: Int?
    mutating func scan(_ values: [Double], from start: Int) {
        if index == nil, let i = values.firstIndex(where: \.isNaN) { index = start + i }
    }
    func check(_ statistics: SolverStatistics) throws {
        guard statistics.isComplete, let i = index else { return }
        throw FlowError.nonFinite("the base log-density of sample \(i) is NaN (a host log-density callback failed?)")
    }
}

/// `[n, d]` input points as a tensor, checked (non-NULL, sizes, finite):
/// for calls that keep their input (an empirical density copies its points).
func inputPoints(_ x: UnsafePointer<Float>?, _ n: Int, _ d: Int, _ name: String) throws -> Tensor {
    let n = try count(n, "n")
    let nd = try checkedProduct(n, d, name)
    let p = try require(x, name)
    try requireFinite(p, nd, name)
    try HostMemory.reserve(nd, of: Float.self, for: "copy of \(name)")
    return Tensor(shape: [n, d], scalars: Array(UnsafeBufferPointer(start: p, count: nd)))
}

/// Rows `range` of the caller's `[n, d]` buffer as a tensor (one block).
func rows(_ p: UnsafePointer<Float>, _ range: Range<Int>, _ d: Int) -> Tensor {
    Tensor(shape: [range.count, d], scalars: Array(UnsafeBufferPointer(start: p + range.lowerBound * d, count: range.count * d)))
}

/// Copies `values` into the caller's buffer at element `offset`.
func write<T>(_ values: [T], to p: UnsafeMutablePointer<T>, at offset: Int) {
    values.withUnsafeBufferPointer { (p + offset).update(from: $0.baseAddress!, count: $0.count) }
}

@_cdecl("flowrt_flow_create")
public func flowrt_flow_create(_ model: OpaquePointer?, _ params: UnsafePointer<flowrt_flow_params>?,
                               _ out: UnsafeMutablePointer<OpaquePointer?>?) -> flowrt_status {
    guarded("flowrt_flow_create") {
        let out = try require(out, "out")
        out.pointee = nil
        let m = try modelObject(model)
        let p = try readParams(params, defaults: defaultFlowParams(), firstSize: flowParamsFirstSize, "params")
        let schedule = try interpolantSchedule(p.interpolant, function: p.schedule_fn, userData: p.schedule_user_data)
        guard UInt32(bitPattern: p.base) == FLOWRT_BASE_STANDARD_NORMAL.rawValue else {
            throw FlowError.invalidArgument("params->base = \(p.base) is not a flowrt_base_density")
        }
        out.pointee = retainHandle(FlowHandle(try Flow(field: m, schedule: schedule)))
        return FLOWRT_OK
    }
}

@_cdecl("flowrt_flow_free")
public func flowrt_flow_free(_ flow: OpaquePointer?) {
    releaseHandle(flow, FlowHandle.self)
}

@_cdecl("flowrt_flow_dim")
public func flowrt_flow_dim(_ flow: OpaquePointer?) -> Int {
    (try? flowObject(flow).dimension) ?? 0
}

@_cdecl("flowrt_flow_sample")
public func flowrt_flow_sample(_ handle: OpaquePointer?, _ n: Int, _ seed: UInt64,
                               _ params: UnsafePointer<flowrt_solver_params>?, _ xOut: UnsafeMutablePointer<Float>?,
                               _ logProbOut: UnsafeMutablePointer<Double>?,
                               _ stats: UnsafeMutablePointer<flowrt_solver_stats>?) -> flowrt_status {
    sampleCall("flowrt_flow_sample", handle, 0, n, seed, params, xOut, logProbOut, stats)
}

@_cdecl("flowrt_flow_sample_range")
public func flowrt_flow_sample_range(_ handle: OpaquePointer?, _ firstIndex: UInt64, _ n: Int, _ seed: UInt64,
                                     _ params: UnsafePointer<flowrt_solver_params>?, _ xOut: UnsafeMutablePointer<Float>?,
                                     _ logProbOut: UnsafeMutablePointer<Double>?,
                                     _ stats: UnsafeMutablePointer<flowrt_solver_stats>?) -> flowrt_status {
    sampleCall("flowrt_flow_sample_range", handle, firstIndex, n, seed, params, xOut, logProbOut, stats)
}

/// Refuses a conditional flow in a call without contexts, naming the
/// `_conditional` function to call instead.
func requireUnconditional(_ flow: Flow, _ conditionalFunction: String) throws {
    let m = flow.contextDimension
    guard m == 0 else {
        throw FlowError.invalidArgument("the flow is conditional (\(m) context value\(m == 1 ? "" : "s") per point): call \(conditionalFunction) with a context [n, \(m)]")
    }
}

/// The contexts of a per-point call (`[n, m]`): checked for a `_conditional`
/// call, refused (naming the call to use) for a plain call on a conditional
/// flow; nil for unconditional flows.
func pointContexts(_ flow: Flow, _ context: UnsafePointer<Float>?, rows n: Int, conditional: Bool,
                   plainFunction: String) throws -> UnsafePointer<Float>? {
    if conditional { return try callContexts(flow, context, rows: n) }
    try requireUnconditional(flow, plainFunction + "_conditional")
    return nil
}

/// The contexts of a conditional call: nil for an unconditional flow
/// (context must then be NULL, or is ignored when rows is 0), else the
/// caller's `[rows, m]` floats, checked for NULL and size.
func callContexts(_ flow: Flow, _ context: UnsafePointer<Float>?, rows: Int) throws -> UnsafePointer<Float>? {
    let m = flow.contextDimension
    if m == 0 {
        guard context == nil else {
            throw FlowError.invalidArgument("context is not NULL, but the flow is unconditional (context_dim 0): pass NULL")
        }
        return nil
    }
    _ = try checkedProduct(rows, m, "context")
    guard let context else {
        throw FlowError.invalidArgument("context is NULL, but the flow is conditional: pass [n, \(m)] floats (class labels as floats for a label model)")
    }
    return context
}

/// The shared body of the sampling calls: validates, then runs the flow's
/// streamed sampler, writing each block into the caller's buffers (scratch
/// is O(block), whatever n). `context` is `[contextRows, m]` (contextRows
/// n or 1) for the conditional call, `conditional` false for the others.
func sampleCall(_ function: StaticString, _ handle: OpaquePointer?, _ firstIndex: UInt64, _ n: Int, _ seed: UInt64,
                _ params: UnsafePointer<flowrt_solver_params>?, _ xOut: UnsafeMutablePointer<Float>?,
                _ logProbOut: UnsafeMutablePointer<Double>?,
                _ stats: UnsafeMutablePointer<flowrt_solver_stats>?, conditional: Bool = false,
                context: UnsafePointer<Float>? = nil, contextRows: Int = 0, guidance: Double = 0) -> flowrt_status {
    guarded(function) {
        let flow = try flowObject(handle)
        let n = try batchCount(n), d = flow.dimension
        _ = try checkedProduct(n, d, "x_out")
        guard firstIndex <= UInt64(1) << 62 else { throw FlowError.invalidArgument("first_index = \(firstIndex) is too large (at most 2^62)") }
        var contexts: Tensor? = nil
        if conditional {
            let m = flow.contextDimension
            guard m > 0 || guidance == 0 else {
                throw FlowError.unsupported("guidance = \(guidance) needs a label-conditional flow; this flow is unconditional")
            }
            if let c = try callContexts(flow, context, rows: contextRows) {
                guard contextRows == n || contextRows == 1 else {
                    throw FlowError.invalidArgument("context_rows = \(contextRows) must be n = \(n) (one context per point) or 1 (one context for all)")
                }
                let values = Array(UnsafeBufferPointer(start: c, count: contextRows * m))
                contexts = Tensor(shape: [contextRows, m], scalars: values)
            }
        } else {
            try requireUnconditional(flow, "flowrt_flow_sample_conditional")
        }
        let call = try SolverCall(params)
        let precision = effectivePrecision(flow, likelihood: logProbOut != nil)
        if n == 0 { return try finish(function, SolverStatistics(), stats, precision: precision) }
        let x = try require(xOut, "x_out")
        var nan = FirstNaN()
        let statistics = try flow.sampleBlocks(count: n, seed: seed, contexts: contexts, guidance: guidance,
                                               solver: call.options,
                                               logDensity: logProbOut == nil ? nil : call.divergence(for: d),
                                               firstIndex: firstIndex, progress: call.progress) { range, block in
            write(block.points.scalars, to: x, at: range.lowerBound * d)
            if let lp = logProbOut, let values = block.logDensities {
                write(values, to: lp, at: range.lowerBound)
                nan.scan(values, from: range.lowerBound)
            }
        }
        try nan.check(statistics)
        return try finish(function, statistics, stats, precision: precision)
    }
}

/// The shared body of transport and encode (streamed in blocks; x_out may
/// alias x_in: each block is read before it is written). `conditional`
/// calls pass `context` `[n, m]`.
func transportCall(_ function: StaticString, _ handle: OpaquePointer?, _ n: Int, _ xIn: UnsafePointer<Float>?,
                   _ t0: Double, _ t1: Double, _ params: UnsafePointer<flowrt_solver_params>?,
                   _ xOut: UnsafeMutablePointer<Float>?, _ stats: UnsafeMutablePointer<flowrt_solver_stats>?,
                   conditional: Bool = false, context: UnsafePointer<Float>? = nil) -> flowrt_status {
    guarded(function) {
        let flow = try flowObject(handle)
        let n = try batchCount(n), d = flow.dimension
        let m = flow.contextDimension
        let c = try pointContexts(flow, context, rows: n, conditional: conditional, plainFunction: "\(function)")
        let nd = try checkedProduct(n, d, "x_in")
        guard t0.isFinite, t1.isFinite, (0...1).contains(t0), (0...1).contains(t1) else {
            throw FlowError.invalidArgument("t_from = \(t0), t_to = \(t1) must be finite and in [0, 1]")
        }
        let call = try SolverCall(params)
        let precision = effectivePrecision(flow, likelihood: false)
        if n == 0 { return try finish(function, SolverStatistics(), stats, precision: precision) }
        let x = try require(xIn, "x_in")
        let out = try require(xOut, "x_out")
        try requireFinite(x, nd, "x_in")
        let statistics = try flow.transportBlocks(count: n, from: t0, to: t1, solver: call.options, progress: call.progress,
                                                  contexts: c.map { c in { rows(c, $0, m) } },
                                                  points: { rows(x, $0, d) }) { range, r in
            write(r.points.scalars, to: out, at: range.lowerBound * d)
        }
        return try finish(function, statistics, stats, precision: precision)
    }
}

@_cdecl("flowrt_flow_transport")
public func flowrt_flow_transport(_ handle: OpaquePointer?, _ n: Int, _ xIn: UnsafePointer<Float>?,
                                  _ tFrom: Double, _ tTo: Double, _ params: UnsafePointer<flowrt_solver_params>?,
                                  _ xOut: UnsafeMutablePointer<Float>?,
                                  _ stats: UnsafeMutablePointer<flowrt_solver_stats>?) -> flowrt_status {
    transportCall("flowrt_flow_transport", handle, n, xIn, tFrom, tTo, params, xOut, stats)
}

@_cdecl("flowrt_flow_encode")
public func flowrt_flow_encode(_ handle: OpaquePointer?, _ n: Int, _ x: UnsafePointer<Float>?,
                               _ params: UnsafePointer<flowrt_solver_params>?, _ zOut: UnsafeMutablePointer<Float>?,
                               _ stats: UnsafeMutablePointer<flowrt_solver_stats>?) -> flowrt_status {
    transportCall("flowrt_flow_encode", handle, n, x, 1, 0, params, zOut, stats)
}

@_cdecl("flowrt_flow_log_prob")
public func flowrt_flow_log_prob(_ handle: OpaquePointer?, _ n: Int, _ x: UnsafePointer<Float>?, _ t: Double,
                                 _ params: UnsafePointer<flowrt_solver_params>?, _ logProb: UnsafeMutablePointer<Double>?,
                                 _ stdError: UnsafeMutablePointer<Double>?,
                                 _ stats: UnsafeMutablePointer<flowrt_solver_stats>?) -> flowrt_status {
    logProbCall("flowrt_flow_log_prob", handle, n, x, t, params, logProb, stdError, stats)
}

/// The shared body of the log-density calls; `conditional` calls pass
/// `context` `[n, m]`.
func logProbCall(_ function: StaticString, _ handle: OpaquePointer?, _ n: Int, _ x: UnsafePointer<Float>?, _ t: Double,
                 _ params: UnsafePointer<flowrt_solver_params>?, _ logProb: UnsafeMutablePointer<Double>?,
                 _ stdError: UnsafeMutablePointer<Double>?,
                 _ stats: UnsafeMutablePointer<flowrt_solver_stats>?, conditional: Bool = false,
                 context: UnsafePointer<Float>? = nil) -> flowrt_status {
    guarded(function) {
        let flow = try flowObject(handle)
        let n = try batchCount(n), d = flow.dimension
        let m = flow.contextDimension
        let c = try pointContexts(flow, context, rows: n, conditional: conditional, plainFunction: "flowrt_flow_log_prob")
        let nd = try checkedProduct(n, d, "x")
        guard t.isFinite, t >= 0, t <= 1 else { throw FlowError.invalidArgument("t = \(t) must be in [0, 1]") }
        let call = try SolverCall(params)
        let precision = effectivePrecision(flow, likelihood: true)
        if n == 0 { return try finish(function, SolverStatistics(), stats, precision: precision) }
        let points = try require(x, "x")
        let out = try require(logProb, "log_prob")
        try requireFinite(points, nd, "x")
        var nan = FirstNaN()
        let statistics = try flow.logDensityBlocks(count: n, time: t, method: call.divergence(for: d), solver: call.options,
                                                   progress: call.progress, contexts: c.map { c in { rows(c, $0, m) } },
                                                   points: { rows(points, $0, d) }) { range, r in
            write(r.logDensities, to: out, at: range.lowerBound)
            nan.scan(r.logDensities, from: range.lowerBound)
            if let se = stdError {
                write(r.standardErrors ?? [Double](repeating: 0, count: range.count), to: se, at: range.lowerBound)
            }
        }
        try nan.check(statistics)
        return try finish(function, statistics, stats, precision: precision)
    }
}
