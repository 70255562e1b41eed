/// A dense, row-major float32 tensor.
///
/// The first dimension is the batch wherever a tensor holds samples
/// (`x: [batch, dim]`). Storage is a Swift array, so copies are
/// copy-on-write; hot loops reach the elements through
/// `withUnsafeBufferPointer`/`withUnsafeMutableBufferPointer`.
public struct Tensor: Sendable, Equatable {
    /// Extents, outermost first. A scalar has shape `[]` and one element.
    public private(set) var shape: [Int]
    /// The elements in row-major order; `scalars.count == shape.elementCount`.
    public var scalars: [Float]

    /// A tensor filled with `value`.
    public init(shape: [Int], repeating value: Float = 0) {
        precondition(shape.allSatisfy { $0 >= 0 }, "negative extent in \(shape)")
        self.shape = shape
        self.scalars = [Float](repeating: value, count: shape.elementCount)
    }

    /// A tensor over existing elements. - Precondition: counts agree.
    public init(shape: [Int], scalars: [Float]) {
        precondition(scalars.count == shape.elementCount,
                     "\(scalars.count) elements do not fill shape \(shape)")
        self.shape = shape
        self.scalars = scalars
    }

    /// Number of elements.
    public var count: Int { scalars.count }
    /// Number of dimensions.
    public var rank: Int { shape.count }

    /// The same elements under another shape with the same element count.
    public func reshaped(_ newShape: [Int]) -> Tensor {
        Tensor(shape: newShape, scalars: scalars)
    }

    /// Largest absolute elementwise difference; `.infinity` when shapes differ.
    public func maxAbsDifference(_ other: Tensor) -> Float {
        guard shape == other.shape else { return .infinity }
        var m: Float = 0
        for i in scalars.indices {
            let d = abs(scalars[i] - other.scalars[i])
            if d.isNaN { return .nan }
            m = Swift.max(m, d)
        }
        return m
    }
}

extension Array where Element == Int {
    /// Product of the extents (1 for a scalar shape `[]`).
    @inlinable public var elementCount: Int { reduce(1, *) }

    /// Product of the extents, or nil when it overflows `Int` or any extent is
    /// negative: the check every allocation driven by outside data goes through.
    public var checkedElementCount: Int? {
        var n = 1
        for e in self {
            guard e >= 0 else { return nil }
            let (p, o) = n.multipliedReportingOverflow(by: e)
            if o { return nil }
            n = p
        }
        return n
    }
}
