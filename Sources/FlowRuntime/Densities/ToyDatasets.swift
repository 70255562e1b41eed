#if canImport(Glibc)
import Glibc
#endif

// Built-in 2-D datasets for demos and tests. Those with a closed-form density
// state their true differential entropy H = −E[log ρ], so a model's held-out
// negative log-likelihood reads as an excess over the best possible value:
// NLL − H = KL(ρ ‖ ρ_model) ≥ 0. Every sampler draws sample i from
// `RandomStream(seed, .dataset, firstIndex + i)`.

/// The built-in toy datasets by name (CLI `--toy`, the C ABI).
public enum ToyDataset: String, Sendable, CaseIterable {
    case checkerboard, eightGaussians = "8gaussians", rings, moons

    /// The sampler.
    public var source: any SampleSource {
        switch self {
        case .checkerboard: return Checkerboard()
        case .eightGaussians: return EightGaussians()
        case .rings: return RingMixture()
        case .moons: return TwoMoons()
        }
    }

    /// The density, when it has a closed form (not two moons).
    public var density: (any Density)? { source as? any Density }

    /// The true differential entropy in nats, when known.
    public var entropy: Double? {
        switch self {
        case .checkerboard: return Checkerboard().entropy
        case .eightGaussians: return EightGaussians().entropy
        case .rings: return RingMixture().entropy
        case .moons: return nil
        }
    }
}

/// Uniform density on the 8 "black" squares of a 4 × 4 checkerboard of
/// side-2 squares covering [−4, 4]²: square (i, j), i, j ∈ 0..<4, covers
/// [−4 + 2i, −2 + 2i) × [−4 + 2j, −2 + 2j) and is occupied when i + j is
/// even. Area 32, so ρ = 1/32 on the squares and 0 elsewhere.
///
/// True entropy: log 32 ≈ 3.4657 nats (exact).
public struct Checkerboard: Density {
    public init() {}
    public var dimension: Int { 2 }
    /// log 32, exact.
    public var entropy: Double { log(32.0) }

    /// Whether (x, y) lies on an occupied square.
    public func contains(x: Double, y: Double) -> Bool {
        guard x >= -4, x < 4, y >= -4, y < 4 else { return false }
        let i = Int(((x + 4) / 2).rounded(.down)), j = Int(((y + 4) / 2).rounded(.down))
        return (i + j) % 2 == 0
    }

    public func logDensity(points: UnsafeBufferPointer<Float>,
                           into logDensities: UnsafeMutableBufferPointer<Double>) {
        for r in 0..<logDensities.count {
            logDensities[r] = contains(x: Double(points[2 * r]), y: Double(points[2 * r + 1])) ? -entropy : -.infinity
        }
    }

    public func sample(seed: UInt64, firstIndex: UInt64, into samples: UnsafeMutableBufferPointer<Float>) {
        forEachRow(samples, seed: seed, firstIndex: firstIndex, purpose: .dataset) { row, rng in
            let square = rng.nextInt(below: 8)
            let i = square / 2, j = 2 * (square % 2) + (i % 2)  // (i + j) even
            row[0] = Float(-4 + 2 * Double(i) + 2 * rng.nextUniform())
            row[1] = Float(-4 + 2 * Double(j) + 2 * rng.nextUniform())
        }
    }
}

/// −∫ ρ log ρ of a 2-D density by the midpoint rule on a square grid of
/// spacing `h` over `[x0, x1] × [y0, y1]` (the mass outside must be negligible).
/// For sums of Gaussians the midpoint rule converges faster than any power of
/// the spacing. - Cost: one batched log-density call per grid row.
func entropyByQuadrature(_ density: any Density, x: ClosedRange<Double>, y: ClosedRange<Double>, spacing h: Double) -> Double {
    let nx = Int(((x.upperBound - x.lowerBound) / h).rounded(.up)), ny = Int(((y.upperBound - y.lowerBound) / h).rounded(.up))
    var row = [Float](repeating: 0, count: 2 * ny), logp = [Double](repeating: 0, count: ny)
    var s = 0.0
    for i in 0..<nx {
        for j in 0..<ny {
            row[2 * j] = Float(x.lowerBound + (Double(i) + 0.5) * h)
            row[2 * j + 1] = Float(y.lowerBound + (Double(j) + 0.5) * h)
        }
        row.withUnsafeBufferPointer { p in logp.withUnsafeMutableBufferPointer { density.logDensity(points: p, into: $0) } }
        for l in logp where l > -.infinity { s -= exp(l) * l }
    }
    return s * h * h
}

/// Eight isotropic normals with standard deviation σ = √2/4 ≈ 0.354, centred
/// on the circle of radius 2√2 ≈ 2.83 at angles kπ/4 (the FFJORD benchmark's
/// layout after its rescaling), equal weights; the density is a
/// `GaussianMixture`.
///
/// True entropy: 2.83158 nats, by quadrature (spacing σ/8 over the centres'
/// box padded by 9σ; error < 1e-6; a 4-million-sample Monte Carlo check
/// gives 2.8304 ± 0.0005). Neighbouring components sit 6.1σ apart and
/// overlap enough that the separated-mixture value log 8 + log(2πe σ²) =
/// 2.83788 is 0.006 too high.
public struct EightGaussians: Density {
    public init() {}
    public var dimension: Int { 2 }
    static let sigma = 2.0.squareRoot() / 4
    static let centers: [[Double]] = (0..<8).map { k in
        let a = Double(k) * Double.pi / 4
        return [2 * 2.0.squareRoot() * cos(a), 2 * 2.0.squareRoot() * sin(a)]
    }
    static let mixture = try! GaussianMixture(weights: [Double](repeating: 1, count: 8), means: centers,
                                              covariances: [[Double]](repeating: [sigma * sigma, 0, 0, sigma * sigma], count: 8))
    private static let cachedEntropy: Double = {
        let r = 2 * 2.0.squareRoot() + 9 * sigma
        return entropyByQuadrature(mixture, x: -r...r, y: -r...r, spacing: sigma / 8)
    }()
    /// The mixture's standard deviation per coordinate.
    public var standardDeviation: Double { Self.sigma }
    /// True entropy by quadrature (computed once on first use).
    public var entropy: Double { Self.cachedEntropy }

    public func logDensity(points: UnsafeBufferPointer<Float>,
                           into logDensities: UnsafeMutableBufferPointer<Double>) {
        Self.mixture.logDensity(points: points, into: logDensities)
    }

    /// Sample i: one draw picks the component, two normals the offset, from
    /// `RandomStream(seed, .dataset, firstIndex + i)` like the other datasets.
    public func sample(seed: UInt64, firstIndex: UInt64, into samples: UnsafeMutableBufferPointer<Float>) {
        forEachRow(samples, seed: seed, firstIndex: firstIndex, purpose: .dataset) { row, rng in
            let c = Self.centers[rng.nextInt(below: 8)]
            row[0] = Float(c[0] + Self.sigma * rng.nextNormal())
            row[1] = Float(c[1] + Self.sigma * rng.nextNormal())
        }
    }
}

/// Concentric rings: a mixture of radially symmetric densities whose radius
/// is normal, truncated to r > 0, with uniform angle. Ring j (radius R_j,
/// width s, weight w_j):
///
///     ρ_j(x) = φ((|x| − R_j)/s) / (s · 2π|x| · Φ(R_j/s)),
///
/// φ, Φ the standard normal density and distribution function. Default:
/// radii 1, 2, 3, width 0.15, weights ∝ radius (1/6, 2/6, 3/6), so the
/// density per unit length is the same on every ring.
///
/// True entropy: 3.14634 nats for the defaults, by Simpson's rule in r
/// (`entropy`; 40,000 intervals, error < 1e-8).
public struct RingMixture: Density {
    public let radii: [Double]
    public let width: Double
    public let weights: [Double]

    /// - Precondition: radii and width positive; weights are normalised.
    public init(radii: [Double] = [1, 2, 3], width: Double = 0.15, weights: [Double]? = nil) {
        self.radii = radii
        self.width = width
        let w = weights ?? radii
        let total = w.reduce(0, +)
        self.weights = w.map { $0 / total }
    }

    public var dimension: Int { 2 }

    /// log ρ as a function of the radius r > 0.
    func logDensity(radius r: Double) -> Double {
        var s = 0.0
        for (j, rj) in radii.enumerated() {
            let z = (r - rj) / width
            let phiCut = 0.5 * erfc(-rj / width / 2.0.squareRoot())
            s += weights[j] * exp(-0.5 * z * z) / (2.0 * Double.pi).squareRoot() / phiCut
        }
        return log(s) - log(width * 2 * Double.pi * r)
    }

    /// −∫ ρ log ρ dx = −∫_0^∞ 2πr ρ(r) log ρ(r) dr by Simpson's rule on
    /// (0, max R + 12 s].
    public var entropy: Double {
        let upper = radii.max()! + 12 * width, n = 40_000
        let h = upper / Double(n)
        var s = 0.0
        for i in 1...n {  // the integrand vanishes at r = 0
            let r = Double(i) * h
            let l = logDensity(radius: r)
            let f = -2 * Double.pi * r * exp(l) * l
            s += (i == n ? 1 : (i % 2 == 1 ? 4 : 2)) * f
        }
        return s * h / 3
    }

    public func logDensity(points: UnsafeBufferPointer<Float>,
                           into logDensities: UnsafeMutableBufferPointer<Double>) {
        for r in 0..<logDensities.count {
            let x = Double(points[2 * r]), y = Double(points[2 * r + 1])
            logDensities[r] = logDensity(radius: (x * x + y * y).squareRoot())
        }
    }

    public func sample(seed: UInt64, firstIndex: UInt64, into samples: UnsafeMutableBufferPointer<Float>) {
        forEachRow(samples, seed: seed, firstIndex: firstIndex, purpose: .dataset) { row, rng in
            // Pick a ring by its weight, then a positive radius by rejection
            // (P(r ≤ 0) = Φ(−R/s) < 1e-11 for the defaults).
            var u = rng.nextUniform(), j = 0
            while j < radii.count - 1 && u >= weights[j] { u -= weights[j]; j += 1 }
            var r = 0.0
            repeat { r = radii[j] + width * rng.nextNormal() } while r <= 0
            let a = 2 * Double.pi * rng.nextUniform()
            row[0] = Float(r * cos(a))
            row[1] = Float(r * sin(a))
        }
    }
}

/// Two interleaved half circles with normal noise (standard deviation 0.1
/// before scaling), scaled by 2 and centred: the outer moon is
/// 2(cos θ − ½, sin θ − ¼), the inner 2(½ − cos θ, ¼ − sin θ), θ ~ U[0, π],
/// each with probability ½. Sample only: its density has no closed form.
public struct TwoMoons: SampleSource {
    public init() {}
    public var dimension: Int { 2 }
    public func sample(seed: UInt64, firstIndex: UInt64, into samples: UnsafeMutableBufferPointer<Float>) {
        forEachRow(samples, seed: seed, firstIndex: firstIndex, purpose: .dataset) { row, rng in
            let outer = rng.nextUInt32() & 1 == 0
            let a = Double.pi * rng.nextUniform()
            var x = cos(a), y = sin(a)
            if !outer { x = 1 - x; y = 0.5 - y }
            row[0] = Float(2 * (x - 0.5 + 0.1 * rng.nextNormal()))
            row[1] = Float(2 * (y - 0.25 + 0.1 * rng.nextNormal()))
        }
    }
}
