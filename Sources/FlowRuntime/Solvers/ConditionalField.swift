/// A velocity v(t, x, c) with a context c per sample (DESIGN.md §5
/// "Conditioning"): a float vector of `contextDimension` values, or a class
/// label carried as one float. A conditional network (`Model` with a
/// context input), a guided label model (`GuidedField`), an analytic
/// conditional velocity in tests.
///
/// Buffers are row-major: `contexts` is `[n, contextDimension]` and row i
/// goes with sample i. The solvers hold each sample's context fixed along
/// its trajectory (see `Transport`); the unconditional requirements of
/// `VelocityField` evaluate with zero contexts (a network) and are not used
/// by conditional runs.
public protocol ConditionalVelocityField: VelocityField {
    /// Context values per sample (0: the field ignores contexts).
    var contextDimension: Int { get }

    /// Checks contexts `[n, contextDimension]` before a run: finite, and
    /// labels that name a class.
    /// - Throws: `.shapeMismatch`, `.nonFinite`, `.invalidArgument`.
    func validateContexts(_ contexts: UnsafeBufferPointer<Float>, count n: Int) throws

    /// v[i, :] = v(times[i], points[i, :], contexts[i, :]) for i < n.
    /// - Cost: one network evaluation of n samples.
    func velocity(times: UnsafeBufferPointer<Double>,
                  points: UnsafeBufferPointer<Float>,
                  contexts: UnsafeBufferPointer<Float>?,
                  into velocities: UnsafeMutableBufferPointer<Float>,
                  workspace: FieldWorkspace)

    /// The velocity and k Jacobian-vector products in x per sample, with
    /// each sample's context held fixed (as `VelocityField.velocityJVP`).
    func velocityJVP(times: UnsafeBufferPointer<Double>,
                     points: UnsafeBufferPointer<Float>,
                     contexts: UnsafeBufferPointer<Float>?,
                     tangents: UnsafeBufferPointer<Float>, k: Int,
                     into velocities: UnsafeMutableBufferPointer<Float>,
                     products: UnsafeMutableBufferPointer<Float>,
                     workspace: FieldWorkspace)

    /// The velocity and its exact divergence in x per sample.
    /// - Cost: about (1 + d) network evaluations of n samples.
    func velocityDivergence(times: UnsafeBufferPointer<Double>,
                            points: UnsafeBufferPointer<Float>,
                            contexts: UnsafeBufferPointer<Float>?,
                            into velocities: UnsafeMutableBufferPointer<Float>,
                            divergences: UnsafeMutableBufferPointer<Double>,
                            workspace: FieldWorkspace)
}

extension ConditionalVelocityField {
    /// Default: every context value must be finite.
    public func validateContexts(_ contexts: UnsafeBufferPointer<Float>, count n: Int) throws {
        let m = contextDimension
        guard contexts.count >= n * m else {
            throw FlowError.shapeMismatch("contexts hold \(contexts.count) values; \(n) samples need \(n * m)")
        }
        if let i = UnsafeBufferPointer(rebasing: contexts[0..<(n * m)]).firstNonFiniteIndex {
            throw FlowError.nonFinite("context of sample \(i / Swift.max(m, 1)) is not finite")
        }
    }

    /// Default divergence: the trace of one JVP with the d basis tangents,
    /// chunked as `VelocityField.velocityDivergence`.
    public func velocityDivergence(times: UnsafeBufferPointer<Double>,
                                   points: UnsafeBufferPointer<Float>,
                                   contexts: UnsafeBufferPointer<Float>?,
                                   into velocities: UnsafeMutableBufferPointer<Float>,
                                   divergences: UnsafeMutableBufferPointer<Double>,
                                   workspace: FieldWorkspace) {
        let m = contextDimension
        _divergenceByBasisTangents(dimension: dimension, count: times.count, divergences: divergences) { range, tangents, products in
            velocityJVP(times: UnsafeBufferPointer(rebasing: times[range]),
                        points: UnsafeBufferPointer(rebasing: points[range.lowerBound * dimension..<range.upperBound * dimension]),
                        contexts: contexts.map { UnsafeBufferPointer(rebasing: $0[range.lowerBound * m..<range.upperBound * m]) },
                        tangents: tangents, k: dimension,
                        into: UnsafeMutableBufferPointer(rebasing: velocities[range.lowerBound * dimension..<range.upperBound * dimension]),
                        products: products, workspace: workspace)
        }
    }
}

/// The divergence as the trace of a JVP with the d basis tangents, run in
/// chunks so that at most ~4 M tangent floats are live: `jvp(range,
/// tangents, products)` evaluates rows `range` with `[range.count, d, d]`
/// tangents. Serves `VelocityField` and `ConditionalVelocityField`.
func _divergenceByBasisTangents(dimension d: Int, count n: Int, divergences: UnsafeMutableBufferPointer<Double>,
                                jvp: (Range<Int>, UnsafeBufferPointer<Float>, UnsafeMutableBufferPointer<Float>) -> Void) {
    let chunk = Swift.max(1, Swift.min(n, (1 << 22) / Swift.max(1, d * d)))
    var tangents = [Float](repeating: 0, count: chunk * d * d)
    var products = [Float](repeating: 0, count: chunk * d * d)
    for i in 0..<chunk { for j in 0..<d { tangents[(i * d + j) * d + j] = 1 } }
    var start = 0
    while start < n {
        let m = Swift.min(chunk, n - start)
        tangents.withUnsafeBufferPointer { tan in
            products.withUnsafeMutableBufferPointer { prod in
                jvp(start..<start + m, UnsafeBufferPointer(rebasing: tan[0..<m * d * d]),
                    UnsafeMutableBufferPointer(rebasing: prod[0..<m * d * d]))
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

/// Contexts bound to one block of a run: row i of `values` (`[n, m]`) is
/// the context of the block's sample i, fixed along its trajectory.
struct BoundContexts: @unchecked Sendable {
    let field: any ConditionalVelocityField
    let values: [Float]
    var dimension: Int { field.contextDimension }

    /// Checks `contexts` against `field` for a run of `n` samples: nil for
    /// an unconditional field without contexts.
    /// - Throws: `.invalidArgument` when a conditional field gets no
    ///   contexts (naming what to pass) or an unconditional one gets some;
    ///   `.shapeMismatch` unless contexts hold n × m values; the field's
    ///   `validateContexts` errors.
    static func bind(_ field: any VelocityField, _ contexts: Tensor?, count n: Int) throws -> BoundContexts? {
        let conditional = field as? any ConditionalVelocityField
        let m = conditional?.contextDimension ?? 0
        guard m > 0, let conditional else {
            if contexts != nil {
                throw FlowError.invalidArgument("contexts were given, but the velocity field is unconditional: pass none")
            }
            return nil
        }
        guard let contexts else { throw missing(m) }
        let shapeOK = contexts.shape == [n, m] || (m == 1 && contexts.shape == [n])
        guard shapeOK, contexts.count == n * m else {
            throw FlowError.shapeMismatch("contexts have shape \(contexts.shape); expected [\(n), \(m)] (one context per point)")
        }
        try contexts.scalars.withUnsafeBufferPointer { try conditional.validateContexts($0, count: n) }
        return BoundContexts(field: conditional, values: contexts.scalars)
    }

    /// The error of a conditional run without contexts.
    static func missing(_ m: Int) -> FlowError {
        .invalidArgument("the flow is conditional (\(m) context value\(m == 1 ? "" : "s") per point): pass contexts [n, \(m)], one row per point (class labels as floats for a label model)")
    }

    /// Whether `field` needs contexts; throws `missing` when it does and
    /// `given` is false, and refuses contexts for an unconditional field.
    static func check(_ field: any VelocityField, given: Bool) throws {
        let m = (field as? any ConditionalVelocityField)?.contextDimension ?? 0
        if m > 0, !given { throw missing(m) }
        if m == 0, given { throw FlowError.invalidArgument("contexts were given, but the velocity field is unconditional: pass none") }
    }
}

/// Class-conditional guidance (DESIGN.md §5): v = (1 + w) v̂(t, x, c) − w v̂(t, x, ∅),
/// where ∅ is the null label of a network trained with label dropout
/// (`TrainerConfiguration.labelDropout`; the last class index).
///
/// It changes the density the flow transports, so `Flow` refuses
/// log-densities with guidance. w = 0 is the conditional field itself.
/// - Cost: two evaluations of the wrapped field per evaluation.
public struct GuidedField: ConditionalVelocityField {
    /// The label-conditional field v̂(t, x, c).
    public let field: any ConditionalVelocityField
    /// The label ∅ standing for "no class".
    public let nullLabel: Float
    /// The guidance weight w.
    public let weight: Double

    public init(field: any ConditionalVelocityField, nullLabel: Float, weight: Double) {
        self.field = field
        self.nullLabel = nullLabel
        self.weight = weight
    }

    public var dimension: Int { field.dimension }
    public var contextDimension: Int { field.contextDimension }
    /// The wrapped field's (each evaluation costs two of its evaluations).
    public var preferredChunkSize: Int { field.preferredChunkSize }
    /// The wrapped field's.
    public var batchChunkSize: Int { field.batchChunkSize }

    public func validateContexts(_ contexts: UnsafeBufferPointer<Float>, count n: Int) throws {
        try field.validateContexts(contexts, count: n)
    }

    final class Workspace: FieldWorkspace {
        let inner: FieldWorkspace
        let nullContexts = FloatBuffer(), unconditional = FloatBuffer(), unconditionalProducts = FloatBuffer()
        init(_ inner: FieldWorkspace) { self.inner = inner }
    }

    public func makeWorkspace() -> FieldWorkspace { Workspace(field.makeWorkspace()) }

    /// The null contexts `[n, m]` in the workspace.
    private func nullContexts(_ n: Int, _ ws: Workspace) -> UnsafeBufferPointer<Float> {
        let c = ws.nullContexts.reserve(Swift.max(n * contextDimension, 1))
        c.update(repeating: nullLabel, count: n * contextDimension)
        return UnsafeBufferPointer(start: c, count: n * contextDimension)
    }

    /// out = (1 + w) out − w other.
    private func combine(_ out: UnsafeMutableBufferPointer<Float>, _ other: UnsafePointer<Float>, _ count: Int) {
        let a = Float(1 + weight), b = Float(weight)
        for j in 0..<count { out[j] = a * out[j] - b * other[j] }
    }

    public func velocity(times: UnsafeBufferPointer<Double>, points: UnsafeBufferPointer<Float>,
                         contexts: UnsafeBufferPointer<Float>?, into velocities: UnsafeMutableBufferPointer<Float>,
                         workspace: FieldWorkspace) {
        let ws = workspace as! Workspace, n = times.count, d = dimension
        field.velocity(times: times, points: points, contexts: contexts, into: velocities, workspace: ws.inner)
        let u = ws.unconditional.reserve(Swift.max(n * d, 1))
        field.velocity(times: times, points: points, contexts: nullContexts(n, ws),
                       into: UnsafeMutableBufferPointer(start: u, count: n * d), workspace: ws.inner)
        combine(velocities, u, n * d)
    }

    public func velocity(times: UnsafeBufferPointer<Double>, points: UnsafeBufferPointer<Float>,
                         into velocities: UnsafeMutableBufferPointer<Float>, workspace: FieldWorkspace) {
        let ws = workspace as! Workspace
        velocity(times: times, points: points, contexts: nullContexts(times.count, ws), into: velocities, workspace: ws)
    }

    public func velocityJVP(times: UnsafeBufferPointer<Double>, points: UnsafeBufferPointer<Float>,
                            contexts: UnsafeBufferPointer<Float>?, tangents: UnsafeBufferPointer<Float>, k: Int,
                            into velocities: UnsafeMutableBufferPointer<Float>,
                            products: UnsafeMutableBufferPointer<Float>, workspace: FieldWorkspace) {
        let ws = workspace as! Workspace, n = times.count, d = dimension
        field.velocityJVP(times: times, points: points, contexts: contexts, tangents: tangents, k: k,
                          into: velocities, products: products, workspace: ws.inner)
        let u = ws.unconditional.reserve(Swift.max(n * d, 1))
        let up = ws.unconditionalProducts.reserve(Swift.max(n * k * d, 1))
        field.velocityJVP(times: times, points: points, contexts: nullContexts(n, ws), tangents: tangents, k: k,
                          into: UnsafeMutableBufferPointer(start: u, count: n * d),
                          products: UnsafeMutableBufferPointer(start: up, count: n * k * d), workspace: ws.inner)
        combine(velocities, u, n * d)
        combine(products, up, n * k * d)
    }

    public func velocityJVP(times: UnsafeBufferPointer<Double>, points: UnsafeBufferPointer<Float>,
                            tangents: UnsafeBufferPointer<Float>, k: Int,
                            into velocities: UnsafeMutableBufferPointer<Float>,
                            products: UnsafeMutableBufferPointer<Float>, workspace: FieldWorkspace) {
        let ws = workspace as! Workspace
        velocityJVP(times: times, points: points, contexts: nullContexts(times.count, ws), tangents: tangents, k: k,
                    into: velocities, products: products, workspace: ws)
    }
}
