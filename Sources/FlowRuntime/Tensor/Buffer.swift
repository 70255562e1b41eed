/// A growable, manually managed float buffer: workspaces keep one per value
/// so that repeated evaluations of the same size allocate nothing.
final class FloatBuffer {
    private(set) var pointer: UnsafeMutablePointer<Float>
    private(set) var capacity: Int

    init(capacity: Int = 0) {
        self.capacity = Swift.max(capacity, 1)
        pointer = .allocate(capacity: self.capacity)
    }
    deinit { pointer.deallocate() }

    /// Makes room for `count` floats (contents are not preserved on growth).
    @inline(__always)
    func reserve(_ count: Int) -> UnsafeMutablePointer<Float> {
        if count > capacity {
            pointer.deallocate()
            capacity = count
            pointer = .allocate(capacity: count)
        }
        return pointer
    }

    func zero(_ count: Int) { reserve(count).update(repeating: 0, count: count) }
}
