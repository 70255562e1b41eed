/// A probability density on R^d that can be sampled and evaluated: the base
/// ρ0 of a flow, a target for tests, a dataset with a closed form.
///
/// Buffers are row-major `[n, dimension]`. Sampling is reproducible: sample
/// i of a call draws from `RandomStream(seed:, purpose: .baseSample,
/// index: firstIndex + i)` (or its own documented purpose), so results do not
/// depend on how a batch is split across calls or threads.
public protocol Density: SampleSource {
    /// log ρ(x) per row, in nats.
    func logDensity(points: UnsafeBufferPointer<Float>,
                    into logDensities: UnsafeMutableBufferPointer<Double>)
}

/// The standard normal N(0, I_d), the default base density.
public struct StandardNormal: Density {
    public let dimension: Int
    public init(dimension: Int) { self.dimension = dimension }

    public func logDensity(points: UnsafeBufferPointer<Float>,
                           into logDensities: UnsafeMutableBufferPointer<Double>) {
        let d = dimension
        let c = -0.5 * Double(d) * 1.8378770664093453  // log(2π)
        for i in 0..<logDensities.count {
            var s = 0.0
            for j in 0..<d { let v = Double(points[i * d + j]); s += v * v }
            logDensities[i] = c - 0.5 * s
        }
    }

    public func sample(seed: UInt64, firstIndex: UInt64,
                       into samples: UnsafeMutableBufferPointer<Float>) {
        let d = dimension
        for i in 0..<(samples.count / d) {
            var rng = RandomStream(seed: seed, purpose: .baseSample, index: firstIndex + UInt64(i))
            for j in 0..<d { samples[i * d + j] = Float(rng.nextNormal()) }
        }
    }
}
