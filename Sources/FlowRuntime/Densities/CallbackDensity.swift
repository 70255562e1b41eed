/// A density defined by the host: a sampler and, optionally, a log-density,
/// given as closures (the C ABI wraps C function pointers in them).
///
/// With a log-density it is a full `Density` (use it as a flow's base for
/// sampling and likelihood, or as a trainer's base); without one, only
/// sampling is available and `hasLogDensity` is false (a trainer's base or a
/// data source; `logDensity` then writes NaN, which FlowRuntime reports as a
/// non-finite result).
///
/// **Contract for the closures.** `sample(seed, firstIndex, out)` fills
/// `out` (`[n, d]`) with n samples whose sample i depends only on
/// (seed, firstIndex + i), so that results do not depend on how FlowRuntime
/// splits a batch across calls and threads; `logDensity(points, out)`
/// writes log ρ of each row in nats. Both may be called from several
/// FlowRuntime worker threads at once (trainers sample from their chunk
/// threads): they must be thread-safe, or the caller must run with one
/// thread. A closure that fails should write NaN: training and sampling
/// then stop with `.nonFinite`.
public struct CallbackDensity: Density {
    public let dimension: Int
    /// Recorded in metadata and messages (default "host").
    public let name: String
    private let sampler: @Sendable (_ seed: UInt64, _ firstIndex: UInt64, _ out: UnsafeMutableBufferPointer<Float>) -> Void
    private let logDensityBody: (@Sendable (_ points: UnsafeBufferPointer<Float>, _ out: UnsafeMutableBufferPointer<Double>) -> Void)?

    /// - Throws: `.invalidArgument` for a dimension ≤ 0.
    public init(dimension: Int, name: String = "host",
                sample: @escaping @Sendable (_ seed: UInt64, _ firstIndex: UInt64, _ out: UnsafeMutableBufferPointer<Float>) -> Void,
                logDensity: (@Sendable (_ points: UnsafeBufferPointer<Float>, _ out: UnsafeMutableBufferPointer<Double>) -> Void)? = nil) throws {
        guard dimension > 0, dimension <= 1 << 16 else {
            throw FlowError.invalidArgument("host density dimension \(dimension) must be in 1...65536")
        }
        self.dimension = dimension
        self.name = name
        self.sampler = sample
        self.logDensityBody = logDensity
    }

    /// Whether a log-density closure was given.
    public var hasLogDensity: Bool { logDensityBody != nil }

    public func sample(seed: UInt64, firstIndex: UInt64, into samples: UnsafeMutableBufferPointer<Float>) {
        if samples.isEmpty { return }
        sampler(seed, firstIndex, samples)
    }

    /// The host's log-density, or NaN per row without one.
    public func logDensity(points: UnsafeBufferPointer<Float>, into logDensities: UnsafeMutableBufferPointer<Double>) {
        if logDensities.isEmpty { return }
        guard let logDensityBody else {
            logDensities.update(repeating: .nan)
            return
        }
        logDensityBody(points, logDensities)
    }
}
