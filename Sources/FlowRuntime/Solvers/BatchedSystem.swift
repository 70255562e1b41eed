/// A batched ODE system dy/dt = f(t, y) the Runge–Kutta integrator runs:
/// every sample has a state of `width` Double components and its own time.
///
/// Implementations: `TransportSystem` (y = x, f = v), and the augmented
/// likelihood systems (y = (x, Δ…), f = (v, ∇·v …)). States are Double inside
/// the integrator, so that the Runge–Kutta combinations and the log-density
/// accumulator lose nothing; the network still sees Float points.
protocol BatchedSystem: Sendable {
    /// Per-chunk scratch (field workspace, conversion buffers).
    associatedtype Context
    /// Components per sample.
    var width: Int { get }
    /// The leading components of a state that enter the adaptive error norm
    /// and the initial step selection (`width` unless a system says
    /// otherwise); the rest are integrated on the steps these choose.
    var controlledWidth: Int { get }
    func makeContext() -> Context
    /// derivatives[r, :] = f(times[r], states[r, :]) for r < times.count.
    /// `samples[r]` is row r's index in the whole run (for per-sample data
    /// such as Hutchinson probes). Must not mix rows: a row's derivative
    /// depends on that row only.
    func evaluate(times: UnsafeBufferPointer<Double>, states: UnsafePointer<Double>,
                  samples: UnsafeBufferPointer<Int>, into derivatives: UnsafeMutablePointer<Double>,
                  context: Context)
}

extension BatchedSystem {
    var controlledWidth: Int { width }
}

/// Float staging buffers between Double states and a `VelocityField`.
final class _FieldContext {
    let workspace: FieldWorkspace
    let points = FloatBuffer()
    let velocities = FloatBuffer()
    let tangents = FloatBuffer()
    let products = FloatBuffer()
    let contexts = FloatBuffer()
    var divergences: [Double] = []

    /// The workspace of `bound.field` for a conditional run, else of `field`.
    init(_ field: any VelocityField, _ bound: BoundContexts? = nil) {
        workspace = bound?.field.makeWorkspace() ?? field.makeWorkspace()
    }

    /// Gathers the contexts of the rows' samples (`samples[r]` indexes the
    /// block) into the contexts buffer: `[rows, m]`.
    func stageContexts(_ bound: BoundContexts, samples: UnsafeBufferPointer<Int>) -> UnsafeBufferPointer<Float> {
        let m = bound.dimension, rows = samples.count
        let c = contexts.reserve(Swift.max(rows * m, 1))
        bound.values.withUnsafeBufferPointer { src in
            for r in 0..<rows { (c + r * m).update(from: src.baseAddress! + samples[r] * m, count: m) }
        }
        return UnsafeBufferPointer(start: c, count: rows * m)
    }

    /// Converts the first `dimension` components of each row of `states`
    /// (row stride `width`) into the Float points buffer.
    func stagePoints(_ states: UnsafePointer<Double>, rows: Int, dimension d: Int, width: Int) -> UnsafeMutablePointer<Float> {
        let p = points.reserve(rows * d)
        for r in 0..<rows {
            for j in 0..<d { p[r * d + j] = Float(states[r * width + j]) }
        }
        return p
    }

    /// Writes the velocities into the first `dimension` components of each
    /// derivative row.
    func unstageVelocities(_ derivatives: UnsafeMutablePointer<Double>, rows: Int, dimension d: Int, width: Int) {
        let v = velocities.pointer
        for r in 0..<rows {
            for j in 0..<d { derivatives[r * width + j] = Double(v[r * d + j]) }
        }
    }
}

/// The probability-flow ODE dx/dt = v(t, x), or dx/dt = v(t, x, c) with
/// each sample's context c held fixed (`contexts`).
struct TransportSystem: BatchedSystem {
    let field: any VelocityField
    var contexts: BoundContexts? = nil
    var width: Int { field.dimension }

    func makeContext() -> _FieldContext { _FieldContext(field, contexts) }

    func evaluate(times: UnsafeBufferPointer<Double>, states: UnsafePointer<Double>,
                  samples: UnsafeBufferPointer<Int>, into derivatives: UnsafeMutablePointer<Double>,
                  context: _FieldContext) {
        let m = times.count, d = field.dimension
        let p = context.stagePoints(states, rows: m, dimension: d, width: d)
        let points = UnsafeBufferPointer(start: p, count: m * d)
        let velocities = UnsafeMutableBufferPointer(start: context.velocities.reserve(m * d), count: m * d)
        if let contexts {
            contexts.field.velocity(times: times, points: points, contexts: context.stageContexts(contexts, samples: samples),
                                    into: velocities, workspace: context.workspace)
        } else {
            field.velocity(times: times, points: points, into: velocities, workspace: context.workspace)
        }
        context.unstageVelocities(derivatives, rows: m, dimension: d, width: d)
    }
}
