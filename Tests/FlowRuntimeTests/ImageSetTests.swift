import XCTest
@testable import FlowRuntime

/// Training data, grids and the nearest-neighbour check of image flows
/// (issue 14): `DequantizedImages`, `ImageGrid`, `ImageData.nearestNeighbours`.
final class ImageSetTests: XCTestCase {
    let images = PixelArray(shape: [5, 2, 3], bytes: (0..<30).map { UInt8(($0 * 53 + 7) % 256) })

    func testDequantizedImagesDrawImagesWithTheirOwnNoise() throws {
        let source = try DequantizedImages(images)
        XCTAssertEqual(source.dimension, 6)
        XCTAssertEqual(source.sampleShape, [1, 2, 3])
        let all = source.samples(count: 40, seed: 9, firstIndex: 100)
        var picked = Set<Int>()
        for row in 0..<40 {
            let k = UInt64(100 + row)
            var pick = RandomStream(seed: 9, purpose: .minibatch, index: k)
            let i = pick.nextInt(below: 5)
            picked.insert(i)
            // Image i dequantized exactly as ImageData.dequantize does for sample index k.
            let expected = try ImageData.dequantize(images.samples(i..<(i + 1)), seed: 9, firstIndex: k)
            XCTAssertEqual(Array(all.scalars[(row * 6)..<(row * 6 + 6)]), expected.scalars, "row \(row)")
            for j in 0..<6 {
                let y = all.scalars[row * 6 + j], byte = Float(images.bytes[i * 6 + j])
                XCTAssertTrue(y >= byte / 128 - 1 && y < (byte + 1) / 128 - 1, "row \(row) pixel \(j): \(y) outside its cell")
            }
        }
        XCTAssertEqual(picked.count, 5, "40 draws reach all 5 images")
        // Sample k depends on (seed, k) only: another batching gives the same rows.
        let tail = source.samples(count: 10, seed: 9, firstIndex: 130)
        XCTAssertEqual(tail.scalars, Array(all.scalars[(30 * 6)...]))
        // The same image drawn twice gets different noise.
        XCTAssertNotEqual(source.samples(count: 40, seed: 10, firstIndex: 100).scalars, all.scalars)
        XCTAssertThrowsError(try DequantizedImages(PixelArray(shape: [0, 2, 2], bytes: [])))
        XCTAssertThrowsError(try DequantizedImages(PixelArray(shape: [4], bytes: [1, 2, 3, 4])))
    }

    func testSamplesSlicesTheFirstAxis() {
        let s = images.samples(1..<3)
        XCTAssertEqual(s.shape, [2, 2, 3])
        XCTAssertEqual(s.bytes, Array(images.bytes[6..<18]))
    }

    func testGridMapsValuesToPixels() throws {
        // Two 1×2×2 images in a 1×2 grid with 1 pixel of padding.
        let values: [Float] = [-1, -0.5, 0, 0.99, 1, 2, -3, .nan]
        let png = ImageGrid.image(values, shape: [1, 2, 2], rows: 1, columns: 2, padding: 1)
        XCTAssertEqual(png.width, 7)
        XCTAssertEqual(png.height, 4)
        func gray(_ x: Int, _ y: Int) -> UInt8 {
            let p = (y * png.width + x) * 3
            XCTAssertEqual(png.pixels[p], png.pixels[p + 1]); XCTAssertEqual(png.pixels[p], png.pixels[p + 2])
            return png.pixels[p]
        }
        XCTAssertEqual([gray(1, 1), gray(2, 1), gray(1, 2), gray(2, 2)], [0, 64, 128, 254])
        XCTAssertEqual([gray(4, 1), gray(5, 1), gray(4, 2)], [255, 255, 0])  // clamped
        XCTAssertEqual(gray(0, 0), 255, "padding is white")
        // 8-bit images are shown as they are.
        let pixels = PixelArray(shape: [1, 1, 2], bytes: [17, 200])
        let p2 = try ImageGrid.image(pixels, rows: 1, columns: 1, padding: 0)
        XCTAssertEqual(p2.pixels, [17, 17, 17, 200, 200, 200])
        // Three channels are RGB.
        let rgb = ImageGrid.image([1, 0, -1], shape: [3, 1, 1], rows: 1, columns: 1, padding: 0)
        XCTAssertEqual(rgb.pixels, [255, 128, 0])
    }

    func testNearestNeighboursMatchBruteForce() {
        var rng = RandomStream(seed: 3, purpose: .custom, index: 0)
        let d = 7, m = 5, n = 5000  // more than one block of 4096 references
        let q = (0..<(m * d)).map { _ in Float(rng.nextUniform() * 2 - 1) }
        var r = (0..<(n * d)).map { _ in Float(rng.nextUniform() * 2 - 1) }
        // Query 2 has an exact copy in the second block.
        for j in 0..<d { r[4500 * d + j] = q[2 * d + j] }
        let (dist, index) = ImageData.nearestNeighbours(queries: q, references: r, dimension: d)
        for i in 0..<m {
            var best = Double.infinity, bestIndex = -1
            for k in 0..<n {
                var s = 0.0
                for j in 0..<d { let e = Double(q[i * d + j] - r[k * d + j]); s += e * e }
                if s < best { best = s; bestIndex = k }
            }
            XCTAssertEqual(index[i], bestIndex, "query \(i)")
            XCTAssertEqual(dist[i], best.squareRoot(), accuracy: 3e-3, "query \(i)")
        }
        XCTAssertEqual(index[2], 4500)
        XCTAssertEqual(dist[2], 0, accuracy: 3e-3)
    }
}
