import XCTest
@testable import FlowRuntime

/// Two-sample statistics for comparing sample sets.
enum SampleStatisticsReference {
    /// The unbiased (U-statistic) energy distance
    ///
    ///     Ê = 2 mean_{i,j} |x_i − y_j| − mean_{i≠i'} |x_i − x_i'| − mean_{j≠j'} |y_j − y_j'|,
    ///
    /// (Székely & Rizzo), whose expectation is the energy distance
    /// D(P, Q) ≥ 0 with equality iff P = Q; under P = Q its spread is of
    /// order δ/n with δ = E|X − X'|. Also returns δ estimated from `x`.
    static func energyDistance(_ x: Tensor, _ y: Tensor) -> (distance: Double, spread: Double) {
        let d = x.shape[1], n = x.shape[0], m = y.shape[0]
        func meanDistance(_ a: [Float], _ na: Int, _ b: [Float], _ nb: Int, skipDiagonal: Bool) -> Double {
            var s = 0.0
            a.withUnsafeBufferPointer { pa in b.withUnsafeBufferPointer { pb in
                for i in 0..<na {
                    for j in 0..<nb where !(skipDiagonal && i == j) {
                        var q: Float = 0
                        for r in 0..<d { let e = pa[i * d + r] - pb[j * d + r]; q += e * e }
                        s += Double(q.squareRoot())
                    }
                }
            } }
            return s / Double(skipDiagonal ? na * (na - 1) : na * nb)
        }
        let xy = meanDistance(x.scalars, n, y.scalars, m, skipDiagonal: false)
        let xx = meanDistance(x.scalars, n, x.scalars, n, skipDiagonal: true)
        let yy = meanDistance(y.scalars, m, y.scalars, m, skipDiagonal: true)
        return (2 * xy - xx - yy, xx)
    }

    /// Column means and the row-major covariance (Double).
    static func moments(_ x: Tensor) -> (mean: [Double], covariance: [Double]) {
        let d = x.shape[1], n = x.shape[0]
        var mean = [Double](repeating: 0, count: d), cov = [Double](repeating: 0, count: d * d)
        for i in 0..<n { for r in 0..<d { mean[r] += Double(x.scalars[i * d + r]) } }
        for r in 0..<d { mean[r] /= Double(n) }
        for i in 0..<n {
            for r in 0..<d { for s in 0..<d {
                cov[r * d + s] += (Double(x.scalars[i * d + r]) - mean[r]) * (Double(x.scalars[i * d + s]) - mean[s])
            } }
        }
        return (mean, cov.map { $0 / Double(n - 1) })
    }
}
