import CKernels
import XCTest
@testable import FlowRuntime

#if canImport(Glibc)
import Glibc
#endif

/// Kernels the DiT's time goes to (issue 13): the tanh-GELU in its
/// sigmoid form, the row softmax over short rows (several rows at once),
/// against double-precision references and against their own one-row form.
final class DiTKernelTests: XCTestCase {
    /// 0.5·x·(1 + tanh(√(2/π)(x + 0.044715x³))) in double.
    private func geluTanhReference(_ x: Float) -> Double {
        let v = Double(x)
        return 0.5 * v * (1 + tanh(0.7978845608028654 * (v + 0.044715 * v * v * v)))
    }

    /// The sigmoid form x / (1 + exp(-2u)) within 2.5e-7·max(|x|, 1) of the
    /// double reference (measured over every float in [-12, 12]: 1.23e-7;
    /// the tanh form it replaced: 1.18e-7, the two forms differ by at most
    /// 2.1e-7 on that range). A wrong constant (0.04472 for 0.044715) is off
    /// by 1.8e-6 near x = 1.57 and fails; the limits and NaN are pinned.
    func testGeluTanhAgainstDoubleReference() {
        let f = UnaryFunction.geluTanh
        var worst = 0.0, at: Float = 0
        var x: Float = -12
        while x <= 12 {
            let err = abs(Double(f(x)) - geluTanhReference(x)) / max(1, Double(abs(x)))
            if err > worst { worst = err; at = x }
            x += 1.0 / 4096 + 1e-7 * abs(x)
        }
        XCTAssertLessThan(worst, 2.5e-7, "worst at x = \(at)")
        // Through the vector loop too (the scalar call above is a one-element loop).
        let xs = (0..<4099).map { Float($0 - 2049) / 171 }
        var ys = [Float](repeating: .nan, count: xs.count)
        let (k, p1, p2) = f.kernel
        fr_unary_forward(k, p1, p2, xs, &ys, xs.count)
        for (xv, yv) in zip(xs, ys) {
            XCTAssertLessThan(abs(Double(yv) - geluTanhReference(xv)) / max(1, Double(abs(xv))), 2.5e-7, "x = \(xv)")
        }
        XCTAssertEqual(f(.infinity), .infinity)
        XCTAssertTrue(f(.nan).isNaN)
        XCTAssertEqual(f(0), 0)
        XCTAssertEqual(f(100), 100)
        XCTAssertEqual(abs(f(-100)), 0)
        XCTAssertLessThan(abs(f(-9)), 1e-20)
    }

    /// Rows in groups of four give each row exactly its value when computed
    /// alone (the same operations per row), for every rows % 4, short and
    /// long rows, partial vectors, in place and out of place; and the values
    /// are a softmax: within 4e-7 of a double reference (relative to the row
    /// maximum 1), which a dropped max subtraction or a wrong row offset fails.
    func testSoftmaxRowsAreRowIndependentAndAccurate() {
        var rng = RandomStream(seed: 913, purpose: .custom, index: 0)
        for cols in [1, 5, 16, 17, 33, 49, 64, 100, 256] {
            for rows in [1, 3, 4, 5, 8, 9, 13] {
                let x = (0..<(rows * cols)).map { _ in Float(rng.nextNormal() * 4) }
                var y = [Float](repeating: .nan, count: rows * cols)
                fr_softmax_rows(x, &y, rows, cols)
                var inPlace = x
                inPlace.withUnsafeMutableBufferPointer { p in fr_softmax_rows(p.baseAddress!, p.baseAddress!, rows, cols) }
                var mismatches = 0, worst = 0.0
                for r in 0..<rows {
                    let row = Array(x[(r * cols)..<((r + 1) * cols)])
                    var alone = [Float](repeating: .nan, count: cols)
                    fr_softmax_rows(row, &alone, 1, cols)
                    let mx = row.map(Double.init).max()!
                    let e = row.map { exp(Double($0) - mx) }
                    let s = e.reduce(0, +)
                    for j in 0..<cols {
                        let v = y[r * cols + j]
                        if v.bitPattern != alone[j].bitPattern || v.bitPattern != inPlace[r * cols + j].bitPattern {
                            mismatches += 1
                        }
                        worst = max(worst, abs(Double(v) - e[j] / s))
                    }
                }
                XCTAssertEqual(mismatches, 0, "rows \(rows) cols \(cols)")
                XCTAssertLessThan(worst, 4e-7, "rows \(rows) cols \(cols)")
            }
        }
        // A NaN makes its own row NaN and leaves the other rows alone.
        var x = (0..<(5 * 49)).map { Float($0 % 13) / 3 }
        x[2 * 49 + 7] = .nan
        var y = [Float](repeating: 0, count: x.count)
        fr_softmax_rows(x, &y, 5, 49)
        for r in 0..<5 {
            let row = y[(r * 49)..<((r + 1) * 49)]
            if r == 2 { XCTAssertTrue(row.allSatisfy { $0.isNaN }) } else { XCTAssertTrue(row.allSatisfy { $0.isFinite }) }
        }
    }
}
