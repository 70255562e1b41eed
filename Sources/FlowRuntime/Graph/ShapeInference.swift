/// Shape rules shared by operations (each op checks its own inputs in
/// `GraphOp.outputShape`).
enum ShapeInference {
    /// numpy broadcasting of two shapes (right-aligned), or nil.
    static func broadcast(_ a: [Int], _ b: [Int]) -> [Int]? {
        let r = Swift.max(a.count, b.count)
        let pa = [Int](repeating: 1, count: r - a.count) + a
        let pb = [Int](repeating: 1, count: r - b.count) + b
        var out = [Int]()
        for i in 0..<r {
            if pa[i] == pb[i] || pb[i] == 1 { out.append(pa[i]) }
            else if pa[i] == 1 { out.append(pb[i]) }
            else { return nil }
        }
        return out
    }

    /// The per-sample shape a parameter takes when it meets a batched value of
    /// per-sample rank `rank`: a leading extent-1 axis that aligns with the
    /// batch is dropped. Nil when the parameter would need a batch extent.
    static func perSampleShape(ofParameter s: [Int], againstRank rank: Int) -> [Int]? {
        if s.count <= rank { return s }
        if s.count == rank + 1 && s[0] == 1 { return Array(s.dropFirst()) }
        return nil
    }

    /// Normalises a possibly negative axis against `rank`.
    static func axis(_ a: Int, rank: Int, node: String) throws -> Int {
        let n = a < 0 ? a + rank : a
        guard n >= 0 && n < rank else {
            throw FlowError.shapeMismatch("node '\(node)': axis \(a) is out of range for per-sample rank \(rank)")
        }
        return n
    }
}
