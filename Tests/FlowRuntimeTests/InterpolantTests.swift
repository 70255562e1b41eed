import XCTest
@testable import FlowRuntime

/// Schedules: boundary values exactly or to 1e-12, and α', β' against
/// central differences with step 1e-5 (truncation ~1e-10 · |α'''|, rounding
/// ~1e-11 / 1e-5 = 1e-6 relative; tolerance 1e-6 absolute on O(1..30) slopes,
/// while a wrong factor such as π instead of π/2 is off by O(1)).
final class InterpolantTests: XCTestCase {
    let h = 1e-5

    func fourier() throws -> FourierSchedule {
        try FourierSchedule(alphaCoefficients: [0.3, -0.2, 0.05], betaCoefficients: [-0.1, 0.25, 0.4])
    }

    func schedules() throws -> [any Schedule] {
        [TrigSchedule(), LinearSchedule(), try fourier(), FourierSchedule(terms: 2),
         CallbackSchedule(name: "smoothstep") { t in
             InterpolantCoefficients(alpha: 1 - t * t * (3 - 2 * t), beta: t * t * (3 - 2 * t),
                                     alphaDot: -6 * t * (1 - t), betaDot: 6 * t * (1 - t))
         }]
    }

    func testBoundaryValues() throws {
        for s in try schedules() {
            let c0 = s.coefficients(at: 0), c1 = s.coefficients(at: 1)
            XCTAssertEqual(c0.alpha, 1, accuracy: 1e-12, s.name)
            XCTAssertEqual(c0.beta, 0, accuracy: 1e-12, s.name)
            XCTAssertEqual(c1.alpha, 0, accuracy: 1e-12, s.name)
            XCTAssertEqual(c1.beta, 1, accuracy: 1e-12, s.name)
            XCTAssertNoThrow(try s.validate(), s.name)
        }
        // The trig endpoint is exact, not cos(π/2) ≈ 6e-17.
        XCTAssertEqual(TrigSchedule().coefficients(at: 1).alpha, 0)
    }

    func testDerivativesMatchFiniteDifferences() throws {
        for s in try schedules() {
            for t in stride(from: 0.05, through: 0.95, by: 0.1) {
                let c = s.coefficients(at: t), p = s.coefficients(at: t + h), m = s.coefficients(at: t - h)
                XCTAssertEqual(c.alphaDot, (p.alpha - m.alpha) / (2 * h), accuracy: 1e-6, "\(s.name) α' at \(t)")
                XCTAssertEqual(c.betaDot, (p.beta - m.beta) / (2 * h), accuracy: 1e-6, "\(s.name) β' at \(t)")
            }
        }
    }

    func testKnownValues() throws {
        let c = TrigSchedule().coefficients(at: 0.5)
        XCTAssertEqual(c.alpha, 0.5.squareRoot(), accuracy: 1e-15)
        XCTAssertEqual(c.alpha * c.alpha + c.beta * c.beta, 1, accuracy: 1e-15)
        XCTAssertEqual(c.betaDot, Double.pi / 2 * 0.5.squareRoot(), accuracy: 1e-15)
        // Zero Fourier coefficients are the linear schedule.
        for t in [0.0, 0.3, 0.77] {
            XCTAssertEqual(FourierSchedule(terms: 4).coefficients(at: t), LinearSchedule().coefficients(at: t))
        }
        XCTAssertEqual(ScheduleKind(rawValue: "trig")?.schedule.name, "trig")
    }

    /// ∂(α, β, α', β')/∂(a_k, b_k) against central differences in the coefficients.
    func testFourierCoefficientGradients() throws {
        let s = try fourier()
        for t in [0.1, 0.45, 0.8] {
            let (value, rate) = s.coefficientGradients(at: t)
            for k in 0..<s.terms {
                var ap = s, am = s
                ap.alphaCoefficients[k] += h; am.alphaCoefficients[k] -= h
                let cp = ap.coefficients(at: t), cm = am.coefficients(at: t)
                XCTAssertEqual(value[k], (cp.alpha - cm.alpha) / (2 * h), accuracy: 1e-8)
                XCTAssertEqual(rate[k], (cp.alphaDot - cm.alphaDot) / (2 * h), accuracy: 1e-7)
                XCTAssertEqual((cp.beta - cm.beta) / (2 * h), 0, accuracy: 1e-12)  // β does not depend on a
                var bp = s, bm = s
                bp.betaCoefficients[k] += h; bm.betaCoefficients[k] -= h
                let dp = bp.coefficients(at: t), dm = bm.coefficients(at: t)
                XCTAssertEqual(value[k], (dp.beta - dm.beta) / (2 * h), accuracy: 1e-8)
                XCTAssertEqual(rate[k], (dp.betaDot - dm.betaDot) / (2 * h), accuracy: 1e-7)
            }
        }
    }

    func testInvalidSchedulesAreRejected() {
        let bad = CallbackSchedule { t in InterpolantCoefficients(alpha: 1 - t, beta: 0.9 * t, alphaDot: -1, betaDot: 0.9) }
        XCTAssertThrowsError(try bad.validate()) { XCTAssertTrue("\($0)".contains("β(1)=0.9")) }
        let nan = CallbackSchedule { t in InterpolantCoefficients(alpha: 1 - t, beta: t, alphaDot: t == 0.5 ? .nan : -1, betaDot: 1) }
        XCTAssertThrowsError(try nan.validate(points: 3))
        XCTAssertThrowsError(try FourierSchedule(alphaCoefficients: [1], betaCoefficients: []))
        XCTAssertThrowsError(try FourierSchedule(alphaCoefficients: [.nan], betaCoefficients: [0]))
    }
}
