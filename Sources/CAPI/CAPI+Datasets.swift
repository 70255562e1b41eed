// Built-in 2-D datasets: samples, exact log-densities, entropies.
import CFlowRT
import FlowRuntime

func toyDataset(_ name: UnsafePointer<CChar>?) throws -> ToyDataset {
    let s = String(cString: try require(name, "name"))
    guard let d = ToyDataset(rawValue: s) else {
        throw FlowError.invalidArgument(
            "unknown dataset '\(s)'; known: \(ToyDataset.allCases.map(\.rawValue).joined(separator: ", "))")
    }
    return d
}

@_cdecl("flowrt_dataset_sample")
public func flowrt_dataset_sample(_ name: UnsafePointer<CChar>?, _ n: Int, _ seed: UInt64,
                                  _ x: UnsafeMutablePointer<Float>?) -> flowrt_status {
    datasetSample("flowrt_dataset_sample", name, 0, n, seed, x)
}

@_cdecl("flowrt_dataset_sample_range")
public func flowrt_dataset_sample_range(_ name: UnsafePointer<CChar>?, _ firstIndex: UInt64, _ n: Int, _ seed: UInt64,
                                        _ x: UnsafeMutablePointer<Float>?) -> flowrt_status {
    datasetSample("flowrt_dataset_sample_range", name, firstIndex, n, seed, x)
}

/// The body of both dataset sampling calls.
private func datasetSample(_ function: StaticString, _ name: UnsafePointer<CChar>?, _ firstIndex: UInt64, _ n: Int,
                           _ seed: UInt64, _ x: UnsafeMutablePointer<Float>?) -> flowrt_status {
    guarded(function) {
        let d = try toyDataset(name)
        guard firstIndex <= UInt64(1) << 62 else { throw FlowError.invalidArgument("first_index = \(firstIndex) is too large (at most 2^62)") }
        let n = try batchCount(n)
        let source = d.source
        let total = try checkedProduct(n, source.dimension, "x_out")
        if n == 0 { return FLOWRT_OK }
        let x = try require(x, "x_out")
        source.sample(seed: seed, firstIndex: firstIndex, into: UnsafeMutableBufferPointer(start: x, count: total))
        return FLOWRT_OK
    }
}

@_cdecl("flowrt_dataset_log_prob")
public func flowrt_dataset_log_prob(_ name: UnsafePointer<CChar>?, _ n: Int, _ x: UnsafePointer<Float>?,
                                    _ logProb: UnsafeMutablePointer<Double>?) -> flowrt_status {
    guarded("flowrt_dataset_log_prob") {
        let d = try toyDataset(name)
        let n = try batchCount(n)
        guard let density = d.density else {
            throw FlowError.unsupported("dataset '\(d.rawValue)' has no closed-form density (samples only)")
        }
        let total = try checkedProduct(n, density.dimension, "x")
        if n == 0 { return FLOWRT_OK }
        let x = try require(x, "x"), out = try require(logProb, "log_prob")
        try requireFinite(x, total, "x")
        density.logDensity(points: UnsafeBufferPointer(start: x, count: total),
                           into: UnsafeMutableBufferPointer(start: out, count: n))
        return FLOWRT_OK
    }
}

@_cdecl("flowrt_dataset_info")
public func flowrt_dataset_info(_ name: UnsafePointer<CChar>?, _ dim: UnsafeMutablePointer<Int>?,
                                _ entropy: UnsafeMutablePointer<Double>?) -> flowrt_status {
    guarded("flowrt_dataset_info") {
        let d = try toyDataset(name)
        dim?.pointee = d.source.dimension
        entropy?.pointee = d.entropy ?? .nan
        return FLOWRT_OK
    }
}
