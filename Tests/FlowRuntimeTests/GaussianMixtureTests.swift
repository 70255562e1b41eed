import XCTest
@testable import FlowRuntime

final class GaussianMixtureTests: XCTestCase {
    /// log-density against a direct evaluation with the explicit 2×2 inverse
    /// and determinant.
    func testLogDensityMatchesExplicitFormula() throws {
        let m = try Fixtures.mixture2D()
        let x = Fixtures.points(20, dimension: 2, seed: 1, scale: 2)
        let got = m.logDensity(of: x)
        for i in 0..<20 {
            var p = 0.0
            for j in 0..<3 {
                let c = m.covariances[j], det = c[0] * c[3] - c[1] * c[2]
                let dx = Double(x.scalars[2 * i]) - m.means[j][0], dy = Double(x.scalars[2 * i + 1]) - m.means[j][1]
                let q = (c[3] * dx * dx - 2 * c[1] * dx * dy + c[0] * dy * dy) / det
                p += m.weights[j] * exp(-0.5 * q) / (2 * Double.pi * det.squareRoot())
            }
            XCTAssertEqual(got[i], log(p), accuracy: 1e-10)
        }
    }

    /// Sample moments of 20,000 draws within 4 standard errors.
    func testSamplesHaveTheMixtureMoments() throws {
        let m = try Fixtures.mixture2D()
        let n = 20_000
        let x = m.samples(count: n, seed: 5)
        let mean = m.mean, cov = m.covariance
        for j in 0..<2 {
            let xs = (0..<n).map { Double(x.scalars[2 * $0 + j]) }
            let mu = xs.reduce(0, +) / Double(n)
            XCTAssertEqual(mu, mean[j], accuracy: 4 * (cov[3 * j] / Double(n)).squareRoot())
        }
        // Reproducible and split-independent: samples 10..<20 drawn alone.
        let part = m.samples(count: 10, seed: 5, firstIndex: 10)
        XCTAssertEqual(part.scalars, Array(x.scalars[20..<40]))
    }

    func testInvalidMixturesAreRejected() {
        XCTAssertThrowsError(try GaussianMixture(weights: [1], means: [[0, 0]], covariances: [[1, 0, 0, -1]]))
        XCTAssertThrowsError(try GaussianMixture(weights: [1], means: [[0, 0]], covariances: [[1, 0.5, 0, 1]]))
        XCTAssertThrowsError(try GaussianMixture(weights: [-1], means: [[0, 0]], covariances: [[1, 0, 0, 1]]))
        XCTAssertThrowsError(try GaussianMixture(weights: [1, 1], means: [[0, 0]], covariances: [[1, 0, 0, 1]]))
        XCTAssertThrowsError(try GaussianMixture(weights: [1], means: [[0, 0]], covariances: [[1, 0, 0]]))
    }
}
