// The score and the SDE sampler of a flowrt_flow.
import CFlowRT
import FlowRuntime

@_cdecl("flowrt_flow_score")
public func flowrt_flow_score(_ handle: OpaquePointer?, _ n: Int, _ t: UnsafePointer<Double>?, _ x: UnsafePointer<Float>?,
                              _ scoreOut: UnsafeMutablePointer<Float>?) -> flowrt_status {
    guarded("flowrt_flow_score") {
        let flow = try flowObject(handle)
        let n = try batchCount(n), d = flow.dimension
        let nd = try checkedProduct(n, d, "x")
        try requireRebuiltSchedule(flow, for: "the score")
        let field = try flow.scoreField()
        if n == 0 { return FLOWRT_OK }
        let times = try require(t, "t"), points = try require(x, "x")
        let out = try require(scoreOut, "score_out")
        try requireFinite(points, nd, "x")
        // Blocks of `scoreBlock` rows straight into the caller's buffer: the
        // network's scratch stays bounded whatever n.
        let workspace = field.field.makeWorkspace()
        var start = 0
        while start < n {
            let m = Swift.min(scoreBlock, n - start)
            try field.evaluate(times: UnsafeBufferPointer(start: times + start, count: m),
                               points: UnsafeBufferPointer(start: points + start * d, count: m * d),
                               into: UnsafeMutableBufferPointer(start: out + start * d, count: m * d), workspace: workspace)
            start += m
        }
        return FLOWRT_OK
    }
}

/// Rows per network call of flowrt_flow_score.
let scoreBlock = 1 << 16

func defaultSDEParams() -> flowrt_sde_params {
    flowrt_sde_params(struct_size: UInt32(MemoryLayout<flowrt_sde_params>.size),
                      method: Int32(FLOWRT_SDE_HEUN.rawValue), steps: 200, epsilon: 1, taper: 0.1,
                      diffusion: nil, diffusion_user_data: nil, threads: 0, progress: nil, progress_user_data: nil)
}

/// sizeof(flowrt_sde_params) in 0.2.0, before `progress` was appended.
let sdeParamsFirstSize = MemoryLayout<flowrt_sde_params>.offset(of: \flowrt_sde_params.progress)!

/// The host's diffusion callback (called on the calling thread only).
private struct HostDiffusion: @unchecked Sendable {
    let function: flowrt_diffusion_fn
    let userData: UnsafeMutableRawPointer?
}

@_cdecl("flowrt_flow_sample_sde")
public func flowrt_flow_sample_sde(_ handle: OpaquePointer?, _ params: UnsafePointer<flowrt_sde_params>?, _ seed: UInt64,
                                   _ firstIndex: UInt64, _ n: Int, _ xOut: UnsafeMutablePointer<Float>?) -> flowrt_status {
    sdeSampleCall("flowrt_flow_sample_sde", handle, firstIndex, n, seed, params, xOut, nil)
}

@_cdecl("flowrt_flow_sample_sde_range")
public func flowrt_flow_sample_sde_range(_ handle: OpaquePointer?, _ firstIndex: UInt64, _ n: Int, _ seed: UInt64,
                                         _ params: UnsafePointer<flowrt_sde_params>?, _ xOut: UnsafeMutablePointer<Float>?,
                                         _ stats: UnsafeMutablePointer<flowrt_solver_stats>?) -> flowrt_status {
    sdeSampleCall("flowrt_flow_sample_sde_range", handle, firstIndex, n, seed, params, xOut, stats)
}

/// The body of both SDE sampling calls (their arguments in one order).
private func sdeSampleCall(_ function: StaticString, _ handle: OpaquePointer?, _ firstIndex: UInt64, _ n: Int,
                           _ seed: UInt64, _ params: UnsafePointer<flowrt_sde_params>?,
                           _ xOut: UnsafeMutablePointer<Float>?,
                           _ stats: UnsafeMutablePointer<flowrt_solver_stats>?) -> flowrt_status {
    guarded(function) {
        let flow = try flowObject(handle)
        let n = try batchCount(n), d = flow.dimension
        _ = try checkedProduct(n, d, "x_out")
        guard firstIndex <= UInt64(1) << 62 else { throw FlowError.invalidArgument("first_index = \(firstIndex) is too large (at most 2^62)") }
        try requireRebuiltSchedule(flow, for: "the SDE sampler")
        let p = try readParams(params, defaults: defaultSDEParams(), firstSize: sdeParamsFirstSize, "params")
        let method: SDEOptions.Method
        switch UInt32(bitPattern: p.method) {
        case FLOWRT_SDE_HEUN.rawValue: method = .heun
        case FLOWRT_SDE_EULER_MARUYAMA.rawValue: method = .eulerMaruyama
        default: throw FlowError.invalidArgument("params->method = \(p.method) is not a flowrt_sde_method")
        }
        let diffusion: Diffusion
        if let fn = p.diffusion {
            let host = HostDiffusion(function: fn, userData: p.diffusion_user_data)
            diffusion = .custom { host.function(host.userData, $0) }
        } else {
            diffusion = .constant(p.epsilon)
        }
        var options = SDEOptions(method: method, steps: Int(p.steps), diffusion: diffusion, taperScale: p.taper)
        options.threads = p.threads == 0 ? Parallel.defaultThreads : Int(p.threads)
        do { try options.validate() } catch let FlowError.invalidArgument(m) { throw FlowError.invalidArgument("params: \(m)") }
        let sampler = try SDESampler(score: flow.scoreField(), options: options)
        let progress = hostProgress(p.progress, p.progress_user_data)
        var bad = 0, firstBad: Int?
        var perSample = 0
        if n > 0 {
            let out = try require(xOut, "x_out")
            perSample = try sampler.sampleBlocks(count: n, seed: seed, firstIndex: firstIndex, progress: progress) { range, r in
                write(r.points.scalars, to: out, at: range.lowerBound * d)
                bad += r.nonFiniteSamples.count
                if firstBad == nil { firstBad = r.nonFiniteSamples.first }
            }
        }
        if stats != nil {
            var s = SolverStatistics()
            s.samples = n
            s.steps = n * options.steps
            s.evaluations = n * perSample
            s.nonFiniteSamples = bad
            s.maxStepsPerSample = n > 0 ? options.steps : 0
            _ = try finish(function, s, stats, precision: effectivePrecision(flow, likelihood: false))
        }
        if let firstBad {
            return report(function, FLOWRT_SOLVER_INCOMPLETE,
                          "\(bad) of \(n) samples became non-finite (first: \(firstBad)); lower epsilon or raise steps")
        }
        return FLOWRT_OK
    }
}
