#if canImport(Glibc)
import Glibc
#endif

/// The step-size controller of adaptive runs (an integral controller, as in
/// Hairer, Nørsett & Wanner, "Solving ODEs I", §II.4).
///
/// A step of size h with error estimate err is accepted when the scaled RMS norm
///
///     ‖err‖ = sqrt( (1/w) Σ_i (err_i / (atol + rtol · max(|y_i|, |y₁_i|)))² ) ≤ 1,
///
/// (w = the components of one sample's state) and the next step is
/// h · clamp(safety · ‖err‖^(−1/(q+1)), minFactor, maxFactor), q = the lower
/// of the pair's orders; after a rejection the factor is at most 1.
/// Each sample of a batch runs its own controller.
public struct StepSizeController: Sendable, Equatable {
    /// Relative tolerance (> 0).
    public var relativeTolerance: Double
    /// Absolute tolerance (≥ 0; rtol + atol > 0).
    public var absoluteTolerance: Double
    /// Safety factor on the optimal step (0 < safety ≤ 1), default 0.9.
    public var safety: Double = 0.9
    /// Smallest step-size factor per step (default 0.2).
    public var minFactor: Double = 0.2
    /// Largest step-size factor per step (default 10).
    public var maxFactor: Double = 10
    /// The initial step |h₀|, or nil to select it per sample (Hairer's
    /// algorithm: two evaluations, the first reused as the first stage).
    public var initialStep: Double? = nil
    /// Largest step |h| (default: unbounded).
    public var maxStep: Double = .infinity

    /// A controller with the given tolerances and the defaults above.
    public init(relativeTolerance: Double = 1e-5, absoluteTolerance: Double = 1e-5) {
        self.relativeTolerance = relativeTolerance
        self.absoluteTolerance = absoluteTolerance
    }

    /// - Throws: `FlowError.invalidArgument` naming the bad field.
    public func validate() throws {
        guard relativeTolerance >= 0, absoluteTolerance >= 0, relativeTolerance + absoluteTolerance > 0,
              relativeTolerance.isFinite, absoluteTolerance.isFinite else {
            throw FlowError.invalidArgument("tolerances rtol = \(relativeTolerance), atol = \(absoluteTolerance) must be finite, ≥ 0, and not both 0")
        }
        guard safety > 0, safety <= 1 else { throw FlowError.invalidArgument("safety \(safety) must be in (0, 1]") }
        guard minFactor > 0, minFactor < 1, maxFactor > 1, maxFactor.isFinite else {
            throw FlowError.invalidArgument("step factors [\(minFactor), \(maxFactor)] must satisfy 0 < min < 1 < max < ∞")
        }
        if let h = initialStep, !(h > 0 && h.isFinite) { throw FlowError.invalidArgument("initial step \(h) must be finite and > 0") }
        guard maxStep > 0 else { throw FlowError.invalidArgument("max step \(maxStep) must be > 0") }
    }

    /// The tolerance scale of one component: atol + rtol · max(|y|, |y₁|).
    @inline(__always)
    func scale(_ y: Double, _ y1: Double) -> Double {
        absoluteTolerance + relativeTolerance * Swift.max(Swift.abs(y), Swift.abs(y1))
    }

    /// The factor for the next step from an error norm, `exponent` = 1/(q+1).
    @inline(__always)
    func factor(errorNorm: Double, exponent: Double, accepted: Bool) -> Double {
        if !errorNorm.isFinite { return minFactor }
        if errorNorm == 0 { return maxFactor }
        let f = safety * pow(errorNorm, -exponent)
        return Swift.min(accepted ? maxFactor : 1, Swift.max(minFactor, f))
    }
}

/// How a run chooses its steps.
public enum StepControl: Sendable, Equatable {
    /// `steps` equal steps over [t0, t1] for every sample.
    case fixed(steps: Int)
    /// Per-sample adaptive steps (the tableau must have error weights).
    case adaptive(StepSizeController)
}

/// Everything an integration needs besides the field and the points.
public struct SolverOptions: Sendable, Equatable {
    /// The Runge–Kutta method.
    public var tableau: ButcherTableau
    /// Fixed or adaptive steps.
    public var control: StepControl
    /// Largest number of attempted steps (accepted + rejected) per sample;
    /// a sample that reaches it stops with status `.maxSteps`.
    public var maxSteps: Int = 10_000
    /// Threads over batch chunks (results do not depend on it).
    public var threads: Int = Parallel.defaultThreads
    /// Samples per chunk: the unit of threading. Each chunk integrates its
    /// samples independently, so results are bit-identical for any thread
    /// count. The integrator's arithmetic is per sample; the only coupling
    /// left is the network's own: a row's GEMM result may depend on how many
    /// rows share the call (≈1e-7 relative with OpenBLAS), so another chunk
    /// size can change results at that level (rarely, a borderline step count).
    public var chunkSize: Int = 1024

    /// Options with default max steps, threads and chunk size.
    public init(tableau: ButcherTableau, control: StepControl) {
        self.tableau = tableau
        self.control = control
    }

    /// Dormand–Prince 5(4) with per-sample step control at rtol, atol.
    public static func dopri5(rtol: Double = 1e-5, atol: Double = 1e-5) -> SolverOptions {
        SolverOptions(tableau: .dopri5, control: .adaptive(StepSizeController(relativeTolerance: rtol, absoluteTolerance: atol)))
    }

    /// A fixed-step method (`steps` steps over the interval).
    public static func fixed(_ tableau: ButcherTableau, steps: Int) -> SolverOptions {
        SolverOptions(tableau: tableau, control: .fixed(steps: steps))
    }

    /// - Throws: `FlowError.invalidArgument` for a bad step count, thread
    ///   count, chunk size, controller, or an adaptive run of a method
    ///   without an error estimate.
    public func validate() throws {
        switch control {
        case .fixed(let n):
            guard n > 0, n <= 100_000_000 else { throw FlowError.invalidArgument("fixed step count \(n) must be in 1...1e8") }
        case .adaptive(let c):
            try c.validate()
            guard tableau.isAdaptive else {
                throw FlowError.invalidArgument("method \(tableau.name) has no error estimate: use a fixed step count or dopri5")
            }
        }
        guard maxSteps > 0 else { throw FlowError.invalidArgument("max steps \(maxSteps) must be > 0") }
        try Limits.checkThreads(threads)
        guard chunkSize > 0 else { throw FlowError.invalidArgument("chunk size \(chunkSize) must be > 0") }
    }
}

/// How one sample's integration ended.
public enum SolverStatus: UInt8, Sendable, Equatable {
    /// Reached the end time.
    case ok = 0
    /// Stopped after `SolverOptions.maxSteps` attempted steps; the state is
    /// where it stopped (raise maxSteps or loosen the tolerances).
    case maxSteps = 1
    /// The state or its derivative became NaN or infinite; the state is the
    /// last finite one.
    case nonFinite = 2
    /// An adaptive step shrank below 1e-14 · max(1, |t|) with a finite
    /// state: the error control cannot be met there (a singular or blowing-up
    /// field, or tolerances below Float rounding). More steps do not help;
    /// the state is where it stopped, and the sample's `stopTime` and
    /// `lastStep` say where.
    case stepUnderflow = 3
}

/// Per-run statistics: sums over samples, plus the status counts.
public struct SolverStatistics: Sendable, Equatable {
    public static func == (a: SolverStatistics, b: SolverStatistics) -> Bool {
        a.samples == b.samples && a.steps == b.steps && a.rejections == b.rejections && a.evaluations == b.evaluations
            && a.maxStepsSamples == b.maxStepsSamples && a.nonFiniteSamples == b.nonFiniteSamples
            && a.stepUnderflowSamples == b.stepUnderflowSamples && a.maxStepsPerSample == b.maxStepsPerSample
            && a.firstUnderflow?.sample == b.firstUnderflow?.sample && a.firstUnderflow?.time == b.firstUnderflow?.time
            && a.firstUnderflow?.step == b.firstUnderflow?.step
    }

    /// Samples integrated.
    public var samples = 0
    /// Accepted steps, summed over samples.
    public var steps = 0
    /// Rejected steps, summed over samples.
    public var rejections = 0
    /// Network (field) evaluations, counted per sample row.
    public var evaluations = 0
    /// Samples that stopped at max steps.
    public var maxStepsSamples = 0
    /// Samples that stopped on a non-finite state.
    public var nonFiniteSamples = 0
    /// Samples whose adaptive step underflowed (`SolverStatus.stepUnderflow`).
    public var stepUnderflowSamples = 0
    /// The first sample (in order) whose step underflowed: its index in the
    /// run, the time it reached and the step size it was down to.
    public var firstUnderflow: (sample: Int, time: Double, step: Double)?
    /// Largest number of accepted steps of any one sample.
    public var maxStepsPerSample = 0

    /// Zero statistics.
    public init() {}

    /// Whether every sample finished with `.ok`.
    public var isComplete: Bool { maxStepsSamples == 0 && nonFiniteSamples == 0 && stepUnderflowSamples == 0 }

    /// A sentence for error messages, e.g. "3 of 100 samples reached max steps".
    public var incompleteDescription: String {
        var parts: [String] = []
        if maxStepsSamples > 0 { parts.append("\(maxStepsSamples) of \(samples) samples reached the maximum number of steps (raise max_steps or loosen rtol/atol)") }
        if nonFiniteSamples > 0 { parts.append("\(nonFiniteSamples) of \(samples) samples became non-finite (NaN or infinity)") }
        if let u = firstUnderflow {
            parts.append("\(stepUnderflowSamples) of \(samples) samples stopped because the step size underflowed (first: sample \(u.sample) at t = \(u.time) with step \(u.step)); the field is singular or blows up there, or rtol/atol are below float rounding: raising max_steps does not help")
        }
        return parts.joined(separator: "; ")
    }
}
