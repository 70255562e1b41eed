#if canImport(Glibc)
import Glibc
#endif

/// The exact velocity of the interpolant x_t = α(t) x0 + β(t) x1 between
/// ρ0 = N(0, I) and a Gaussian mixture ρ1 = Σ_j p_j N(μ_j, C_j), for any
/// schedule (DESIGN.md §1 "Analytic oracle"): the independent reference that
/// integrators, divergences and likelihoods are tested against.
///
/// With C̃_j = α² I + β² C_j (so ρ_t = Σ_j p_j N(β μ_j, C̃_j)),
/// A_j = (αα' I + ββ' C_j) C̃_j⁻¹ (= ½ Ċ_j C̃_j⁻¹), u_j(x) = β' μ_j + A_j (x − β μ_j),
/// g_j = −C̃_j⁻¹ (x − β μ_j), w_j the posterior weights and ḡ = Σ w_j g_j:
///
///     v(t, x)   = Σ_j w_j u_j
///     J_x v · τ = Σ_j w_j [A_j τ + u_j (g_j − ḡ)·τ]
///     ∇·v       = Σ_j w_j [tr A_j + u_j·(g_j − ḡ)]
///
/// Each C_j = Q_j Λ_j Q_jᵀ is diagonalised once, so at any t every matrix
/// above is Q_j diag(·) Q_jᵀ: no per-sample factorisation. Arithmetic is in
/// Double; only the velocities and products are rounded to Float.
public struct AnalyticMixtureFlow: VelocityField {
    public let mixture: GaussianMixture
    public let schedule: any Schedule
    /// Eigenvectors Q_j (row-major, columns are eigenvectors) and eigenvalues Λ_j.
    let eigenvectors: [[Double]]
    let eigenvalues: [[Double]]
    let logWeights: [Double]

    public var dimension: Int { mixture.dimension }

    public init(mixture: GaussianMixture, schedule: any Schedule) {
        self.mixture = mixture
        self.schedule = schedule
        var q: [[Double]] = [], l: [[Double]] = []
        for c in mixture.covariances {
            let (values, vectors) = symmetricEigendecomposition(c, mixture.dimension)
            q.append(vectors); l.append(values)
        }
        eigenvectors = q
        eigenvalues = l
        logWeights = mixture.weights.map { log($0) }
    }

    public func makeWorkspace() -> FieldWorkspace { FieldWorkspace() }

    /// Per-component quantities of one point at one time.
    private struct Terms {
        var weights: [Double]        // w_j
        var u: [[Double]]            // u_j
        var g: [[Double]]            // g_j
        var traceA: [Double]         // tr A_j
        var gBar: [Double]           // ḡ
        var ratio: [[Double]]        // a_i / s_i per component (A_j's eigenvalues)
        var logDensity: Double       // log ρ_t(x)
    }

    private func terms(t: Double, x: [Double]) -> Terms {
        let d = dimension, jCount = mixture.weights.count
        let k = schedule.coefficients(at: t)
        let (al, be, ad, bd) = (k.alpha, k.beta, k.alphaDot, k.betaDot)
        var out = Terms(weights: [], u: [], g: [], traceA: [], gBar: [Double](repeating: 0, count: d), ratio: [], logDensity: 0)
        var logN = [Double](repeating: 0, count: jCount)
        for j in 0..<jCount {
            let q = eigenvectors[j], lam = eigenvalues[j], mu = mixture.means[j]
            // z = Qᵀ (x − β μ)
            var z = [Double](repeating: 0, count: d)
            for i in 0..<d {
                var s = 0.0
                for r in 0..<d { s += q[r * d + i] * (x[r] - be * mu[r]) }
                z[i] = s
            }
            var quad = 0.0, logDet = 0.0, tr = 0.0
            var ratio = [Double](repeating: 0, count: d), zs = [Double](repeating: 0, count: d), za = [Double](repeating: 0, count: d)
            for i in 0..<d {
                let s = al * al + be * be * lam[i]
                let a = al * ad + be * bd * lam[i]
                quad += z[i] * z[i] / s
                logDet += log(s)
                ratio[i] = a / s
                tr += ratio[i]
                zs[i] = z[i] / s
                za[i] = ratio[i] * z[i]
            }
            logN[j] = logWeights[j] - 0.5 * logDet - 0.5 * quad - 0.5 * Double(d) * log(2 * Double.pi)
            var u = [Double](repeating: 0, count: d), g = [Double](repeating: 0, count: d)
            for r in 0..<d {
                var su = 0.0, sg = 0.0
                for i in 0..<d { su += q[r * d + i] * za[i]; sg += q[r * d + i] * zs[i] }
                u[r] = bd * mu[r] + su
                g[r] = -sg
            }
            out.u.append(u); out.g.append(g); out.traceA.append(tr); out.ratio.append(ratio)
        }
        out.logDensity = logSumExp(logN)
        out.weights = logN.map { exp($0 - out.logDensity) }
        for j in 0..<jCount { for r in 0..<d { out.gBar[r] += out.weights[j] * out.g[j][r] } }
        return out
    }

    private func point(_ points: UnsafeBufferPointer<Float>, _ i: Int) -> [Double] {
        (0..<dimension).map { Double(points[i * dimension + $0]) }
    }

    private func velocity(_ tm: Terms) -> [Double] {
        (0..<dimension).map { r in (0..<tm.weights.count).reduce(0) { $0 + tm.weights[$1] * tm.u[$1][r] } }
    }

    /// The terms of sample i, writing its velocity row.
    private func evaluate(_ i: Int, _ times: UnsafeBufferPointer<Double>, _ points: UnsafeBufferPointer<Float>,
                          _ velocities: UnsafeMutableBufferPointer<Float>) -> Terms {
        let d = dimension
        let tm = terms(t: times[i], x: point(points, i))
        let v = velocity(tm)
        for r in 0..<d { velocities[i * d + r] = Float(v[r]) }
        return tm
    }

    /// - Cost: O(J d²) per sample.
    public func velocity(times: UnsafeBufferPointer<Double>, points: UnsafeBufferPointer<Float>,
                         into velocities: UnsafeMutableBufferPointer<Float>, workspace: FieldWorkspace) {
        for i in 0..<times.count { _ = evaluate(i, times, points, velocities) }
    }

    /// Exact J·τ from the closed form above. - Cost: O(J d² (1 + k)) per sample.
    public func velocityJVP(times: UnsafeBufferPointer<Double>, points: UnsafeBufferPointer<Float>,
                            tangents: UnsafeBufferPointer<Float>, k: Int,
                            into velocities: UnsafeMutableBufferPointer<Float>,
                            products: UnsafeMutableBufferPointer<Float>, workspace: FieldWorkspace) {
        let d = dimension
        for i in 0..<times.count {
            let tm = evaluate(i, times, points, velocities)
            for kk in 0..<k {
                let tau = (0..<d).map { Double(tangents[(i * k + kk) * d + $0]) }
                var jt = [Double](repeating: 0, count: d)
                for j in 0..<tm.weights.count {
                    let q = eigenvectors[j]
                    // A_j τ = Q diag(ratio) Qᵀ τ
                    var y = [Double](repeating: 0, count: d)
                    for c in 0..<d {
                        var s = 0.0
                        for r in 0..<d { s += q[r * d + c] * tau[r] }
                        y[c] = tm.ratio[j][c] * s
                    }
                    var dot = 0.0
                    for r in 0..<d { dot += (tm.g[j][r] - tm.gBar[r]) * tau[r] }
                    for r in 0..<d {
                        var s = 0.0
                        for c in 0..<d { s += q[r * d + c] * y[c] }
                        jt[r] += tm.weights[j] * (s + tm.u[j][r] * dot)
                    }
                }
                for r in 0..<d { products[(i * k + kk) * d + r] = Float(jt[r]) }
            }
        }
    }

    /// Exact divergence Σ_j w_j [tr A_j + u_j·(g_j − ḡ)], in Double.
    public func velocityDivergence(times: UnsafeBufferPointer<Double>, points: UnsafeBufferPointer<Float>,
                                   into velocities: UnsafeMutableBufferPointer<Float>,
                                   divergences: UnsafeMutableBufferPointer<Double>, workspace: FieldWorkspace) {
        let d = dimension
        for i in 0..<times.count {
            let tm = evaluate(i, times, points, velocities)
            var div = 0.0
            for j in 0..<tm.weights.count {
                var dot = 0.0
                for r in 0..<d { dot += tm.u[j][r] * (tm.g[j][r] - tm.gBar[r]) }
                div += tm.weights[j] * (tm.traceA[j] + dot)
            }
            divergences[i] = div
        }
    }

    /// The closed-form log ρ_t(x) = log Σ_j p_j N(x; β μ_j, α² I + β² C_j)
    /// per row of `points` (`[n, d]`), in Double.
    public func logDensity(points: Tensor, time t: Double) -> [Double] {
        precondition(points.rank == 2 && points.shape[1] == dimension)
        return points.scalars.withUnsafeBufferPointer { p in
            (0..<points.shape[0]).map { terms(t: t, x: point(p, $0)).logDensity }
        }
    }
}

/// Eigen-decomposition A = Q diag(λ) Qᵀ of a symmetric row-major n × n matrix
/// by cyclic Jacobi rotations (Golub & Van Loan §8.5). Q is row-major with
/// eigenvectors as columns. Converges quadratically; n is small here.
func symmetricEigendecomposition(_ matrix: [Double], _ n: Int) -> (values: [Double], vectors: [Double]) {
    var a = matrix
    var v = [Double](repeating: 0, count: n * n)
    for i in 0..<n { v[i * n + i] = 1 }
    let scale = a.reduce(0) { $0 + $1 * $1 }
    for _ in 0..<64 {
        var off = 0.0
        for p in 0..<n { for q in (p + 1)..<n where q < n { off += a[p * n + q] * a[p * n + q] } }
        if off <= 1e-32 * scale || off == 0 { break }
        for p in 0..<n {
            for q in (p + 1)..<n where q < n {
                let apq = a[p * n + q]
                if apq == 0 { continue }
                let theta = (a[q * n + q] - a[p * n + p]) / (2 * apq)
                let t = (theta >= 0 ? 1.0 : -1.0) / (abs(theta) + (theta * theta + 1).squareRoot())
                let c = 1 / (t * t + 1).squareRoot(), s = t * c
                for k in 0..<n {  // columns p, q of A and V
                    let akp = a[k * n + p], akq = a[k * n + q]
                    a[k * n + p] = c * akp - s * akq
                    a[k * n + q] = s * akp + c * akq
                    let vkp = v[k * n + p], vkq = v[k * n + q]
                    v[k * n + p] = c * vkp - s * vkq
                    v[k * n + q] = s * vkp + c * vkq
                }
                for k in 0..<n {  // rows p, q of A
                    let apk = a[p * n + k], aqk = a[q * n + k]
                    a[p * n + k] = c * apk - s * aqk
                    a[q * n + k] = s * apk + c * aqk
                }
            }
        }
    }
    return ((0..<n).map { a[$0 * n + $0] }, v)
}
