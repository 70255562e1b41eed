/// An explicit Runge–Kutta method as data: the Butcher tableau
///
///     c | A
///     --+----
///       | bᵀ
///       | eᵀ   (embedded error weights, optional)
///
/// with stages k_i = f(t + c_i h, y + h Σ_{j<i} a_ij k_j), the step
/// y₁ = y + h Σ_i b_i k_i and, for embedded pairs, the local error estimate
/// err = h Σ_i e_i k_i (e = b − b̂, the difference between the propagated
/// solution and the embedded one of lower order).
///
/// One stepper (`RungeKuttaIntegrator`) runs every tableau; adding a method is
/// adding a value here. Initialisers validate the consistency conditions, so
/// a mistyped coefficient fails at construction rather than as a silently
/// wrong order.
public struct ButcherTableau: Sendable, Equatable {
    /// A short name ("dopri5", "rk4", …) used in messages and the CLI.
    public let name: String
    /// Strictly lower-triangular stage matrix, `a[i]` has `i` entries.
    public let a: [[Double]]
    /// Propagation weights (Σ b = 1).
    public let b: [Double]
    /// Stage times (c_0 = 0, c_i = Σ_j a_ij).
    public let c: [Double]
    /// Error weights e = b − b̂ (Σ e = 0), or nil for methods without an
    /// embedded estimate (these can only run with a fixed step).
    public let errorWeights: [Double]?
    /// Order p of the propagated solution.
    public let order: Int
    /// Order of the embedded solution (used for the step-size exponent).
    public let embeddedOrder: Int?
    /// First same as last: the last stage is evaluated at (t + h, y₁), so an
    /// accepted step's last stage is the next step's first (one evaluation saved).
    public let firstSameAsLast: Bool

    /// Number of stages s.
    public var stages: Int { b.count }
    /// Whether the method carries an error estimate (adaptive stepping).
    public var isAdaptive: Bool { errorWeights != nil }

    /// - Throws: `FlowError.invalidArgument` when the tableau is inconsistent:
    ///   ragged rows, Σ b ≠ 1, Σ e ≠ 0, c_i ≠ Σ_j a_ij, c_0 ≠ 0, or a FSAL
    ///   claim whose last row of A is not bᵀ (tolerance 1e-12).
    public init(name: String, a: [[Double]], b: [Double], c: [Double], errorWeights: [Double]? = nil,
                order: Int, embeddedOrder: Int? = nil) throws {
        let s = b.count, tol = 1e-12
        guard s > 0, c.count == s, a.count == s else {
            throw FlowError.invalidArgument("tableau \(name): \(a.count) rows of A, \(b.count) weights, \(c.count) nodes must agree")
        }
        for (i, row) in a.enumerated() where row.count != i {
            throw FlowError.invalidArgument("tableau \(name): row \(i) of A has \(row.count) entries, expected \(i) (explicit methods only)")
        }
        guard abs(c[0]) < tol else { throw FlowError.invalidArgument("tableau \(name): c_0 = \(c[0]) must be 0") }
        for i in 0..<s where abs(a[i].reduce(0, +) - c[i]) > tol {
            throw FlowError.invalidArgument("tableau \(name): row \(i) of A sums to \(a[i].reduce(0, +)), not c_\(i) = \(c[i])")
        }
        guard abs(b.reduce(0, +) - 1) < tol else {
            throw FlowError.invalidArgument("tableau \(name): weights b sum to \(b.reduce(0, +)), not 1")
        }
        if let e = errorWeights {
            guard e.count == s else { throw FlowError.invalidArgument("tableau \(name): \(e.count) error weights for \(s) stages") }
            guard abs(e.reduce(0, +)) < tol else {
                throw FlowError.invalidArgument("tableau \(name): error weights sum to \(e.reduce(0, +)), not 0")
            }
            guard embeddedOrder != nil else { throw FlowError.invalidArgument("tableau \(name): error weights need an embedded order") }
        }
        guard order >= 1 else { throw FlowError.invalidArgument("tableau \(name): order \(order) must be ≥ 1") }
        self.name = name
        self.a = a
        self.b = b
        self.c = c
        self.errorWeights = errorWeights
        self.order = order
        self.embeddedOrder = embeddedOrder
        // FSAL holds when the last stage is taken at (t + h, y₁).
        self.firstSameAsLast = s > 1 && abs(c[s - 1] - 1) < tol
            && zip(a[s - 1], b).allSatisfy { abs($0 - $1) < tol } && abs(b[s - 1]) < tol
    }
}

extension ButcherTableau {
    // The coefficients below are the textbook values (Hairer, Nørsett &
    // Wanner, "Solving ODEs I", §II.1 and Table II.5.2 for Dormand–Prince).
    // `try!` is safe: each is checked by the initialiser and by the tests.

    /// Forward Euler, order 1, 1 evaluation per step.
    public static let euler = try! ButcherTableau(name: "euler", a: [[]], b: [1], c: [0], order: 1)

    /// Heun's method (explicit trapezoid), order 2, 2 evaluations per step.
    public static let heun = try! ButcherTableau(name: "heun", a: [[], [1]], b: [0.5, 0.5], c: [0, 1], order: 2)

    /// The explicit midpoint rule, order 2, 2 evaluations per step.
    public static let midpoint = try! ButcherTableau(name: "midpoint", a: [[], [0.5]], b: [0, 1], c: [0, 0.5], order: 2)

    /// The classical Runge–Kutta method, order 4, 4 evaluations per step.
    public static let rk4 = try! ButcherTableau(
        name: "rk4", a: [[], [0.5], [0, 0.5], [0, 0, 1]],
        b: [1.0 / 6, 1.0 / 3, 1.0 / 3, 1.0 / 6], c: [0, 0.5, 0.5, 1], order: 4)

    /// Dormand–Prince 5(4): order 5 propagated, order-4 embedded estimate,
    /// FSAL, so 6 evaluations per accepted step.
    public static let dopri5: ButcherTableau = {
        let b = [35.0 / 384, 0, 500.0 / 1113, 125.0 / 192, -2187.0 / 6784, 11.0 / 84, 0]
        let bHat = [5179.0 / 57600, 0, 7571.0 / 16695, 393.0 / 640, -92097.0 / 339200, 187.0 / 2100, 1.0 / 40]
        return try! ButcherTableau(
            name: "dopri5",
            a: [[],
                [1.0 / 5],
                [3.0 / 40, 9.0 / 40],
                [44.0 / 45, -56.0 / 15, 32.0 / 9],
                [19372.0 / 6561, -25360.0 / 2187, 64448.0 / 6561, -212.0 / 729],
                [9017.0 / 3168, -355.0 / 33, 46732.0 / 5247, 49.0 / 176, -5103.0 / 18656],
                [35.0 / 384, 0, 500.0 / 1113, 125.0 / 192, -2187.0 / 6784, 11.0 / 84]],
            b: b, c: [0, 1.0 / 5, 3.0 / 10, 4.0 / 5, 8.0 / 9, 1, 1],
            errorWeights: zip(b, bHat).map { $0 - $1 }, order: 5, embeddedOrder: 4)
    }()

    /// Every built-in method, for lookup by name.
    public static let builtIn: [ButcherTableau] = [.euler, .heun, .midpoint, .rk4, .dopri5]

    /// The built-in method called `name`, or nil.
    public static func named(_ name: String) -> ButcherTableau? {
        builtIn.first { $0.name == name.lowercased() }
    }
}
