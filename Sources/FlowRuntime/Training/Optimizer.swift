#if canImport(Glibc)
import Glibc
#endif

/// Adam (Kingma & Ba, 2015) with L2 weight decay folded into the gradient,
/// or AdamW (Loshchilov & Hutter, 2019) with decoupled weight decay.
///
/// For each scalar, with gradient g, rate η and update count k ≥ 1:
///
///     Adam:  g ← g + λ p
///     m ← β1 m + (1 − β1) g,   v ← β2 v + (1 − β2) g²
///     p ← p − η (m / (1 − β1^k)) / (√(v / (1 − β2^k)) + ε)
///     AdamW: additionally p ← p − η λ p before the step.
///
/// This matches `torch.optim.Adam` and `torch.optim.AdamW` (ε outside the
/// square root, bias corrections as above).
public struct OptimizerConfiguration: Sendable, Equatable {
    public enum Kind: String, Sendable, Equatable { case adam, adamW = "adamw" }
    public var kind: Kind
    public var beta1: Double
    public var beta2: Double
    public var epsilon: Double
    /// λ (L2 for Adam, decoupled for AdamW).
    public var weightDecay: Double

    public init(kind: Kind = .adam, beta1: Double = 0.9, beta2: Double = 0.999, epsilon: Double = 1e-8,
                weightDecay: Double = 0) {
        self.kind = kind
        self.beta1 = beta1
        self.beta2 = beta2
        self.epsilon = epsilon
        self.weightDecay = weightDecay
    }

    /// - Throws: `.invalidArgument` for β outside [0, 1), ε ≤ 0, λ < 0.
    public func validate() throws {
        guard beta1 >= 0, beta1 < 1, beta2 >= 0, beta2 < 1 else {
            throw FlowError.invalidArgument("Adam betas (\(beta1), \(beta2)) must be in [0, 1)")
        }
        guard epsilon > 0, epsilon.isFinite else { throw FlowError.invalidArgument("Adam epsilon \(epsilon) must be > 0") }
        guard weightDecay >= 0, weightDecay.isFinite else {
            throw FlowError.invalidArgument("weight decay \(weightDecay) must be finite and ≥ 0")
        }
    }

    /// Applies one update (update count `k` ≥ 1) to `count` scalars in place.
    /// - Complexity: O(count), no allocation.
    func update(parameters p: UnsafeMutablePointer<Float>, gradients g: UnsafePointer<Float>,
                firstMoment m: UnsafeMutablePointer<Float>, secondMoment v: UnsafeMutablePointer<Float>,
                count: Int, learningRate: Double, k: Int) {
        let b1 = Float(beta1), b2 = Float(beta2), eps = Float(epsilon), lambda = Float(weightDecay)
        let c1 = Float(1 - pow(beta1, Double(k))), c2 = Float(1 - pow(beta2, Double(k)))
        let lr = Float(learningRate)
        let stepSize = lr / c1, rootC2 = c2.squareRoot()
        let decoupled = kind == .adamW
        for i in 0..<count {
            var gi = g[i]
            if decoupled { p[i] -= lr * lambda * p[i] } else if lambda != 0 { gi += lambda * p[i] }
            m[i] = b1 * m[i] + (1 - b1) * gi
            v[i] = b2 * v[i] + (1 - b2) * gi * gi
            p[i] -= stepSize * m[i] / (v[i].squareRoot() / rootC2 + eps)
        }
    }
}
