import CKernels
import XCTest
@testable import FlowRuntime

/// The bf16 evaluation path (`Precision`) against float32 on the same models.
///
/// Tolerances: a bf16 Linear layer rounds its input and weights to 8
/// significant bits, so each output moves by up to ~2^-8 of Σ|x_k·W_jk|;
/// through the 4 wide layers of these MLPs, velocities move by well under
/// 3e-2 of the largest |v| (measured ~5e-3), while a wrong panel, pair or
/// mask is off by O(1). A test also checks that bf16 really ran (outputs
/// differ from float32), and the float32 default is compared bit for bit.
final class PrecisionTests: XCTestCase {
    /// A 4 × `width` SiLU MLP on [x, t] for dimension `dim`.
    func mlp(dim: Int = 2, width: Int = 512, seed: UInt64 = 3) throws -> Model {
        try VelocityMLP(dimension: dim, hiddenWidths: Array(repeating: width, count: 4), seed: seed).makeModel()
    }

    func points(_ n: Int, _ d: Int, seed: UInt64) -> Tensor {
        var r = RandomStream(seed: seed, purpose: .custom, index: 0)
        return Tensor(shape: [n, d], scalars: (0..<n * d).map { _ in Float(r.nextNormal()) })
    }

    func maxAbs(_ a: [Float]) -> Float { a.map(abs).max() ?? 0 }
    func maxDiff(_ a: [Float], _ b: [Float]) -> Float { zip(a, b).map { abs($0 - $1) }.max() ?? 0 }

    func testBF16VelocityIsCloseToFloat32AndReportsItsPrecision() throws {
        try XCTSkipUnless(Precision.bf16Available, "no AVX512_BF16: bf16 requests run float32 here")
        for (dim, width) in [(2, 512), (5, 257), (3, 33)] {
            let model = try mlp(dim: dim, width: width)
            let n = 301
            let x = points(n, dim, seed: 1), t = (0..<n).map { Double($0) / Double(n - 1) }
            XCTAssertEqual(model.precision, .float32)
            XCTAssertEqual(model.effectivePrecision(), .float32)
            let v32 = model.velocity(t: t, x: x).scalars
            model.setPrecision(.bf16)
            XCTAssertEqual(model.effectivePrecision(), .bf16)
            XCTAssertEqual(model.effectivePrecision(likelihood: true), .float32, "likelihoods stay float32 unless asked")
            let v16 = model.velocity(t: t, x: x).scalars
            let rel = maxDiff(v16, v32) / maxAbs(v32)
            XCTAssertLessThan(rel, 3e-2, "dim \(dim) width \(width): bf16 velocity off by \(rel) of max |v|")
            XCTAssertGreaterThan(rel, 1e-6, "dim \(dim) width \(width): bf16 did not change anything (did it run?)")
            // A row alone gives the same bits as inside the batch.
            let one = model.velocity(t: [t[7]], x: Tensor(shape: [1, dim], scalars: Array(x.scalars[7 * dim..<8 * dim])))
            XCTAssertEqual(one.scalars, Array(v16[7 * dim..<8 * dim]))
            // Back to float32: bit for bit the float32 result.
            model.setPrecision(.float32)
            XCTAssertEqual(model.velocity(t: t, x: x).scalars, v32)
        }
    }

    func testNarrowLayersStayFloat32() throws {
        // Width 16 < bf16MinimumWidth everywhere: nothing to run in bf16.
        let model = try mlp(dim: 2, width: 16)
        let x = points(50, 2, seed: 2), t = [Double](repeating: 0.3, count: 50)
        let v32 = model.velocity(t: t, x: x).scalars
        model.setPrecision(.bf16)
        XCTAssertEqual(model.precision, .bf16)
        XCTAssertEqual(model.effectivePrecision(), .float32)
        XCTAssertEqual(model.velocity(t: t, x: x).scalars, v32)
    }

    func testLikelihoodIsFloat32UnlessAsked() throws {
        try XCTSkipUnless(Precision.bf16Available, "no AVX512_BF16")
        let model = try mlp(dim: 2, width: 256)
        let x = points(64, 2, seed: 4), t = [Double](repeating: 0.5, count: 64)
        let div32 = model.divergence(t: t, x: x)
        model.setPrecision(.bf16)
        XCTAssertEqual(model.divergence(t: t, x: x), div32, "velocity bf16 must not touch likelihood passes")
        model.setPrecision(.bf16, likelihood: true)
        XCTAssertEqual(model.effectivePrecision(likelihood: true), .bf16)
        let div16 = model.divergence(t: t, x: x)
        let scale = div32.map(abs).max()!
        let err = zip(div16, div32).map { abs($0 - $1) }.max()!
        XCTAssertLessThan(err, 5e-2 * scale)
        XCTAssertGreaterThan(err, 0)
    }

    func testWithoutBF16HardwareRequestsRunFloat32() throws {
        let model = try mlp(dim: 2, width: 256)
        let x = points(40, 2, seed: 5), t = [Double](repeating: 0.25, count: 40)
        let v32 = model.velocity(t: t, x: x).scalars
        let previous = fr_bf16_force_unavailable(1)
        defer { _ = fr_bf16_force_unavailable(previous) }
        XCTAssertFalse(Precision.bf16Available)
        model.setPrecision(.bf16)
        XCTAssertEqual(model.precision, .bf16)
        XCTAssertEqual(model.effectivePrecision(), .float32)
        XCTAssertEqual(model.velocity(t: t, x: x).scalars, v32)
    }

    func testBF16SamplingIsCloseAndIndependentOfThreads() throws {
        try XCTSkipUnless(Precision.bf16Available, "no AVX512_BF16")
        let model = try mlp(dim: 2, width: 64, seed: 9)
        let flow = try Flow(field: model)
        var one = SolverOptions.fixed(.rk4, steps: 5)
        one.threads = 1
        var two = one
        two.threads = 2
        let n = 2 * model.preferredChunkSize + 37  // several chunks for the two threads to share
        let s32 = try flow.sample(count: n, seed: 11, solver: one).points.scalars
        model.setPrecision(.bf16)
        let a = try flow.sample(count: n, seed: 11, solver: one).points.scalars
        let b = try flow.sample(count: n, seed: 11, solver: two).points.scalars
        XCTAssertEqual(a, b, "bf16 samples depend on the thread count")
        let rel = maxDiff(a, s32) / maxAbs(s32)
        XCTAssertLessThan(rel, 1e-2)
        XCTAssertGreaterThan(rel, 0)
    }

    func testPrecisionNames() {
        XCTAssertEqual(Precision(name: "bf16"), .bf16)
        XCTAssertEqual(Precision(name: "BFloat16"), .bf16)
        XCTAssertEqual(Precision(name: "float32"), .float32)
        XCTAssertNil(Precision(name: "fp16"))
        XCTAssertNil(Precision(rawValue: 2))
    }

    /// Convolutions under bf16 (`fr_conv2d_forward_bf16`), on torchcfm's
    /// MNIST U-Net exported from PyTorch: velocity and JVP within 3e-2 of
    /// the largest float32 magnitude (measured ~5e-3: ~20 bf16 layers), bf16
    /// really ran, a sample alone gives the batch's bits, and float32 comes
    /// back bit for bit. The first convolution (K = 9) stays float32.
    func testBF16ConvolutionsOnTheTorchcfmUNet() throws {
        try XCTSkipUnless(Precision.bf16Available, "no AVX512_BF16")
        let model = try Model.loadONNX(path: ImageNetworkTests.folder + "/tcfm_unet__dynamo__op21.onnx")
        let d = model.dimension, n = 3
        let x = points(n, d, seed: 6), t = [0.1, 0.5, 0.9]
        let tangent = points(n, d, seed: 7)
        func evaluate() -> (v: [Float], jv: [Float]) {
            var v = [Float](repeating: 0, count: n * d), jv = v
            t.withUnsafeBufferPointer { tb in
                x.scalars.withUnsafeBufferPointer { xb in
                    tangent.scalars.withUnsafeBufferPointer { tg in
                        v.withUnsafeMutableBufferPointer { vb in
                            jv.withUnsafeMutableBufferPointer { jb in
                                model.velocityJVP(times: tb, points: xb, tangents: tg, k: 1, into: vb, products: jb,
                                                  workspace: model.makeWorkspace())
                            }
                        }
                    }
                }
            }
            return (v, jv)
        }
        let v32 = model.velocity(t: t, x: x).scalars, f32 = evaluate()
        model.setPrecision(.bf16)
        XCTAssertEqual(model.effectivePrecision(), .bf16)
        let convs = model.graph.nodes.indices.filter { model.graph.nodes[$0].operation.op is ConvOp }
        let bf16Convs = convs.filter { model.plan.parameters.bf16Weights($0) != nil }
        XCTAssertEqual(convs.count - bf16Convs.count, 2, "all but the first and the output convolution run bf16")
        let v16 = model.velocity(t: t, x: x).scalars
        let rel = maxDiff(v16, v32) / maxAbs(v32)
        XCTAssertLessThan(rel, 3e-2, "bf16 U-Net velocity off by \(rel) of max |v|")
        XCTAssertGreaterThan(rel, 1e-5, "bf16 did not change the U-Net's velocity (did it run?)")
        let one = model.velocity(t: [t[1]], x: Tensor(shape: [1, d], scalars: Array(x.scalars[d..<2 * d])))
        XCTAssertEqual(one.scalars, Array(v16[d..<2 * d]), "a sample alone differs from the batch under bf16")
        XCTAssertEqual(evaluate().jv, f32.jv, "velocity bf16 must not touch the JVP (a likelihood pass)")
        model.setPrecision(.bf16, likelihood: true)
        let f16 = evaluate()
        let jrel = maxDiff(f16.jv, f32.jv) / maxAbs(f32.jv)
        XCTAssertLessThan(jrel, 3e-2, "bf16 U-Net JVP off by \(jrel) of max |Jv|")
        XCTAssertGreaterThan(jrel, 1e-5, "bf16 did not change the U-Net's JVP")
        model.setPrecision(.float32)
        model.setPrecision(.float32, likelihood: true)
        XCTAssertEqual(model.velocity(t: t, x: x).scalars, v32)
    }
}
