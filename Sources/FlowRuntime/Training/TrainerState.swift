/// The optimiser state of a `Trainer` in flat buffers, and the fixed blocks
/// its update runs in.
///
/// The summed gradient, Adam's two moments and the EMA weights each live in
/// one allocation of `total` floats, the trainable parameters one after the
/// other (in `Trainer.trainable` order). The update is cut into blocks of at
/// most `blockSize` scalars that never cross a parameter and start at a
/// multiple of `blockSize` inside it: the cut depends only on the parameter
/// sizes, never on the thread count, and every block is computed by exactly
/// one thread. Per block, the chunk gradients are summed in chunk order and
/// the squared norm is taken as Float partial sums of 256 consecutive squares
/// (`groupSize`); the partials are then added in Double in parameter order on
/// one thread. That is the order of the serial update this replaced, so the
/// weights are bitwise the same as before, and the same for any thread count.
///
/// Allocated once per trainer; a step allocates nothing here (the chunk
/// bookkeeping only grows when the chunk count does).
final class TrainerState: @unchecked Sendable {
    /// Scalars per update block: a multiple of `groupSize` (and of 8, the
    /// optimiser's vector width). 8192 floats = 32 KiB per buffer, so a
    /// block's gradient, moments, weights and EMA sit in L2 together, and
    /// the 256×256 layers of the benchmark MLP give 8 blocks each.
    static let blockSize = 8192
    /// Squares per Float partial sum of the gradient norm.
    static let groupSize = 256

    struct Block {
        /// Trainable index (into `counts`/`offsets`).
        let parameter: Int
        /// Range inside the parameter.
        let range: Range<Int>
        /// Index of the block's first norm partial.
        let firstGroup: Int
    }

    let counts: [Int]
    let offsets: [Int]
    let total: Int
    let blocks: [Block]
    let groupCount: Int

    let gradient: UnsafeMutablePointer<Float>
    let firstMoment: UnsafeMutablePointer<Float>
    let secondMoment: UnsafeMutablePointer<Float>
    let ema: UnsafeMutablePointer<Float>
    let normPartials: UnsafeMutablePointer<Float>

    /// Per-step chunk bookkeeping, grown to the chunk count (rarely changes).
    private(set) var chunkCapacity = 0
    /// `chunkGradients[c * counts.count + a]`: chunk c's gradient of trainable a.
    private(set) var chunkGradients = UnsafeMutablePointer<UnsafePointer<Float>>.allocate(capacity: 1)
    private(set) var lossPartials = UnsafeMutablePointer<LossReport>.allocate(capacity: 1)
    private(set) var nonFinite = UnsafeMutablePointer<NonFiniteSchedule?>.allocate(capacity: 1)

    /// - Parameters:
    ///   - counts: scalars per trainable parameter.
    ///   - initialWeights: writes parameter a's current weights (the EMA's start) into the pointer.
    init(counts: [Int], initialWeights: (Int, UnsafeMutablePointer<Float>) -> Void) {
        self.counts = counts
        var offsets: [Int] = [], blocks: [Block] = []
        var total = 0, groups = 0
        for (a, n) in counts.enumerated() {
            offsets.append(total)
            var lo = 0
            while lo < n {
                let hi = Swift.min(n, lo + Self.blockSize)
                blocks.append(Block(parameter: a, range: lo..<hi, firstGroup: groups))
                groups += (hi - lo + Self.groupSize - 1) / Self.groupSize
                lo = hi
            }
            total += n
        }
        self.offsets = offsets
        self.total = total
        self.blocks = blocks
        self.groupCount = groups
        func buffer(_ n: Int) -> UnsafeMutablePointer<Float> {
            let bytes = Swift.max(n, 1) * MemoryLayout<Float>.stride
            let p = UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: 64).bindMemory(to: Float.self, capacity: Swift.max(n, 1))
            p.initialize(repeating: 0, count: Swift.max(n, 1))
            return p
        }
        gradient = buffer(total)
        firstMoment = buffer(total)
        secondMoment = buffer(total)
        ema = buffer(total)
        normPartials = buffer(groups)
        for a in counts.indices { initialWeights(a, ema + offsets[a]) }
    }

    deinit {
        for p in [gradient, firstMoment, secondMoment, ema, normPartials] { UnsafeMutableRawPointer(p).deallocate() }
        chunkGradients.deallocate()
        lossPartials.deallocate()
        nonFinite.deallocate()
    }

    /// Makes room for `chunks` chunks' bookkeeping.
    func reserveChunks(_ chunks: Int) {
        guard chunks > chunkCapacity else { return }
        chunkGradients.deallocate(); lossPartials.deallocate(); nonFinite.deallocate()
        chunkGradients = .allocate(capacity: chunks * Swift.max(counts.count, 1))
        lossPartials = .allocate(capacity: chunks)
        nonFinite = .allocate(capacity: chunks)
        chunkCapacity = chunks
    }

    /// Trainable a's slice of a flat buffer.
    @inline(__always)
    func slice(_ buffer: UnsafeMutablePointer<Float>, _ a: Int) -> UnsafeMutableBufferPointer<Float> {
        UnsafeMutableBufferPointer(start: buffer + offsets[a], count: counts[a])
    }

    /// Trainable a's slice of a flat buffer as an array.
    func array(_ buffer: UnsafeMutablePointer<Float>, _ a: Int) -> [Float] { Array(slice(buffer, a)) }

    /// Per-trainable arrays of a flat buffer.
    func arrays(_ buffer: UnsafeMutablePointer<Float>) -> [[Float]] { counts.indices.map { array(buffer, $0) } }

    /// Sums block `b` of the chunk gradients (`chunks` of them, in chunk
    /// order, starting from 0 as the serial sum did) into `gradient` and
    /// writes the block's norm partials.
    @inline(__always)
    func reduce(block b: Int, chunks: Int) {
        let blk = blocks[b], a = blk.parameter, lo = blk.range.lowerBound, n = blk.range.count
        let dst = gradient + offsets[a] + lo
        let stride = counts.count
        // 0 + x, not x: the serial sum started from +0 (keeps −0 → +0 as it did).
        let first = chunkGradients[a] + lo
        for j in 0..<n { dst[j] = 0 + first[j] }
        var c = 1
        while c < chunks {
            let src = chunkGradients[c * stride + a] + lo
            for j in 0..<n { dst[j] += src[j] }
            c += 1
        }
        var j = 0, g = blk.firstGroup
        while j < n {
            let end = Swift.min(n, j + Self.groupSize)
            var s: Float = 0
            for k in j..<end { s += dst[k] * dst[k] }
            normPartials[g] = s
            g += 1
            j = end
        }
    }

    /// Σ of the norm partials in Double, in order (one thread).
    func squaredNorm() -> Double {
        var norm2 = 0.0
        for g in 0..<groupCount { norm2 += Double(normPartials[g]) }
        return norm2
    }
}
