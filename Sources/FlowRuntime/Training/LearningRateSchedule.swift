#if canImport(Glibc)
import Glibc
#endif

/// The learning rate as a function of the update index s = 0, 1, 2, …:
/// linear warmup from lr/warmup to lr over `warmupSteps` updates, then a decay.
public struct LearningRateSchedule: Sendable, Equatable {
    public enum Decay: Sendable, Equatable {
        /// lr after warmup.
        case constant
        /// lr · [m + (1 − m) · ½(1 + cos(π p))] with p the fraction of
        /// post-warmup updates done out of `totalSteps − warmupSteps`
        /// (clamped to 1) and m = `minimumFactor`.
        case cosine(totalSteps: Int, minimumFactor: Double)
        /// lr · factor^⌊(s − warmup) / every⌋.
        case step(every: Int, factor: Double)
    }

    public var learningRate: Double
    public var warmupSteps: Int
    public var decay: Decay

    public init(learningRate: Double = 1e-3, warmupSteps: Int = 0, decay: Decay = .constant) {
        self.learningRate = learningRate
        self.warmupSteps = warmupSteps
        self.decay = decay
    }

    /// - Throws: `.invalidArgument` for a non-positive or non-finite rate,
    ///   negative warmup, or decay parameters out of range.
    public func validate() throws {
        guard learningRate > 0, learningRate.isFinite else {
            throw FlowError.invalidArgument("learning rate \(learningRate) must be finite and > 0")
        }
        guard warmupSteps >= 0 else { throw FlowError.invalidArgument("warmup steps \(warmupSteps) must be ≥ 0") }
        switch decay {
        case .constant: break
        case .cosine(let total, let m):
            guard total > 0, m >= 0, m <= 1 else {
                throw FlowError.invalidArgument("cosine decay needs total steps > 0 and a minimum factor in [0, 1] (got \(total), \(m))")
            }
        case .step(let every, let f):
            guard every > 0, f > 0, f <= 1 else {
                throw FlowError.invalidArgument("step decay needs every > 0 and a factor in (0, 1] (got \(every), \(f))")
            }
        }
    }

    /// The rate for update `s` (0-based).
    public func rate(at s: Int) -> Double {
        if s < warmupSteps { return learningRate * Double(s + 1) / Double(warmupSteps) }
        let after = s - warmupSteps
        switch decay {
        case .constant:
            return learningRate
        case .cosine(let total, let m):
            let span = Swift.max(1, total - warmupSteps)
            let p = Swift.min(1, Double(after) / Double(span))
            return learningRate * (m + (1 - m) * 0.5 * (1 + cos(Double.pi * p)))
        case .step(let every, let f):
            return learningRate * pow(f, Double(after / every))
        }
    }
}
