/// Mini-batch optimal-transport coupling (Pooladian et al. 2023; Tong et al.
/// 2023): inside each training chunk, the base samples x0 and the data x1
/// are re-paired by the permutation σ that minimises Σ_i |x0_i − x1_σ(i)|²,
/// so that the interpolant's paths cross less, the velocity is straighter
/// and the ODE needs fewer steps. Off by default (`Trainer.coupling = nil`).
///
/// With a coupling the loss's minimiser is the velocity of the coupled
/// interpolant, not of the independent one: its marginals still go from ρ0
/// to ρ1 (every x1 of the batch is used once), which is what sampling needs.
///
/// The pairing is computed per chunk of `Trainer.effectiveChunkSize`
/// samples (fixed, independent of the thread count), so results stay
/// reproducible across threads.
public enum MinibatchCoupling: Sendable, Equatable {
    /// Exact assignment by the Hungarian algorithm (shortest augmenting
    /// paths, O(n³) per chunk of n).
    case exact

    /// Re-pairs the rows of `x1` (`[n, d]`, in place) to the rows of `x0`
    /// by the optimal assignment for squared Euclidean cost.
    /// - Complexity: O(n³ + n² d) time, O(n²) memory.
    func pair(x0: UnsafePointer<Float>, x1: UnsafeMutablePointer<Float>, count n: Int, dimension d: Int) {
        guard n > 1 else { return }
        var cost = [Double](repeating: 0, count: n * n)
        for i in 0..<n {
            for j in 0..<n {
                var s = 0.0
                for k in 0..<d { let e = Double(x0[i * d + k]) - Double(x1[j * d + k]); s += e * e }
                cost[i * n + j] = s
            }
        }
        let assignment = Self.assignment(cost: cost, n: n)
        let original = Array(UnsafeBufferPointer(start: x1, count: n * d))
        for i in 0..<n {
            let j = assignment[i]
            for k in 0..<d { x1[i * d + k] = original[j * d + k] }
        }
    }

    /// The permutation σ (row i ↦ column σ[i]) minimising Σ_i cost[i, σ(i)]
    /// of a row-major n × n cost matrix: the Hungarian method in its
    /// shortest-augmenting-path form with row and column potentials
    /// (Kuhn 1955; Jonker & Volgenant 1987), exact for any finite costs.
    /// - Complexity: O(n³).
    static func assignment(cost: [Double], n: Int) -> [Int] {
        // 1-based arrays with a virtual column 0, as in the classic formulation.
        var u = [Double](repeating: 0, count: n + 1), v = u
        var rowOfColumn = [Int](repeating: 0, count: n + 1)
        var way = [Int](repeating: 0, count: n + 1)
        for row in 1...n {
            rowOfColumn[0] = row
            var column = 0
            var minimum = [Double](repeating: .infinity, count: n + 1)
            var used = [Bool](repeating: false, count: n + 1)
            repeat {
                used[column] = true
                let i = rowOfColumn[column]
                var delta = Double.infinity, next = 0
                for j in 1...n where !used[j] {
                    let reduced = cost[(i - 1) * n + (j - 1)] - u[i] - v[j]
                    if reduced < minimum[j] { minimum[j] = reduced; way[j] = column }
                    if minimum[j] < delta { delta = minimum[j]; next = j }
                }
                for j in 0...n {
                    if used[j] { u[rowOfColumn[j]] += delta; v[j] -= delta } else { minimum[j] -= delta }
                }
                column = next
            } while rowOfColumn[column] != 0
            repeat {
                let previous = way[column]
                rowOfColumn[column] = rowOfColumn[previous]
                column = previous
            } while column != 0
        }
        var result = [Int](repeating: 0, count: n)
        for j in 1...n { result[rowOfColumn[j] - 1] = j - 1 }
        return result
    }
}
