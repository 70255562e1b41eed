import CKernels

extension UnsafeBufferPointer where Element == Float {
    /// The index of the first inf or NaN, or nil when every element is
    /// finite: the input check of every public entry point, a vector scan
    /// (`fr_first_nonfinite`) rather than an element loop with an exit.
    public var firstNonFiniteIndex: Int? {
        guard let base = baseAddress, count > 0 else { return nil }
        let i = fr_first_nonfinite(base, count)
        return i < count ? i : nil
    }
}

extension Array where Element == Float {
    /// The index of the first inf or NaN, or nil when every element is finite.
    public var firstNonFiniteIndex: Int? { withUnsafeBufferPointer { $0.firstNonFiniteIndex } }
}
