/// Anything that gives a velocity v(t, x) for a batch: a network (`Model`),
/// the analytic Gaussian-mixture velocity (tests), a host callback.
///
/// Solvers, the likelihood and the SDE sampler see only this protocol.
/// Buffers are row-major: `points` and `velocities` are `[n, dimension]`;
/// sample i is evaluated at its own time `times[i]`.
public protocol VelocityField: Sendable {
    /// The state dimension d.
    var dimension: Int { get }

    /// The most samples a solver should put in one chunk (its unit of
    /// threading) for this field: solvers use min(their chunk size, this).
    /// An expensive network prefers few (a U-Net: 1), so that a batch of a
    /// few dozen images still spreads over every thread; a cheap MLP has no
    /// preference. Must be a fixed property of the field (never of the
    /// thread count): results then stay independent of the thread count.
    /// Default: `Int.max` (no preference).
    var preferredChunkSize: Int { get }

    /// The most samples one evaluation should hold when a run has many (a
    /// U-Net: 4, so that its low-resolution layers fill the GEMM engine and
    /// each weight is read once for several samples). Solvers widen their
    /// chunks up to it only where a run still has 16 chunks or more
    /// (`solverChunkSize(limit:passes:count:)`). A fixed property of the
    /// field, at least `preferredChunkSize`. Default: `preferredChunkSize`.
    var batchChunkSize: Int { get }

    /// Scratch memory for one caller (one thread) at a time. Reusing one
    /// across calls of the same batch size avoids allocation.
    func makeWorkspace() -> FieldWorkspace

    /// v[i, :] = v(times[i], points[i, :]) for i < n.
    /// - Cost: one network evaluation of n samples.
    func velocity(times: UnsafeBufferPointer<Double>,
                  points: UnsafeBufferPointer<Float>,
                  into velocities: UnsafeMutableBufferPointer<Float>,
                  workspace: FieldWorkspace)

    /// The velocity and k Jacobian-vector products per sample:
    /// `products[i, j, :] = J_x v(times[i], points[i]) · tangents[i, j, :]`,
    /// tangents and products `[n, k, dimension]`.
    /// - Cost: about (1 + k) network evaluations of n samples, one pass.
    func velocityJVP(times: UnsafeBufferPointer<Double>,
                     points: UnsafeBufferPointer<Float>,
                     tangents: UnsafeBufferPointer<Float>, k: Int,
                     into velocities: UnsafeMutableBufferPointer<Float>,
                     products: UnsafeMutableBufferPointer<Float>,
                     workspace: FieldWorkspace)

    /// The velocity and its exact divergence ∇·v = tr J_x v per sample.
    /// - Cost: about (1 + d) network evaluations of n samples.
    func velocityDivergence(times: UnsafeBufferPointer<Double>,
                            points: UnsafeBufferPointer<Float>,
                            into velocities: UnsafeMutableBufferPointer<Float>,
                            divergences: UnsafeMutableBufferPointer<Double>,
                            workspace: FieldWorkspace)
}

/// Per-caller scratch memory of a `VelocityField`. Subclass to add state.
open class FieldWorkspace {
    public init() {}
}

extension VelocityField {
    /// No preference: the solver's own chunk size.
    public var preferredChunkSize: Int { Int.max }

    /// No wider chunks than `preferredChunkSize`.
    public var batchChunkSize: Int { preferredChunkSize }

    /// Samples per solver chunk (the unit of threading) for a run of
    /// `count` samples whose evaluations cost `passes` network passes, in
    /// chunks of at most `limit`: c = min(limit, preferredChunkSize),
    /// divided by the power of two at or below `passes`, at least 1; if the
    /// run has fewer than 32 chunks of c, c shrinks to ⌈count / 32⌉ but not
    /// below min(c, 64). Where `batchChunkSize` is larger (U-Nets), c
    /// grows toward min(limit, batchChunkSize) (divided the same way)
    /// while the run keeps at least 16 chunks: 64 U-Net images run in 16
    /// chunks of 4, 16 images in 16 chunks of 1.
    ///
    /// It depends on the field, the workload and the count, never on the
    /// thread count, so results stay bit-identical for any thread count;
    /// for fields whose samples are computed independently (FlowRuntime's
    /// kernels, the analytic fields) they are the same with any chunk.
    ///
    /// Why: threads claim whole chunks, so a run of k chunks on 2 threads
    /// takes at least ⌈k/2⌉ chunk-times. 10,000 samples in chunks of 1,024
    /// leave 5,120 against 4,880 samples (at most 1.95×), 17 chunks 9
    /// against 8 (1.89×), and an expensive evaluation (a U-Net, an exact
    /// divergence at d = 64: 65 passes) one chunk for a whole batch. With
    /// 32 or more chunks the last one costs at most 1/16 of a thread's
    /// share; the wider U-Net chunks accept 16 (8 a thread on 2 threads)
    /// for ~8 % less time a sample.
    public func solverChunkSize(limit: Int, passes: Int = 1, count: Int) -> Int {
        let shift = Int.bitWidth - 1 - Swift.max(1, passes).leadingZeroBitCount
        var c = Swift.max(1, Swift.min(limit, preferredChunkSize) >> shift)
        let spread = count / 32 + (count % 32 == 0 ? 0 : 1)
        if spread < c { c = Swift.max(Swift.min(c, 64), spread) }
        guard batchChunkSize > preferredChunkSize else { return c }
        let wide = Swift.max(1, Swift.min(limit, batchChunkSize) >> shift)
        if wide > c { c = Swift.max(c, Swift.min(wide, count / 16)) }
        return c
    }

    /// Default divergence: one JVP with the d basis tangents (chunked so that
    /// at most ~4 M tangent floats are live), trace of the products.
    public func velocityDivergence(times: UnsafeBufferPointer<Double>,
                                   points: UnsafeBufferPointer<Float>,
                                   into velocities: UnsafeMutableBufferPointer<Float>,
                                   divergences: UnsafeMutableBufferPointer<Double>,
                                   workspace: FieldWorkspace) {
        let d = dimension
        _divergenceByBasisTangents(dimension: d, count: times.count, divergences: divergences) { range, tangents, products in
            velocityJVP(times: UnsafeBufferPointer(rebasing: times[range]),
                        points: UnsafeBufferPointer(rebasing: points[range.lowerBound * d..<range.upperBound * d]),
                        tangents: tangents, k: d,
                        into: UnsafeMutableBufferPointer(rebasing: velocities[range.lowerBound * d..<range.upperBound * d]),
                        products: products, workspace: workspace)
        }
    }
}
