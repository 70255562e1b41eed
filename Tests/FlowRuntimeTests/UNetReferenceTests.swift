import XCTest
@testable import FlowRuntime

/// The reference velocities of a small VelocityUNet that the C ABI
/// (bindings/c/tests/test_images.c) and Python (`flowrt.Model.unet`,
/// bindings/python/tests/test_unet.py) check too: all three must build the
/// same network from the same seed.
final class UNetReferenceTests: XCTestCase {
    /// 1×8×8, 8 model channels, levels {1, 2}, attention at 4×4, 2 heads, 4 groups, seed 7.
    static let unet = VelocityUNet(channels: 1, height: 8, width: 8, modelChannels: 8, channelMultipliers: [1, 2],
                                   resBlocksPerLevel: 1, attentionResolutions: [4], heads: 2, groups: 4, seed: 7)

    static let parameters = 44969
    static let sum = -23.628059870
    static let absSum = 48.409095897
    static let values: [Double] = [-0.0625377595, 0.3249340951, 0.0183506627, -0.1670029312]  // v[0], v[63], v[64], v[127]

    /// x[i] = sin(0.37 i) over the batch of 2, t = {0.25, 0.75}.
    static func referenceVelocities() throws -> (Model, [Float]) {
        let model = try unet.makeModel()
        let x = Tensor(shape: [2, 64], scalars: (0..<128).map { Float(sin(0.37 * Double($0))) })
        return (model, model.velocity(t: [0.25, 0.75], x: x, context: nil).scalars)
    }

    func testSmallUNetReproducesTheRecordedVelocities() throws {
        let (model, v) = try Self.referenceVelocities()
        print(String(format: "UNet reference: parameters %d sum %.9f abs sum %.9f v %.9f %.9f %.9f %.9f",
                     model.parameterCount, v.reduce(0.0) { $0 + Double($1) }, v.reduce(0.0) { $0 + Double(abs($1)) },
                     v[0], v[63], v[64], v[127]))
        XCTAssertEqual(model.parameterCount, Self.parameters)
        XCTAssertEqual(model.sampleShape, [1, 8, 8])
        XCTAssertEqual(v.reduce(0.0) { $0 + Double($1) }, Self.sum, accuracy: 1e-4 * (1 + abs(Self.sum)))
        XCTAssertEqual(v.reduce(0.0) { $0 + Double(abs($1)) }, Self.absSum, accuracy: 1e-4 * Self.absSum)
        for (got, want) in zip([v[0], v[63], v[64], v[127]], Self.values) { XCTAssertEqual(Double(got), want, accuracy: 1e-5) }
    }
}
