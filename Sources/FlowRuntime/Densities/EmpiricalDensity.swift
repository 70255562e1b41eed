/// The empirical distribution of a sample set held in memory: a dataset, or
/// the base of a data-to-data transport between two sample sets.
///
/// Sampling resamples rows uniformly with replacement: sample i is row
/// `RandomStream(seed, .dataset, firstIndex + i).nextInt(below: count)`.
/// It has no log-density (a sum of point masses), so it is a `SampleSource`
/// and not a `Density`: flows with an empirical base can be trained and
/// sampled, not scored.
public struct EmpiricalDensity: SampleSource {
    public let dimension: Int
    /// The rows, `[count, dimension]` row-major.
    public let points: [Float]

    /// Copies `count` rows of `dimension` floats.
    /// - Throws: `.invalidArgument` for an empty set or a zero dimension,
    ///   `.shapeMismatch` when `points.count` is not a multiple of `dimension`,
    ///   `.nonFinite` naming the first NaN or infinity.
    public init(points: [Float], dimension: Int) throws {
        guard dimension > 0 else { throw FlowError.invalidArgument("empirical density: dimension must be > 0") }
        guard !points.isEmpty else { throw FlowError.invalidArgument("empirical density: no samples") }
        guard points.count % dimension == 0 else {
            throw FlowError.shapeMismatch("empirical density: \(points.count) values are not rows of \(dimension)")
        }
        guard points.count / dimension <= Int(UInt32.max) else {
            throw FlowError.invalidArgument("empirical density: more than 2^32 − 1 rows")
        }
        if let bad = points.firstNonFiniteIndex {
            throw FlowError.nonFinite("empirical density: sample \(bad / dimension), coordinate \(bad % dimension) is \(points[bad])")
        }
        self.dimension = dimension
        self.points = points
    }

    /// Number of rows.
    public var count: Int { points.count / dimension }

    public func sample(seed: UInt64, firstIndex: UInt64, into samples: UnsafeMutableBufferPointer<Float>) {
        let n = count, d = dimension
        points.withUnsafeBufferPointer { src in
            forEachRow(samples, seed: seed, firstIndex: firstIndex, purpose: .dataset) { row, rng in
                let r = rng.nextInt(below: n)
                row.update(from: src.baseAddress! + r * d, count: d)
            }
        }
    }
}
