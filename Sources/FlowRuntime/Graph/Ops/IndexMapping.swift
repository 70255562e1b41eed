/// Data-movement ops (Transpose, Slice, Split, Pad, Resize nearest, Tile):
/// each output element of a sample is one input element of the same sample,
/// or a constant. Such an op only states its source map; this file runs it.
///
/// forward: y[s, i] = x[s, map[i]] (or `fill` where map[i] < 0);
/// JVP: ẏ[s, j, i] = ẋ[s, j, map[i]] (0 where map[i] < 0), since the op is
/// linear in x up to the constant; VJP: g_x[s, map[i]] += g[s, i].
protocol IndexMappingOp: GraphOp {
    /// For every per-sample output element, the per-sample input element it
    /// copies, or -1 for `fill`.
    var map: IndexMap { get }
    /// The value of elements without a source (padding).
    var fill: Float { get }
}

/// A per-sample source map, shared by copies of an op (built once).
final class IndexMap: @unchecked Sendable, Equatable {
    let sources: [Int32]
    /// The map as runs of consecutive sources (output start, input start or
    /// -1 for `fill`, length), when they average at least 8 elements (a
    /// Slice, Split or Pad: whole rows); nil otherwise (a Resize).
    let runs: [(out: Int, in: Int, count: Int)]?

    init(_ sources: [Int32]) {
        self.sources = sources
        var runs: [(out: Int, in: Int, count: Int)] = []
        var i = 0
        while i < sources.count {
            let start = i, first = Int(sources[i])
            i += 1
            if first < 0 {
                while i < sources.count && sources[i] < 0 { i += 1 }
            } else {
                while i < sources.count && Int(sources[i]) == first + (i - start) { i += 1 }
            }
            runs.append((start, first, i - start))
        }
        self.runs = runs.count * 8 <= sources.count ? runs : nil
    }
    static func == (a: IndexMap, b: IndexMap) -> Bool { a === b || a.sources == b.sources }

    /// Builds the map of an output of `outShape` whose element at index `o`
    /// comes from input index `source(o)` (per axis; nil: no source).
    /// - Throws: `.outOfMemory` past 2^28 elements (a hostile shape).
    static func build(outShape: [Int], inShape: [Int], node: String,
                      _ source: (_ outIndex: [Int]) -> [Int]?) throws -> IndexMap {
        guard let count = outShape.checkedElementCount, count <= 1 << 28,
              inShape.checkedElementCount.map({ $0 < Int(Int32.max) }) == true else {
            throw FlowError.outOfMemory("node '\(node)': output \(outShape) is too large to index")
        }
        let inStrides = Strided.strides(of: inShape, broadcastTo: inShape)
        var map = [Int32](repeating: -1, count: count)
        var index = [Int](repeating: 0, count: outShape.count)
        for o in 0..<count {
            if let s = source(index) {
                var flat = 0
                for (d, e) in s.enumerated() { flat += e * inStrides[d] }
                map[o] = Int32(flat)
            }
            var d = outShape.count - 1
            while d >= 0 { index[d] += 1; if index[d] < outShape[d] { break }; index[d] = 0; d -= 1 }
        }
        return IndexMap(map)
    }
}

extension IndexMappingOp {
    var fill: Float { 0 }

    func forward(_ c: OpContext) { gather(c, from: c.input(0), rows: c.batch, fillValue: fill) }
    func jvp(_ c: OpContext) { gather(c, from: c.tangent(0)!, rows: c.batch * c.k, fillValue: 0) }

    func vjp(_ c: OpContext) {
        guard let gx = c.gradient(0) else { return }
        let m = map.sources, inSize = c.size(0), outSize = c.outputSize, g = c.out
        m.withUnsafeBufferPointer { mp in
            for s in 0..<c.batch {
                let src = g + s * outSize, dst = gx + s * inSize
                for i in 0..<outSize where mp[i] >= 0 { dst[Int(mp[i])] += src[i] }
            }
        }
    }

    private func gather(_ c: OpContext, from x: UnsafeMutablePointer<Float>, rows: Int, fillValue: Float) {
        let m = map.sources, inSize = c.size(0), outSize = c.outputSize, out = c.out
        if let runs = map.runs {
            for s in 0..<rows {
                let src = x + s * inSize, dst = out + s * outSize
                for r in runs {
                    if r.in >= 0 { (dst + r.out).update(from: src + r.in, count: r.count) }
                    else { (dst + r.out).update(repeating: fillValue, count: r.count) }
                }
            }
            return
        }
        m.withUnsafeBufferPointer { mp in
            for s in 0..<rows {
                let src = x + s * inSize, dst = out + s * outSize
                for i in 0..<outSize {
                    let j = mp[i]
                    dst[i] = j >= 0 ? src[Int(j)] : fillValue
                }
            }
        }
    }

    func fold(_ inputs: [Tensor], node: String) throws -> Tensor {
        throw FlowError.unsupported("node '\(node)': \(kindName) of constants is folded by the importer")
    }
}
