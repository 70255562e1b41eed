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
        // Branches hoisted out of the loops so that each loop vectorises.
        if kind == .adamW && lambda != 0 {
            let shrink = 1 - lr * lambda
            for i in 0..<count { p[i] *= shrink }
        }
        let l2 = kind == .adam ? lambda : 0
        let a1 = 1 - b1, a2 = 1 - b2, invRootC2 = 1 / rootC2
        // Eight lanes at a time (explicit SIMD: the pointers may alias as far
        // as the compiler knows), then the tail; both compute the same formula.
        typealias V = SIMD8<Float>
        var i = 0
        while i + 8 <= count {
            let pv = UnsafeRawPointer(p + i).loadUnaligned(as: V.self)
            let gv = UnsafeRawPointer(g + i).loadUnaligned(as: V.self) + l2 * pv
            let mv = b1 * UnsafeRawPointer(m + i).loadUnaligned(as: V.self) + a1 * gv
            let vv = b2 * UnsafeRawPointer(v + i).loadUnaligned(as: V.self) + a2 * gv * gv
            UnsafeMutableRawPointer(m + i).storeBytes(of: mv, as: V.self)
            UnsafeMutableRawPointer(v + i).storeBytes(of: vv, as: V.self)
            UnsafeMutableRawPointer(p + i).storeBytes(of: pv - stepSize * mv / (vv.squareRoot() * invRootC2 + eps), as: V.self)
            i += 8
        }
        while i < count {
            let gi = g[i] + l2 * p[i]
            let mi = b1 * m[i] + a1 * gi, vi = b2 * v[i] + a2 * gi * gi
            m[i] = mi
            v[i] = vi
            p[i] -= stepSize * mi / (vi.squareRoot() * invRootC2 + eps)
            i += 1
        }
    }
}
