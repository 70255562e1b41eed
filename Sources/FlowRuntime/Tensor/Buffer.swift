/// A growable, manually managed buffer: workspaces keep one per value so
/// that repeated evaluations of the same size allocate nothing.
final class GrowableBuffer<Element: Numeric> {
    private(set) var pointer: UnsafeMutablePointer<Element>
    private(set) var capacity: Int

    init(capacity: Int = 0) {
        self.capacity = Swift.max(capacity, 1)
        pointer = .allocate(capacity: self.capacity)
    }
    deinit { pointer.deallocate() }

    /// Makes room for `count` elements (contents are not preserved on growth).
    @inline(__always)
    func reserve(_ count: Int) -> UnsafeMutablePointer<Element> {
        if count > capacity {
            pointer.deallocate()
            capacity = count
            pointer = .allocate(capacity: count)
        }
        return pointer
    }

    func zero(_ count: Int) { reserve(count).update(repeating: 0, count: count) }
}

/// The buffers of values, tangents, gradients and scratch.
typealias FloatBuffer = GrowableBuffer<Float>
/// Times and other per-sample doubles (the SDE sampler's).
typealias DoubleBuffer = GrowableBuffer<Double>
