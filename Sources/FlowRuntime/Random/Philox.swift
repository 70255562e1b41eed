/// Philox-4×32-10, the counter-based generator of Salmon et al., "Parallel
/// random numbers: as easy as 1, 2, 3" (SC 2011).
///
/// Every draw is a pure function of (key, counter), so a stream keyed by
/// (seed, stream id) and indexed by sample gives the same numbers whatever
/// the batch split or thread count. There is no global generator anywhere in
/// FlowRuntime: callers pass seeds or `RandomStream` values.
public struct Philox4x32: Sendable {
    public let key: (UInt32, UInt32)

    public init(seed: UInt64) {
        key = (UInt32(truncatingIfNeeded: seed), UInt32(truncatingIfNeeded: seed >> 32))
    }

    /// Four 32-bit words for the 128-bit counter (c0, c1, c2, c3).
    @inlinable
    public func block(_ c0: UInt32, _ c1: UInt32, _ c2: UInt32, _ c3: UInt32)
        -> (UInt32, UInt32, UInt32, UInt32)
    {
        var x0 = c0, x1 = c1, x2 = c2, x3 = c3
        var k0 = key.0, k1 = key.1
        for _ in 0..<10 {
            let p0 = UInt64(0xD251_1F53) &* UInt64(x0)
            let p1 = UInt64(0xCD9E_8D57) &* UInt64(x2)
            let hi0 = UInt32(truncatingIfNeeded: p0 >> 32), lo0 = UInt32(truncatingIfNeeded: p0)
            let hi1 = UInt32(truncatingIfNeeded: p1 >> 32), lo1 = UInt32(truncatingIfNeeded: p1)
            x0 = hi1 ^ x1 ^ k0
            x1 = lo1
            x2 = hi0 ^ x3 ^ k1
            x3 = lo0
            k0 = k0 &+ 0x9E37_79B9
            k1 = k1 &+ 0xBB67_AE85
        }
        return (x0, x1, x2, x3)
    }
}

/// A reproducible stream of random numbers for one (seed, stream, index)
/// triple: typically one sample of one purpose (initial point, probe vector,
/// Brownian increment). Draws advance an internal counter.
///
/// - Complexity: one Philox block (10 rounds) per four 32-bit outputs.
public struct RandomStream: Sendable {
    @usableFromInline let philox: Philox4x32
    @usableFromInline let stream: UInt32
    @usableFromInline let index: UInt64
    @usableFromInline var counter: UInt32 = 0
    @usableFromInline var buffer: (UInt32, UInt32, UInt32, UInt32) = (0, 0, 0, 0)
    @usableFromInline var available = 0
    @usableFromInline var spareNormal: Double? = nil

    /// - Parameters:
    ///   - seed: the user's seed.
    ///   - stream: a purpose tag (see `RandomStream.Purpose`), so that
    ///     different uses of one seed are independent.
    ///   - index: the sample (or row, or step) index inside that purpose.
    public init(seed: UInt64, stream: UInt32, index: UInt64) {
        self.philox = Philox4x32(seed: seed)
        self.stream = stream
        self.index = index
    }

    /// A uniformly distributed 32-bit word.
    @inlinable
    public mutating func nextUInt32() -> UInt32 {
        if available == 0 {
            buffer = philox.block(counter, stream, UInt32(truncatingIfNeeded: index),
                                  UInt32(truncatingIfNeeded: index >> 32))
            counter &+= 1
            available = 4
        }
        available -= 1
        switch available {
        case 3: return buffer.0
        case 2: return buffer.1
        case 1: return buffer.2
        default: return buffer.3
        }
    }

    /// Uniform in the open interval (0, 1), 53-bit resolution.
    @inlinable
    public mutating func nextUniform() -> Double {
        let hi = UInt64(nextUInt32()) >> 5, lo = UInt64(nextUInt32()) >> 6
        let u53 = (hi << 26) | lo  // 53 random bits
        return (Double(u53) + 0.5) * 0x1p-53
    }

    /// Standard normal (Box–Muller; the second value is kept for the next call).
    @inlinable
    public mutating func nextNormal() -> Double {
        if let s = spareNormal { spareNormal = nil; return s }
        let u1 = nextUniform(), u2 = nextUniform()
        let r = (-2 * _log(u1)).squareRoot()
        let a = 2 * Double.pi * u2
        spareNormal = r * _sin(a)
        return r * _cos(a)
    }

    /// ±1 with equal probability.
    @inlinable
    public mutating func nextRademacher() -> Float {
        (nextUInt32() & 1) == 0 ? -1 : 1
    }

    /// Uniform integer in 0..<n (Lemire's multiply-shift with rejection).
    @inlinable
    public mutating func nextInt(below n: Int) -> Int {
        precondition(n > 0 && n <= Int(UInt32.max))
        let bound = UInt32(n)
        var m = UInt64(nextUInt32()) &* UInt64(bound)
        var low = UInt32(truncatingIfNeeded: m)
        if low < bound {
            let threshold = (0 &- bound) % bound
            while low < threshold {
                m = UInt64(nextUInt32()) &* UInt64(bound)
                low = UInt32(truncatingIfNeeded: m)
            }
        }
        return Int(m >> 32)
    }

    /// Purpose tags for `stream`. Values are part of the reproducibility
    /// contract: changing one changes every result drawn with it.
    public enum Purpose: UInt32 {
        case initialization = 1, baseSample = 2, hutchinsonProbe = 3, brownian = 4
        case minibatch = 5, trainingTime = 6, trainingBase = 7, dataset = 8, split = 9
        case dequantization = 10, labelDropout = 11
        case custom = 100
    }

    /// Convenience: a stream for a purpose.
    public init(seed: UInt64, purpose: Purpose, index: UInt64) {
        self.init(seed: seed, stream: purpose.rawValue, index: index)
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

@usableFromInline func _log(_ x: Double) -> Double { log(x) }
@usableFromInline func _sin(_ x: Double) -> Double { sin(x) }
@usableFromInline func _cos(_ x: Double) -> Double { cos(x) }
