/// Something that draws samples in R^d reproducibly: every `Density`, plus
/// sources without a density (an empirical sample set, two moons).
///
/// Buffers are row-major `[n, dimension]`. Sample i of a call is a pure
/// function of (seed, firstIndex + i) — each implementation documents its
/// `RandomStream.Purpose` — so results do not depend on how a batch is split
/// across calls or threads.
public protocol SampleSource: Sendable {
    /// The dimension d of a sample.
    var dimension: Int { get }
    /// Draws `samples.count / dimension` samples.
    func sample(seed: UInt64, firstIndex: UInt64,
                into samples: UnsafeMutableBufferPointer<Float>)
}

extension SampleSource {
    /// `count` samples (`[count, dimension]`), sample i drawn with stream
    /// index `firstIndex + i`.
    public func samples(count: Int, seed: UInt64, firstIndex: UInt64 = 0) -> Tensor {
        var x = Tensor(shape: [count, dimension])
        x.scalars.withUnsafeMutableBufferPointer { sample(seed: seed, firstIndex: firstIndex, into: $0) }
        return x
    }

    /// Calls `body(row, stream)` for every row of `samples` with
    /// `RandomStream(seed, purpose, firstIndex + row)`: the loop every
    /// implementation shares.
    @inline(__always)
    func forEachRow(_ samples: UnsafeMutableBufferPointer<Float>, seed: UInt64, firstIndex: UInt64,
                    purpose: RandomStream.Purpose,
                    _ body: (_ row: UnsafeMutablePointer<Float>, _ rng: inout RandomStream) -> Void) {
        let d = dimension
        guard let base = samples.baseAddress else { return }
        for i in 0..<(samples.count / d) {
            var rng = RandomStream(seed: seed, purpose: purpose, index: firstIndex &+ UInt64(i))
            body(base + i * d, &rng)
        }
    }
}
