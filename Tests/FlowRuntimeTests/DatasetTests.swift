import XCTest
@testable import FlowRuntime

/// Densities and toy datasets: samples against the closed-form densities
/// (Monte Carlo entropy within 4 standard errors of the stated true entropy,
/// normalisation by grid quadrature), reproducibility and splitting.
final class DatasetTests: XCTestCase {
    /// −mean log ρ over n samples and its standard error.
    func monteCarloEntropy(_ d: any Density, n: Int = 100_000, seed: UInt64 = 3) -> (Double, Double) {
        let l = d.logDensity(of: d.samples(count: n, seed: seed))
        let m = -l.reduce(0, +) / Double(n)
        let v = l.map { ($0 + m) * ($0 + m) }.reduce(0, +) / Double(n - 1)
        return (m, (v / Double(n)).squareRoot())
    }

    /// n samples of any source, `[n · d]`.
    func draw(_ s: any SampleSource, _ n: Int, seed: UInt64, firstIndex: UInt64 = 0) -> [Float] {
        var out = [Float](repeating: 0, count: n * s.dimension)
        out.withUnsafeMutableBufferPointer { s.sample(seed: seed, firstIndex: firstIndex, into: $0) }
        return out
    }

    /// ∫ ρ over [−L, L]² by the midpoint rule with spacing h.
    func mass(_ d: any Density, extent L: Double = 6, h: Double = 0.01) -> Double {
        let n = Int(2 * L / h)
        var pts = [Float]()
        for i in 0..<n { for j in 0..<n { pts += [Float(-L + (Double(i) + 0.5) * h), Float(-L + (Double(j) + 0.5) * h)] } }
        return d.logDensity(of: Tensor(shape: [n * n, 2], scalars: pts)).reduce(0) { $0 + exp($1) } * h * h
    }

    func testCheckerboard() {
        let c = Checkerboard()
        XCTAssertEqual(c.entropy, log(32), accuracy: 1e-15)
        let x = c.samples(count: 40_000, seed: 1).scalars
        var perSquare = [Int](repeating: 0, count: 16)
        for i in 0..<40_000 {
            let px = Double(x[2 * i]), py = Double(x[2 * i + 1])
            XCTAssertTrue(c.contains(x: px, y: py), "sample \(i) = (\(px), \(py)) is off the board")
            perSquare[Int((px + 4) / 2) * 4 + Int((py + 4) / 2)] += 1
        }
        // 8 occupied squares with 5000 expected each: ±4σ = ±4·√(5000·7/8) ≈ ±265.
        XCTAssertEqual(perSquare.filter { $0 > 0 }.count, 8)
        for n in perSquare where n > 0 { XCTAssertEqual(Double(n), 5000, accuracy: 265) }
        XCTAssertEqual(mass(c, extent: 5, h: 0.02), 1, accuracy: 1e-9)
        XCTAssertEqual(c.logDensity(of: Tensor(shape: [2, 2], scalars: [-3, -3, -3, -1])), [-log(32), -.infinity])
    }

    func testEightGaussiansEntropyAndNormalisation() {
        let g = EightGaussians()
        XCTAssertEqual(g.entropy, 2.83158, accuracy: 1e-5)  // the documented value (numpy quadrature)
        let (h, se) = monteCarloEntropy(g)
        XCTAssertEqual(h, g.entropy, accuracy: 4 * se)
        XCTAssertEqual(mass(g, h: 0.02), 1, accuracy: 1e-6)
        // E|x|² = R² + 2σ² = 8 + 0.25.
        let x = g.samples(count: 100_000, seed: 9).scalars
        var r2 = 0.0
        for i in 0..<100_000 {
            let a = Double(x[2 * i]), b = Double(x[2 * i + 1])
            r2 += (a * a + b * b) / 1e5
        }
        XCTAssertEqual(r2, 8.25, accuracy: 0.02)
    }

    func testRingMixtureEntropyAndNormalisation() {
        let r = RingMixture()
        XCTAssertEqual(r.entropy, 3.14634, accuracy: 1e-5)  // scipy.integrate.quad gives 3.146344
        let (h, se) = monteCarloEntropy(r)
        XCTAssertEqual(h, r.entropy, accuracy: 4 * se)
        XCTAssertEqual(mass(r, extent: 4.5, h: 0.01), 1, accuracy: 1e-4)
    }

    func testDiagonalNormal() throws {
        let d = try DiagonalNormal(mean: [1, -2, 0.5], standardDeviation: [0.5, 2, 1])
        let x = d.samples(count: 50_000, seed: 4).scalars
        for j in 0..<3 {
            let col = stride(from: j, to: x.count, by: 3).map { Double(x[$0]) }
            let m = col.reduce(0, +) / 5e4
            let s = (col.map { ($0 - m) * ($0 - m) }.reduce(0, +) / 5e4).squareRoot()
            XCTAssertEqual(m, d.mean[j], accuracy: 4 * d.standardDeviation[j] / 5e4.squareRoot())
            XCTAssertEqual(s, d.standardDeviation[j], accuracy: 0.02 * d.standardDeviation[j])
        }
        let (h, se) = monteCarloEntropy(d)
        XCTAssertEqual(h, d.entropy, accuracy: 4 * se)
        // With mean 0 and σ = 1 it is the standard normal, draw for draw.
        let unit = try DiagonalNormal(mean: [0, 0], standardDeviation: [1, 1])
        XCTAssertEqual(unit.samples(count: 10, seed: 5), StandardNormal(dimension: 2).samples(count: 10, seed: 5))
        let p = unit.samples(count: 10, seed: 5)
        XCTAssertEqual(unit.logDensity(of: p), StandardNormal(dimension: 2).logDensity(of: p))
        XCTAssertThrowsError(try DiagonalNormal(mean: [0], standardDeviation: [0]))
        XCTAssertThrowsError(try DiagonalNormal(mean: [0, 1], standardDeviation: [1]))
    }

    func testEmpiricalDensityResamplesRows() throws {
        let rows: [Float] = [0, 0, 1, 10, 2, 20, 3, 30]
        let e = try EmpiricalDensity(points: rows, dimension: 2)
        let x = draw(e, 8000, seed: 2)
        var counts = [Int](repeating: 0, count: 4)
        for i in 0..<8000 {
            let r = Int(x[2 * i])
            XCTAssertEqual(x[2 * i + 1], Float(10 * r))  // whole rows
            counts[r] += 1
        }
        for c in counts { XCTAssertEqual(Double(c), 2000, accuracy: 4 * (8000 * 0.25 * 0.75).squareRoot()) }
        XCTAssertThrowsError(try EmpiricalDensity(points: [1, 2, 3], dimension: 2))
        XCTAssertThrowsError(try EmpiricalDensity(points: [], dimension: 2))
        XCTAssertThrowsError(try EmpiricalDensity(points: [1, .nan], dimension: 2)) {
            guard case FlowError.nonFinite = $0 else { return XCTFail("\($0)") }
        }
    }

    /// Sample i depends only on (seed, firstIndex + i): splitting a batch changes nothing.
    func testSamplingDoesNotDependOnTheSplit() {
        for t in ToyDataset.allCases {
            let whole = draw(t.source, 10, seed: 8)
            let tail = draw(t.source, 4, seed: 8, firstIndex: 6)
            XCTAssertEqual(Array(whole[12...]), tail, t.rawValue)
            XCTAssertNotEqual(draw(t.source, 10, seed: 9), whole, t.rawValue)
        }
        XCTAssertNil(ToyDataset.moons.density)
        XCTAssertNil(ToyDataset.moons.entropy)
        XCTAssertEqual(ToyDataset(rawValue: "8gaussians")?.entropy, EightGaussians().entropy)
    }

    func testTimeDistributions() {
        for (dist, mean, variance) in [(TimeDistribution.uniform, 0.5, 1.0 / 12), (.beta(2, 5), 2.0 / 7, 10.0 / (49 * 8)),
                                       (.beta(0.5, 0.5), 0.5, 0.125)] {
            var s = 0.0, s2 = 0.0
            let n = 40_000
            for i in 0..<n {
                var r = RandomStream(seed: 1, purpose: .trainingTime, index: UInt64(i))
                let t = dist.sample(&r)
                XCTAssertTrue(t >= 0 && t <= 1)
                s += t; s2 += t * t
            }
            let m = s / Double(n), v = s2 / Double(n) - m * m
            XCTAssertEqual(m, mean, accuracy: 4 * (variance / Double(n)).squareRoot(), "\(dist)")
            XCTAssertEqual(v, variance, accuracy: 0.03 * variance, "\(dist)")
        }
        XCTAssertThrowsError(try TimeDistribution.beta(0, 1).validate())
    }
}
