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
