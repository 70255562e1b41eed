import CKernels

/// The arithmetic of a model's dense layers.
///
/// `.bf16` multiplies the Linear layers (Gemm, MatMul with constant weights)
/// with at least `Precision.bf16MinimumWidth` inputs and outputs in
/// bfloat16: weights are rounded to bf16 once (round to nearest even), each
/// layer's input is rounded per block of rows, products accumulate in
/// float32, and biases, non-linearities, every other op and the solvers
/// stay float32. A layer's outputs then differ from float32 by about 2^-8 of
/// Σ|x_k·W_jk| (two roundings to 8 significant bits). In a bf16 pass every
/// SiLU fused into a Linear layer — a bf16 one, on its float32 accumulators,
/// and a narrow float32 one such as an MLP's first layer — runs in a
/// division-free form accurate to 2e-6 relative (float32's: ~3e-7); other
/// activations use the float32 kernels. Sampled endpoints of
/// the trained checkerboard flow move by ~1e-3 (bench/bf16/results.md).
/// Narrow layers multiply in float32: an input layer rounded to bf16 would round
/// the sample coordinates themselves to 3 significant digits, and a narrow
/// output layer costs more to convert than bf16 saves.
/// Where the CPU lacks AVX512_BF16, bf16 requests run in float32 and the
/// effective precision says so.
public enum Precision: Int32, Sendable, CaseIterable, CustomStringConvertible {
    /// float32 throughout (the default).
    case float32 = 0
    /// bfloat16 products with float32 accumulation in wide Linear layers.
    case bf16 = 1

    /// Linear layers with fewer inputs or outputs than this stay float32 under `.bf16`.
    public static let bf16MinimumWidth = 32

    /// Whether this CPU runs `.bf16` (AVX512_BF16, detected with cpuid);
    /// elsewhere `.bf16` requests run in float32.
    public static var bf16Available: Bool { PackedWeights.available && fr_bf16_supported() != 0 }

    /// "float32" (also "fp32", "f32") or "bf16" (also "bfloat16"); nil otherwise.
    public init?(name: String) {
        switch name.lowercased() {
        case "float32", "fp32", "f32": self = .float32
        case "bf16", "bfloat16": self = .bf16
        default: return nil
        }
    }

    public var description: String { self == .float32 ? "float32" : "bf16" }
}

/// A model's requested precisions: one for velocity evaluation (sampling,
/// transport, encoding, SDE, plain velocity calls), one for likelihoods
/// (exact and Hutchinson divergence passes; float32 unless asked).
final class PrecisionSetting: @unchecked Sendable {
    private let lock = Mutex()
    private var velocity = Precision.float32
    private var likelihood = Precision.float32

    func get(likelihood forLikelihood: Bool) -> Precision {
        lock.withLock { forLikelihood ? likelihood : velocity }
    }

    func set(_ p: Precision, likelihood forLikelihood: Bool) {
        lock.withLock { if forLikelihood { likelihood = p } else { velocity = p } }
    }
}

extension Model {
    /// The precision requested for velocity evaluation in sampling,
    /// transport, encoding and SDE sampling (default `.float32`).
    public var precision: Precision { precisionSetting.get(likelihood: false) }

    /// The precision requested for log-density passes (exact or Hutchinson
    /// divergence, and sampling that also returns log-densities). Default
    /// `.float32` whatever `precision` says: bf16 moves log-densities by
    /// more than their usual tolerances (bench/bf16/results.md), so it runs
    /// only when asked for here.
    public var likelihoodPrecision: Precision { precisionSetting.get(likelihood: true) }

    /// Requests `precision` for velocity evaluation, or for likelihoods
    /// (`likelihood: true`). The first bf16 request packs bf16 copies of the
    /// weights (half the float32 weights' bytes). Calls that start afterwards
    /// use it, on every flow built on this model; do not change it while
    /// calls run on other threads (they may see either setting).
    public func setPrecision(_ precision: Precision, likelihood: Bool = false) {
        if precision == .bf16 && Precision.bf16Available { plan.parameters.prepareBF16() }
        precisionSetting.set(precision, likelihood: likelihood)
    }

    /// The precision calls actually run in: `.bf16` only when requested, the
    /// CPU has AVX512_BF16 and at least one layer qualifies; else `.float32`.
    public func effectivePrecision(likelihood: Bool = false) -> Precision {
        precisionSetting.get(likelihood: likelihood) == .bf16 && Precision.bf16Available
            && plan.parameters.hasBF16Weights ? .bf16 : .float32
    }

    /// The executor for a pass: bf16 layers only when effective (or, given
    /// `precision`, when that is bf16 and the weights are prepared).
    func executor(likelihood: Bool, precision: Precision? = nil) -> Executor {
        Executor(plan: plan, params: plan.parameters,
                 precision: precision ?? effectivePrecision(likelihood: likelihood))
    }
}
