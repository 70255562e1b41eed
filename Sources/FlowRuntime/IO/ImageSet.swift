#if canImport(Glibc)
import Glibc
#endif

extension PixelArray {
    /// Samples `range` (along the first axis) as a new array.
    /// - Precondition: `range` lies in `0..<count`; rank ≥ 1.
    public func samples(_ range: Range<Int>) -> PixelArray {
        precondition(!shape.isEmpty && range.lowerBound >= 0 && range.upperBound <= count, "samples \(range) of \(count)")
        let per = shape.dropFirst().reduce(1, *)
        return PixelArray(shape: [range.count] + shape.dropFirst(), bytes: Array(bytes[(range.lowerBound * per)..<(range.upperBound * per)]))
    }
}

/// Dequantized 8-bit images as an unlimited `SampleSource` for training:
/// sample k draws image i = `RandomStream(seed, .minibatch, k)`'s
/// `nextInt(below: n)` and dequantizes it with sample k's own noise,
/// `RandomStream(seed, ImageData.dequantizationStream, k)` (the formula of
/// `ImageData.dequantize`), so every epoch sees fresh noise and sample k
/// depends on (seed, k) only, whatever the batching or thread count.
public struct DequantizedImages: SampleSource {
    /// The images, `[n, H, W]` or `[n, C, H, W]`.
    public let images: PixelArray
    /// `[C, H, W]`.
    public let sampleShape: [Int]
    /// C·H·W.
    public let dimension: Int

    /// - Throws: `.shapeMismatch` for another rank, `.invalidArgument` for no images.
    public init(_ images: PixelArray) throws {
        sampleShape = try images.sampleShape()
        guard images.count > 0 else { throw FlowError.invalidArgument("no images") }
        self.images = images
        dimension = sampleShape.reduce(1, *)
    }

    public func sample(seed: UInt64, firstIndex: UInt64, into samples: UnsafeMutableBufferPointer<Float>) {
        let d = dimension, n = images.count, below1 = Float(1).nextDown
        images.bytes.withUnsafeBufferPointer { pixels in
            for row in 0..<(samples.count / d) {
                let k = firstIndex &+ UInt64(row)
                var pick = RandomStream(seed: seed, purpose: .minibatch, index: k)
                let i = pick.nextInt(below: n)
                var rng = RandomStream(seed: seed, stream: ImageData.dequantizationStream, index: k)
                for j in 0..<d {
                    let z = Double(pixels[i * d + j]) + rng.nextUniform()
                    samples[row * d + j] = Swift.min(Float(z / 128 - 1), below1)
                }
            }
        }
    }
}

extension TrainingData {
    /// Training data from 8-bit images `[n, H, W]` or `[n, C, H, W]`, the
    /// form every image front end shares (CLI, C, Python): the last
    /// `heldOut` images form the held-out set, dequantized once with seed
    /// `seed &+ 0xDE0`; batch `s` of training holds samples
    /// `s·batchSize ..< (s+1)·batchSize` of `DequantizedImages` over the
    /// other images with seed `seed &+ 0x1_0000_0001` (fresh noise per
    /// sample, independent of batching and thread count).
    /// - Throws: `.shapeMismatch` for another rank, `.invalidArgument` when
    ///   no training image is left or `batchSize` < 1.
    /// - Returns: the data and the number of training images.
    public static func images(_ images: PixelArray, heldOut: Int, seed: UInt64,
                              batchSize: Int) throws -> (data: TrainingData, trainingCount: Int) {
        _ = try images.sampleShape()
        guard batchSize >= 1 else { throw FlowError.invalidArgument("batch size \(batchSize) must be ≥ 1") }
        guard heldOut >= 0, heldOut < images.count else {
            throw FlowError.invalidArgument("\(images.count) image(s) with \(heldOut) held out leave none for training")
        }
        let trainCount = images.count - heldOut
        let source = try DequantizedImages(images.samples(0..<trainCount))
        let held = heldOut > 0 ? try ImageData.dequantize(images.samples(trainCount..<images.count), seed: seed &+ 0xDE0).scalars : []
        let dataSeed = seed &+ 0x1_0000_0001
        let data = TrainingData.stream({ step, buffer in
            source.sample(seed: dataSeed, firstIndex: UInt64(step) &* UInt64(batchSize), into: buffer)
        }, heldOut: held)
        return (data, trainCount)
    }
}

/// Fashion-MNIST (Xiao et al. 2017: 60,000 training and 10,000 test 28×28
/// grayscale images of 10 clothing classes) from Debian's
/// `dataset-fashion-mnist` package, read with `ImageData.read` (gzip IDX).
public enum FashionMNIST {
    /// Where Debian installs the files; `FLOWRT_FASHION_MNIST_DIR` overrides it.
    public static var directory: String {
        if let p = getenv("FLOWRT_FASHION_MNIST_DIR") { return String(cString: p) }
        return "/usr/share/datasets/fashion-mnist"
    }

    /// The official split: `train` (60,000) or `test` (10,000).
    public enum Split: String, Sendable { case train, test }

    /// Path of the images (`labels: false`) or labels of a split, the first
    /// of `<prefix>-{images-idx3,labels-idx1}-ubyte[.gz]` that exists.
    public static func path(_ split: Split, labels: Bool = false) -> String {
        let prefix = split == .train ? "train" : "t10k"
        let base = "\(directory)/\(prefix)-\(labels ? "labels-idx1" : "images-idx3")-ubyte"
        return access(base, R_OK) == 0 ? base : base + ".gz"
    }

    /// The images of a split, `[n, 28, 28]`.
    /// - Throws: `.io` naming the file and the Debian package when it is missing.
    public static func images(_ split: Split) throws -> PixelArray {
        let p = path(split)
        guard access(p, R_OK) == 0 else {
            throw FlowError.io("Fashion-MNIST not found at \(p): install Debian's dataset-fashion-mnist (`make deps` does) or set FLOWRT_FASHION_MNIST_DIR")
        }
        return try ImageData.read(path: p)
    }

    /// The labels (0...9) of a split, `[n]`.
    public static func labels(_ split: Split) throws -> PixelArray { try ImageData.read(path: path(split, labels: true)) }
}

extension ImageData {
    /// The Euclidean distance from each query row to its nearest reference
    /// row (for the nearest-training-neighbour check: are samples copies?).
    /// - Parameters:
    ///   - queries: `[m, d]` row-major. - references: `[n, d]`, n ≥ 1.
    /// - Returns: m distances, and the index of each nearest reference.
    /// - Complexity: m·n·d multiply-adds (BLAS), references in blocks of 4096.
    public static func nearestNeighbours(queries: [Float], references: [Float], dimension d: Int) -> (distances: [Double], indices: [Int]) {
        precondition(d > 0 && queries.count % d == 0 && references.count % d == 0 && !references.isEmpty)
        let m = queries.count / d, n = references.count / d
        var best = [Double](repeating: .infinity, count: m), index = [Int](repeating: -1, count: m)
        let qNorm = (0..<m).map { i in (0..<d).reduce(0.0) { $0 + Double(queries[i * d + $1]) * Double(queries[i * d + $1]) } }
        let block = 4096
        var dots = [Float](repeating: 0, count: m * block)
        queries.withUnsafeBufferPointer { q in
            references.withUnsafeBufferPointer { r in
                for start in stride(from: 0, to: n, by: block) {
                    let count = Swift.min(block, n - start)
                    dots.withUnsafeMutableBufferPointer { c in
                        BLAS.gemm(transB: true, m: m, n: count, k: d, a: q.baseAddress!, b: r.baseAddress! + start * d,
                                  c: c.baseAddress!)
                    }
                    for j in 0..<count {
                        var rn = 0.0
                        for k in 0..<d { let v = Double(r[(start + j) * d + k]); rn += v * v }
                        for i in 0..<m {
                            let dist2 = qNorm[i] + rn - 2 * Double(dots[i * count + j])
                            if dist2 < best[i] { best[i] = dist2; index[i] = start + j }
                        }
                    }
                }
            }
        }
        return (best.map { Swift.max(0, $0).squareRoot() }, index)
    }
}

/// Sample grids as PNG images: images `[C, H, W]` in the scaled range
/// [−1, 1] (pixel = ⌊(y + 1)·128⌋ clamped to 0...255), laid out row by row
/// with `padding` white pixels between them. One channel is grayscale,
/// three are RGB; otherwise the first channel is shown.
public enum ImageGrid {
    /// - Parameters:
    ///   - values: `[n, C·H·W]` row-major, n ≤ rows·columns (missing cells stay white).
    ///   - shape: `[C, H, W]`.
    /// - Precondition: sizes consistent; the image fits PNGImage's limits.
    public static func image(_ values: [Float], shape: [Int], rows: Int, columns: Int, padding: Int = 2) -> PNGImage {
        precondition(shape.count == 3 && rows > 0 && columns > 0 && padding >= 0)
        let (c, h, w) = (shape[0], shape[1], shape[2]), d = c * h * w
        precondition(values.count % d == 0 && values.count / d <= rows * columns)
        var png = PNGImage(width: columns * (w + padding) + padding, height: rows * (h + padding) + padding)
        func byte(_ y: Float) -> UInt8 {
            guard y.isFinite else { return y > 0 ? 255 : 0 }
            return UInt8(Swift.max(0, Swift.min(255, ((y + 1) * 128).rounded(.down))))
        }
        for k in 0..<(values.count / d) {
            let x0 = padding + (k % columns) * (w + padding), y0 = padding + (k / columns) * (h + padding)
            for y in 0..<h {
                for x in 0..<w {
                    let p = k * d + y * w + x
                    if c == 3 {
                        png.set(x: x0 + x, y: y0 + y, (byte(values[p]), byte(values[p + h * w]), byte(values[p + 2 * h * w])))
                    } else {
                        let g = byte(values[p])
                        png.set(x: x0 + x, y: y0 + y, (g, g, g))
                    }
                }
            }
        }
        return png
    }

    /// A grid of 8-bit images `[n, H, W]` / `[n, C, H, W]` shown as they are.
    public static func image(_ pixels: PixelArray, rows: Int, columns: Int, padding: Int = 2) throws -> PNGImage {
        let shape = try pixels.sampleShape()
        return image(pixels.bytes.map { Float($0) / 128 - 1 }, shape: shape, rows: rows, columns: columns, padding: padding)
    }
}
