/// Checkpoints: the complete training state in one binary file.
///
/// Format (all integers and floats little-endian):
///
///     "FLOWRTCK"  magic (8 bytes)       u32 version = 1
///     u64 step    u64 seed              u64 batch size
///     f64 × 4     last train G, R; last held-out G, R (NaN when absent)
///     f64         last learning rate
///     u32 P       parameters, then per parameter:
///        u32 name length, UTF-8 name, u8 trainable, u32 rank, u64 × rank shape,
///        f32 × count values; if trainable: f32 × count each for Adam m, Adam v, EMA
///     u32         CRC-32 of every preceding byte
///
/// Data, configuration and the base are not stored: resume by creating a
/// trainer with the same ones and loading, and the continuation is
/// bit-identical to an uninterrupted run (every random draw is keyed by the
/// seed and the step). Files are written to a temporary name and renamed.
extension Trainer {
    static let checkpointMagic = Array("FLOWRTCK".utf8)

    /// Saves the training state to `path` (atomically).
    /// - Throws: `.io` when the file cannot be written.
    /// - Cost: O(parameters); about 16 bytes per trainable scalar.
    public func saveCheckpoint(to path: String) throws {
        var w = ByteWriter()
        w.bytes(Self.checkpointMagic)
        w.u32(1)
        w.u64(UInt64(stepCount)); w.u64(configuration.seed); w.u64(UInt64(configuration.batchSize))
        for v in [lastLoss?.quadratic, lastLoss?.regression, lastHeldOutLoss?.quadratic, lastHeldOutLoss?.regression] {
            w.f64(v ?? .nan)
        }
        w.f64(lastLearningRate)
        let params = rawParameters
        w.u32(UInt32(params.count))
        for (i, p) in params.enumerated() {
            let name = Array(p.name.utf8)
            w.u32(UInt32(name.count)); w.bytes(name)
            w.u8(p.isTrainable ? 1 : 0)
            w.u32(UInt32(p.tensor.shape.count))
            for e in p.tensor.shape { w.u64(UInt64(e)) }
            w.floats(p.tensor.scalars)
            if let a = trainable.firstIndex(of: i) {
                w.floats(state.slice(state.firstMoment, a)); w.floats(state.slice(state.secondMoment, a))
                w.floats(state.slice(state.ema, a))
            }
        }
        w.u32(Checksum.crc32(w.data))
        try FileIO.writeAtomically(w.data, to: path)
    }

    /// Restores a state saved by `saveCheckpoint` into this trainer, whose
    /// network must have the same parameters (names, shapes, trainability).
    /// - Throws: `.io` for unreadable files; `.invalidModel` for a file that
    ///   is not a checkpoint, is truncated or corrupt (CRC mismatch);
    ///   `.shapeMismatch` when its parameters do not match the network's.
    ///   On error the trainer is unchanged.
    public func loadCheckpoint(from path: String) throws {
        let bytes = try FileIO.read(path)
        guard bytes.count >= 12, Array(bytes.prefix(8)) == Self.checkpointMagic else {
            throw FlowError.invalidModel("'\(path)' is not a FlowRuntime checkpoint")
        }
        var r = ByteReader(bytes: bytes[..<(bytes.count - 4)], path: path)
        var crcReader = ByteReader(bytes: bytes[(bytes.count - 4)...], path: path)
        guard try crcReader.u32() == Checksum.crc32(bytes[..<(bytes.count - 4)]) else {
            throw FlowError.invalidModel("checkpoint '\(path)' is corrupt (CRC mismatch)")
        }
        _ = try r.bytes(8)
        let version = try r.u32()
        guard version == 1 else { throw FlowError.unsupported("checkpoint '\(path)' has version \(version); this library reads version 1") }
        let step = try r.u64()
        // Steps stay exact as Doubles (learning-rate schedules) and far from
        // Int overflow in step arithmetic (found by the checkpoint fuzzer).
        guard step <= 1 << 53 else {
            throw FlowError.invalidModel("checkpoint '\(path)' has step \(step), above 2^53")
        }
        _ = try r.u64(); _ = try r.u64()  // seed and batch size: informational
        let losses = try (0..<4).map { _ in try r.f64() }
        let lr = try r.f64()
        let template = graph.parameters
        guard try Int(r.u32()) == template.count else {
            throw FlowError.shapeMismatch("checkpoint '\(path)' has a different number of parameters than the network")
        }
        var values: [[Float]] = [], moments1: [[Float]] = [], moments2: [[Float]] = [], averages: [[Float]] = []
        for p in template {
            let name = String(decoding: try r.bytes(Int(try r.u32())), as: UTF8.self)
            let isTrainable = try r.u8() != 0
            let rank = Int(try r.u32())
            guard rank <= 64 else { throw FlowError.invalidModel("checkpoint '\(path)': absurd rank \(rank)") }
            let shape = try (0..<rank).map { _ in Int(truncatingIfNeeded: try r.u64()) }
            guard name == p.name, shape == p.tensor.shape, isTrainable == p.isTrainable else {
                throw FlowError.shapeMismatch(
                    "checkpoint '\(path)': parameter '\(name)' \(shape) does not match the network's '\(p.name)' \(p.tensor.shape)")
            }
            let n = p.tensor.count
            values.append(try r.floats(n))
            if isTrainable {
                moments1.append(try r.floats(n)); moments2.append(try r.floats(n)); averages.append(try r.floats(n))
            }
        }
        guard r.isAtEnd else { throw FlowError.invalidModel("checkpoint '\(path)' has trailing bytes") }
        // Commit only after everything parsed.
        for (i, v) in values.enumerated() {
            differentiator.withParameter(i) { dst in v.withUnsafeBufferPointer { dst.baseAddress!.update(from: $0.baseAddress!, count: v.count) } }
        }
        for a in moments1.indices {
            _ = state.slice(state.firstMoment, a).update(fromContentsOf: moments1[a])
            _ = state.slice(state.secondMoment, a).update(fromContentsOf: moments2[a])
            _ = state.slice(state.ema, a).update(fromContentsOf: averages[a])
        }
        stepCount = Int(step)
        lastLoss = losses[0].isNaN ? nil : LossReport(quadratic: losses[0], regression: losses[1])
        lastHeldOutLoss = losses[2].isNaN ? nil : LossReport(quadratic: losses[2], regression: losses[3])
        heldOutStep = -1
        lastLearningRate = lr
        cachedModel = nil
    }
}

/// Little-endian serialisation into a byte array.
struct ByteWriter {
    var data: [UInt8] = []
    mutating func bytes(_ b: [UInt8]) { data += b }
    mutating func u8(_ v: UInt8) { data.append(v) }
    mutating func u32(_ v: UInt32) { for s in stride(from: 0, to: 32, by: 8) { data.append(UInt8((v >> UInt32(s)) & 0xFF)) } }
    mutating func u64(_ v: UInt64) { for s in stride(from: 0, to: 64, by: 8) { data.append(UInt8((v >> UInt64(s)) & 0xFF)) } }
    mutating func f64(_ v: Double) { u64(v.bitPattern) }
    mutating func floats<C: Collection>(_ v: C) where C.Element == Float {
        data.reserveCapacity(data.count + 4 * v.count)
        for x in v { u32(x.bitPattern) }
    }
}

/// Bounds-checked little-endian reading; running past the end is `.invalidModel`.
struct ByteReader {
    let bytes: ArraySlice<UInt8>
    let path: String
    var offset: Int

    init(bytes: ArraySlice<UInt8>, path: String) {
        self.bytes = bytes
        self.path = path
        offset = bytes.startIndex
    }

    var isAtEnd: Bool { offset == bytes.endIndex }

    mutating func bytes(_ n: Int) throws -> ArraySlice<UInt8> {
        guard n >= 0, bytes.endIndex - offset >= n else {
            throw FlowError.invalidModel("'\(path)' is truncated at byte \(offset - bytes.startIndex)")
        }
        defer { offset += n }
        return bytes[offset..<(offset + n)]
    }
    mutating func u8() throws -> UInt8 { try bytes(1).first! }
    mutating func u32() throws -> UInt32 {
        try bytes(4).enumerated().reduce(0) { $0 | UInt32($1.element) << UInt32(8 * $1.offset) }
    }
    mutating func u64() throws -> UInt64 {
        try bytes(8).enumerated().reduce(0) { $0 | UInt64($1.element) << UInt64(8 * $1.offset) }
    }
    mutating func f64() throws -> Double { Double(bitPattern: try u64()) }
    mutating func floats(_ n: Int) throws -> [Float] {
        guard n >= 0, n <= (bytes.endIndex - offset) / 4 else {
            throw FlowError.invalidModel("'\(path)' is truncated at byte \(offset - bytes.startIndex)")
        }
        var out = [Float](repeating: 0, count: n)
        for i in 0..<n { out[i] = Float(bitPattern: try u32()) }
        return out
    }
}
