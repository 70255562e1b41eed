// flowrt_density: host-defined (callbacks), diagonal normal and empirical
// densities, and flows with such a base.
import CFlowRT
import FlowRuntime

/// The object behind a `flowrt_density *`: a sampler, and a density unless
/// it is sample-only.
final class DensityHandle {
    let source: any SampleSource
    let density: (any Density)?
    init(source: any SampleSource, density: (any Density)?) {
        self.source = source
        self.density = density
    }
}

/// The density behind a handle, or `.invalidArgument` for NULL. Other C ABI
/// files (training with a host base or data source) take handles through this.
func densityObject(_ handle: OpaquePointer?, _ name: String = "density") throws -> DensityHandle {
    try object(handle, DensityHandle.self, name)
}

/// The host's callbacks and user data (the host promises thread safety).
private struct HostCallbacks: @unchecked Sendable {
    let sample: flowrt_density_sample_fn
    let logProb: flowrt_density_log_prob_fn?
    let userData: UnsafeMutableRawPointer?
}

@_cdecl("flowrt_density_create_callbacks")
public func flowrt_density_create_callbacks(_ dim: Int, _ sample: flowrt_density_sample_fn?,
                                            _ logProb: flowrt_density_log_prob_fn?, _ userData: UnsafeMutableRawPointer?,
                                            _ out: UnsafeMutablePointer<OpaquePointer?>?) -> flowrt_status {
    guarded("flowrt_density_create_callbacks") {
        let out = try require(out, "out")
        out.pointee = nil
        let host = HostCallbacks(sample: try require(sample, "sample"), logProb: logProb, userData: userData)
        let d = try count(dim, "dim")
        let logDensity: (@Sendable (UnsafeBufferPointer<Float>, UnsafeMutableBufferPointer<Double>) -> Void)?
        if host.logProb != nil {
            logDensity = { points, values in
                if host.logProb!(host.userData, values.count, d, points.baseAddress, values.baseAddress) != 0 {
                    values.update(repeating: .nan)
                }
            }
        } else {
            logDensity = nil
        }
        let density = try CallbackDensity(dimension: d, sample: { seed, first, samples in
            if host.sample(host.userData, seed, first, samples.count / d, d, samples.baseAddress) != 0 {
                samples.update(repeating: .nan)
            }
        }, logDensity: logDensity)
        out.pointee = retainHandle(DensityHandle(source: density, density: density.hasLogDensity ? density : nil))
        return FLOWRT_OK
    }
}

@_cdecl("flowrt_density_create_diagonal_normal")
public func flowrt_density_create_diagonal_normal(_ dim: Int, _ mean: UnsafePointer<Double>?, _ std: UnsafePointer<Double>?,
                                                  _ out: UnsafeMutablePointer<OpaquePointer?>?) -> flowrt_status {
    guarded("flowrt_density_create_diagonal_normal") {
        let out = try require(out, "out")
        out.pointee = nil
        let d = try count(dim, "dim")
        guard d <= 1 << 16 else { throw FlowError.invalidArgument("dim = \(d) must be ≤ 65536") }
        if let mean { try requireFinite(mean, d, "mean") }
        if let std { try requireFinite(std, d, "std") }
        let m = mean.map { Array(UnsafeBufferPointer(start: $0, count: d)) } ?? [Double](repeating: 0, count: d)
        let s = std.map { Array(UnsafeBufferPointer(start: $0, count: d)) } ?? [Double](repeating: 1, count: d)
        let density = try DiagonalNormal(mean: m, standardDeviation: s)
        out.pointee = retainHandle(DensityHandle(source: density, density: density))
        return FLOWRT_OK
    }
}

@_cdecl("flowrt_density_create_empirical")
public func flowrt_density_create_empirical(_ n: Int, _ dim: Int, _ x: UnsafePointer<Float>?,
                                            _ out: UnsafeMutablePointer<OpaquePointer?>?) -> flowrt_status {
    guarded("flowrt_density_create_empirical") {
        let out = try require(out, "out")
        out.pointee = nil
        let d = try count(dim, "dim")
        let points = try inputPoints(x, n, d, "x")
        let density = try EmpiricalDensity(points: points.scalars, dimension: d)
        out.pointee = retainHandle(DensityHandle(source: density, density: nil))
        return FLOWRT_OK
    }
}

@_cdecl("flowrt_density_free")
public func flowrt_density_free(_ density: OpaquePointer?) {
    releaseHandle(density, DensityHandle.self)
}

@_cdecl("flowrt_density_dim")
public func flowrt_density_dim(_ density: OpaquePointer?) -> Int {
    (try? densityObject(density).source.dimension) ?? 0
}

@_cdecl("flowrt_density_has_log_prob")
public func flowrt_density_has_log_prob(_ density: OpaquePointer?) -> Int32 {
    (try? densityObject(density).density) != nil ? 1 : 0
}

@_cdecl("flowrt_density_sample")
public func flowrt_density_sample(_ density: OpaquePointer?, _ seed: UInt64, _ firstIndex: UInt64, _ n: Int,
                                  _ out: UnsafeMutablePointer<Float>?) -> flowrt_status {
    guarded("flowrt_density_sample") {
        let source = try densityObject(density).source
        let n = try batchCount(n)
        let nd = try checkedProduct(n, source.dimension, "out")
        if n == 0 { return FLOWRT_OK }
        let out = try require(out, "out")
        source.sample(seed: seed, firstIndex: firstIndex, into: UnsafeMutableBufferPointer(start: out, count: nd))
        for i in 0..<nd where !out[i].isFinite {
            throw FlowError.nonFinite("sample \(i / source.dimension) is not finite (did the host sampler fail?)")
        }
        return FLOWRT_OK
    }
}

@_cdecl("flowrt_density_sample_range")
public func flowrt_density_sample_range(_ density: OpaquePointer?, _ firstIndex: UInt64, _ n: Int, _ seed: UInt64,
                                        _ out: UnsafeMutablePointer<Float>?) -> flowrt_status {
    flowrt_density_sample(density, seed, firstIndex, n, out)
}

@_cdecl("flowrt_density_log_prob")
public func flowrt_density_log_prob(_ density: OpaquePointer?, _ n: Int, _ x: UnsafePointer<Float>?,
                                    _ out: UnsafeMutablePointer<Double>?) -> flowrt_status {
    guarded("flowrt_density_log_prob") {
        let handle = try densityObject(density)
        guard let d = handle.density else {
            throw FlowError.unsupported("this density is sample-only (no log-density)")
        }
        let n = try batchCount(n)
        let nd = try checkedProduct(n, d.dimension, "x")
        if n == 0 { return FLOWRT_OK }
        let x = try require(x, "x")
        let out = try require(out, "out")
        try requireFinite(x, nd, "x")
        d.logDensity(points: UnsafeBufferPointer(start: x, count: nd), into: UnsafeMutableBufferPointer(start: out, count: n))
        for i in 0..<n where out[i].isNaN {
            throw FlowError.nonFinite("log-density of row \(i) is NaN (did the host callback fail?)")
        }
        return FLOWRT_OK
    }
}

@_cdecl("flowrt_flow_create_with_base")
public func flowrt_flow_create_with_base(_ model: OpaquePointer?, _ params: UnsafePointer<flowrt_flow_params>?,
                                         _ base: OpaquePointer?, _ out: UnsafeMutablePointer<OpaquePointer?>?) -> flowrt_status {
    guarded("flowrt_flow_create_with_base") {
        let out = try require(out, "out")
        out.pointee = nil
        let handle = try densityObject(base, "base")
        guard let density = handle.density else {
            throw FlowError.unsupported("the base of a flow needs a log-density; this density is sample-only")
        }
        // The standard flow first (it validates the model and params), then
        // the same field and schedule over the given base.
        var p = try readParams(params, defaults: defaultFlowParams(), firstSize: flowParamsFirstSize, "params")
        p.struct_size = UInt32(MemoryLayout<flowrt_flow_params>.size)
        p.base = Int32(FLOWRT_BASE_STANDARD_NORMAL.rawValue)  // ignored: `base` replaces it
        var standard: OpaquePointer? = nil
        let status = flowrt_flow_create(model, &p, &standard)
        guard status == FLOWRT_OK else { return status }
        defer { flowrt_flow_free(standard) }
        let flow = try flowObject(standard)
        out.pointee = retainHandle(FlowHandle(try Flow(field: flow.field, base: density, schedule: flow.schedule)))
        return FLOWRT_OK
    }
}

@_cdecl("flowrt_trainer_create_from_densities")
public func flowrt_trainer_create_from_densities(_ initial: OpaquePointer?, _ target: OpaquePointer?, _ base: OpaquePointer?,
                                                 _ heldOut: Int, _ params: UnsafePointer<flowrt_trainer_params>?,
                                                 _ out: UnsafeMutablePointer<OpaquePointer?>?) -> flowrt_status {
    guarded("flowrt_trainer_create_from_densities") {
        let out = try require(out, "out")
        out.pointee = nil
        let model = try modelObject(initial, "init")
        let data = try densityObject(target, "target").source
        let baseSource = try base.map { try densityObject($0, "base").source }
        let held = try count(heldOut, "heldout", allowZero: true)
        let p = try readParams(params, defaults: defaultTrainerParams(), knownSizes: trainerParamsSizes, "params")
        let (config, loss) = try trainerSettings(p)
        let trainer = try Trainer(graph: model.graph, data: .source(data, heldOut: held), base: baseSource,
                                  loss: loss, configuration: config, metadata: model.metadata)
        out.pointee = retainHandle(try TrainerHandle(trainer, p))
        return FLOWRT_OK
    }
}

@_cdecl("flowrt_trainer_set_coupling")
public func flowrt_trainer_set_coupling(_ handle: OpaquePointer?, _ coupling: Int32) -> flowrt_status {
    guarded("flowrt_trainer_set_coupling") {
        let h = try object(handle, TrainerHandle.self, "trainer")
        try h.refusePathLength("flowrt_trainer_set_coupling", "the network would train on other pairs than those the schedule moves with")
        h.trainer.coupling = try minibatchCoupling(coupling, "coupling")
        return FLOWRT_OK
    }
}
