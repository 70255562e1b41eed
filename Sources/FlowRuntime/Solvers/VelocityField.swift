/// Anything that gives a velocity v(t, x) for a batch: a network (`Model`),
/// the analytic Gaussian-mixture velocity (tests), a host callback.
///
/// Solvers, the likelihood and the SDE sampler see only this protocol.
/// Buffers are row-major: `points` and `velocities` are `[n, dimension]`;
/// sample i is evaluated at its own time `times[i]`.
public protocol VelocityField: Sendable {
    /// The state dimension d.
    var dimension: Int { get }

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
    /// Default divergence: one JVP with the d basis tangents (chunked so that
    /// at most ~4 M tangent floats are live), trace of the products.
    public func velocityDivergence(times: UnsafeBufferPointer<Double>,
                                   points: UnsafeBufferPointer<Float>,
                                   into velocities: UnsafeMutableBufferPointer<Float>,
                                   divergences: UnsafeMutableBufferPointer<Double>,
                                   workspace: FieldWorkspace) {
        let d = dimension, n = times.count
        let chunk = Swift.max(1, Swift.min(n, (1 << 22) / Swift.max(1, d * d)))
        var tangents = [Float](repeating: 0, count: chunk * d * d)
        var products = [Float](repeating: 0, count: chunk * d * d)
        for i in 0..<chunk { for j in 0..<d { tangents[(i * d + j) * d + j] = 1 } }
        var start = 0
        while start < n {
            let m = Swift.min(chunk, n - start)
            tangents.withUnsafeBufferPointer { tan in
                products.withUnsafeMutableBufferPointer { prod in
                    velocityJVP(
                        times: UnsafeBufferPointer(rebasing: times[start..<start + m]),
                        points: UnsafeBufferPointer(rebasing: points[start * d..<(start + m) * d]),
                        tangents: UnsafeBufferPointer(rebasing: tan[0..<m * d * d]), k: d,
                        into: UnsafeMutableBufferPointer(rebasing: velocities[start * d..<(start + m) * d]),
                        products: UnsafeMutableBufferPointer(rebasing: prod[0..<m * d * d]),
                        workspace: workspace)
                    for i in 0..<m {
                        var tr = 0.0
                        for j in 0..<d { tr += Double(prod[(i * d + j) * d + j]) }
                        divergences[start + i] = tr
                    }
                }
            }
            start += m
        }
    }
}
