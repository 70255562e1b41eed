import CKernels
import XCTest
@testable import FlowRuntime

/// The packed Linear kernel (`fr_gemm_packed`, AVX-512) against the unpacked
/// path (`fr_gemm_small` / OpenBLAS) on the same graphs.
///
/// Tolerances: both paths sum the same float32 products in different orders,
/// so outputs agree to a few ulps of the sum of |terms|; 2e-5 relative to the
/// largest output is ~100× that, yet a wrong weight, panel offset, mask or
/// bias is off by O(1). Batch independence is exact: the packed kernel sums
/// every output in one fixed order whatever the batch.
final class PackedKernelTests: XCTestCase {
    func random(_ shape: [Int], seed: UInt64, scale: Double = 1) -> Tensor {
        var r = RandomStream(seed: seed, purpose: .custom, index: 0)
        return Tensor(shape: shape, scalars: (0..<shape.elementCount).map { _ in Float(r.nextNormal() * scale) })
    }

    /// x → [x, t] → Linear(width, SiLU) → MatMul-layout Linear(width2, tanh) → Linear(d).
    func graph(dim: Int, width: Int, width2: Int, seed: UInt64) throws -> Graph {
        var b = GraphBuilder(dimension: dim)
        let xt = try b.concat([b.x, b.t])
        let h = try b.linear(xt, weight: random([width, dim + 1], seed: seed, scale: 0.7),
                             bias: random([width], seed: seed + 1, scale: 0.3), activation: .silu, name: "a")
        let w2 = b.parameter("b.weight", random([width, width2], seed: seed + 2, scale: 0.3))
        let h2 = try b.apply(.linear(weightTransposed: false, activation: .tanh), [h, w2], name: "b")
        let out = try b.linear(h2, weight: random([dim, width2], seed: seed + 3, scale: 0.5),
                               bias: random([dim], seed: seed + 4, scale: 0.1), name: "c")
        return try b.finish(output: out)
    }

    func testPackedMatchesUnpackedAndIsBatchIndependent() throws {
        try XCTSkipUnless(PackedWeights.available, "no AVX-512F: the packed kernel is not used on this CPU")
        for (dim, width, width2) in [(2, 256, 256), (3, 17, 33), (1, 15, 16), (5, 100, 1), (2, 40, 257)] {
            let g = try graph(dim: dim, width: width, width2: width2, seed: UInt64(width))
            let packed = try Model(graph: g)
            let plain = try Model(graph: g, packWeights: false)
            XCTAssertTrue(packed.plan.parameters.packed.contains { $0 != nil }, "nothing was packed")
            let n = 300
            let x = random([n, dim], seed: 7)
            let t = (0..<n).map { Double($0 % 17) / 16 }
            let vp = packed.velocity(t: t, x: x).scalars
            let vu = plain.velocity(t: t, x: x).scalars
            let scale = vu.map { abs($0) }.max()!
            let worst = zip(vp, vu).map { abs($0 - $1) }.max()!
            XCTAssertLessThan(worst, 2e-5 * scale, "packed vs unpacked, widths \(width)/\(width2)")
            // Each row alone, and inside batches of other sizes, is bitwise the batch-300 row.
            for batch in [1, 3, 8, 13, 16, 33] {
                for start in stride(from: 0, to: n - batch, by: 97) {
                    let sub = Tensor(shape: [batch, dim], scalars: Array(x.scalars[(start * dim)..<((start + batch) * dim)]))
                    let v = packed.velocity(t: Array(t[start..<(start + batch)]), x: sub).scalars
                    XCTAssertEqual(v, Array(vp[(start * dim)..<((start + batch) * dim)]),
                                   "rows \(start)..<\(start + batch) depend on their batch (widths \(width)/\(width2))")
                }
            }
            // Divergence (JVP through the packed kernel) against the unpacked path.
            let dp = packed.divergence(t: Array(t[0..<20]), x: Tensor(shape: [20, dim], scalars: Array(x.scalars[0..<(20 * dim)])))
            let du = plain.divergence(t: Array(t[0..<20]), x: Tensor(shape: [20, dim], scalars: Array(x.scalars[0..<(20 * dim)])))
            for (a, b) in zip(dp, du) { XCTAssertEqual(a, b, accuracy: 2e-5 * max(1, abs(b)), "divergence, widths \(width)/\(width2)") }
        }
    }

    /// A trainer's parameter updates reach the packed copies (the reference
    /// is an unpacked model with the updated weights).
    func testDifferentiatorRepacksAfterUpdates() throws {
        let g = try graph(dim: 2, width: 32, width2: 24, seed: 3)
        let diff = try GraphDifferentiator(graph: g)
        XCTAssertEqual(diff.store.packed.contains { $0 != nil }, PackedWeights.available)
        for p in diff.trainableIndices { diff.withParameter(p) { w in for i in w.indices { w[i] *= -1.5 } } }
        var updatedGraph = g
        updatedGraph.parameters = diff.parameters
        let updated = try Model(graph: updatedGraph, packWeights: false)
        let x = random([5, 2], seed: 9)
        let t = [0.1, 0.3, 0.5, 0.7, 0.9]
        let ws = GraphWorkspace()
        let out = t.withUnsafeBufferPointer { tb in x.scalars.withUnsafeBufferPointer { xb in
            Array(UnsafeBufferPointer(start: diff.forward(times: tb, points: xb.baseAddress!, workspace: ws), count: 10))
        } }
        let expected = updated.velocity(t: t, x: x).scalars
        for (a, b) in zip(out, expected) { XCTAssertEqual(a, b, accuracy: 2e-5 * max(1, abs(b))) }
    }

    /// A 3×3 convolution's Winograd-transformed kernels (the store's derived
    /// weights) follow a trainer's updates, and the Winograd path agrees with
    /// the direct one (an unpacked store) within the packed tolerance, each
    /// sample the same bits in any batch.
    func testWinogradConvolutionFollowsWeightUpdates() throws {
        try XCTSkipUnless(PackedWeights.available, "no AVX-512F: convolutions stay direct")
        var b = GraphBuilder(sampleShape: [16, 5, 6])
        let w = b.parameter("conv.weight", random([16, 16, 3, 3], seed: 21, scale: 0.25))
        let bias = b.parameter("conv.bias", random([16], seed: 22, scale: 0.1))
        let y = try b.apply(.conv(kernel: [3, 3], strides: [1, 1], padsBegin: [1, 1], padsEnd: [1, 1], dilations: [1, 1],
                                  groups: 1), [b.x, w, bias])
        let g = try b.finish(output: y)
        let d = 16 * 5 * 6, n = 5
        let x = random([n, d], seed: 23)
        let t = [0.1, 0.3, 0.5, 0.7, 0.9]
        func agree(_ got: [Float], _ expected: [Float], _ what: String) {
            let scale = expected.map { abs($0) }.max()!
            let worst = zip(got, expected).map { abs($0 - $1) }.max()!
            XCTAssertLessThan(worst, 2e-5 * scale, what)
        }
        let winograd = try Model(graph: g), direct = try Model(graph: g, packWeights: false)
        XCTAssertNotNil(winograd.plan.parameters.derived[0])
        XCTAssertNil(direct.plan.parameters.derived[0])
        XCTAssertTrue(winograd.convolutionAlgorithms == (0, 1) && direct.convolutionAlgorithms == (1, 0))
        let all = winograd.velocity(t: t, x: x).scalars
        agree(all, direct.velocity(t: t, x: x).scalars, "Winograd vs direct")
        for s in 0..<n {
            let one = winograd.velocity(t: [t[s]], x: Tensor(shape: [1, d], scalars: Array(x.scalars[(s * d)..<((s + 1) * d)])))
            XCTAssertEqual(one.scalars, Array(all[(s * d)..<((s + 1) * d)]), "sample \(s) alone differs from its batch")
        }

        let diff = try GraphDifferentiator(graph: g)
        for p in diff.trainableIndices { diff.withParameter(p) { w in for i in w.indices { w[i] = -1.5 * w[i] + 0.01 } } }
        var updatedGraph = g
        updatedGraph.parameters = diff.parameters
        let expected = try Model(graph: updatedGraph, packWeights: false).velocity(t: t, x: x).scalars
        let ws = GraphWorkspace()
        let out = t.withUnsafeBufferPointer { tb in x.scalars.withUnsafeBufferPointer { xb in
            Array(UnsafeBufferPointer(start: diff.forward(times: tb, points: xb.baseAddress!, workspace: ws), count: n * d))
        } }
        agree(out, expected, "Winograd after an update vs direct with the updated weights")
    }

    /// One weight tensor used by two Linear nodes in both layouts (a square
    /// W as x·Wᵀ and as x·W): both packed copies follow an update.
    func testTiedWeightInBothLayoutsIsRepacked() throws {
        var b = GraphBuilder(dimension: 20)
        let w = b.parameter("tied", random([20, 20], seed: 4, scale: 0.3))
        let h = try b.apply(.linear(weightTransposed: true, activation: .tanh), [b.x, w], name: "a")
        let y = try b.apply(.linear(weightTransposed: false, activation: .identity), [h, w], name: "b")
        let g = try b.finish(output: y)
        let diff = try GraphDifferentiator(graph: g)
        for p in diff.trainableIndices { diff.withParameter(p) { w in for i in w.indices { w[i] = w[i] * 0.5 + 0.01 } } }
        var updatedGraph = g
        updatedGraph.parameters = diff.parameters
        let expected = try Model(graph: updatedGraph, packWeights: false)
        let x = random([3, 20], seed: 5)
        let t = [0.2, 0.4, 0.6]
        let ws = GraphWorkspace()
        let out = t.withUnsafeBufferPointer { tb in x.scalars.withUnsafeBufferPointer { xb in
            Array(UnsafeBufferPointer(start: diff.forward(times: tb, points: xb.baseAddress!, workspace: ws), count: 60))
        } }
        for (a, e) in zip(out, expected.velocity(t: t, x: x).scalars) { XCTAssertEqual(a, e, accuracy: 2e-5 * max(1, abs(e))) }
    }

    /// The kernel alone, bitwise against a fused-multiply-add reference in the
    /// promised order, on every tile shape and panel tail, with canaries
    /// around the output to catch a stray masked lane.
    func testKernelAgainstFMAReference() throws {
        try XCTSkipUnless(PackedWeights.available, "no AVX-512F")
        var rng = RandomStream(seed: 77, purpose: .custom, index: 0)
        let canary: Float = -12345.5
        for inOut in [false, true] {
            for m in [0, 1, 2, 3, 4, 7, 8, 9, 12, 15, 16, 17, 33] {
                for outDim in [1, 15, 16, 17, 31, 33, 127, 129, 257] {
                    for inDim in [1, 2, 17] {
                        for withBias in [false, true] {
                            let w = (0..<(outDim * inDim)).map { _ in Float(rng.nextNormal()) }
                            let x = (0..<(m * inDim)).map { _ in Float(rng.nextNormal()) }
                            let bias = (0..<outDim).map { _ in Float(rng.nextNormal()) }
                            var wp = [Float](repeating: .nan, count: fr_packed_count(outDim, inDim))
                            fr_pack_weights(w, inOut ? 1 : 0, &wp, outDim, inDim)
                            var y = [Float](repeating: canary, count: m * outDim + 32)
                            y.withUnsafeMutableBufferPointer { yb in
                                fr_gemm_packed(x, wp, withBias ? bias : nil, yb.baseAddress! + 16, m, outDim, inDim)
                            }
                            let shape = "m \(m) out \(outDim) in \(inDim) bias \(withBias) [in,out] \(inOut)"
                            XCTAssertTrue(y[..<16].allSatisfy { $0 == canary } && y[(16 + m * outDim)...].allSatisfy { $0 == canary },
                                          "wrote outside y: \(shape)")
                            var mismatches = 0
                            for r in 0..<m {
                                for j in 0..<outDim {
                                    var s: Float = withBias ? bias[j] : 0
                                    for k in 0..<inDim {
                                        s = s.addingProduct(x[r * inDim + k], inOut ? w[k * outDim + j] : w[j * inDim + k])
                                    }
                                    if s.bitPattern != y[16 + r * outDim + j].bitPattern { mismatches += 1 }
                                }
                            }
                            XCTAssertEqual(mismatches, 0, shape)
                        }
                    }
                }
            }
        }
    }

    /// Packing pads outputs to 16; a thin, long layer (out = 1, in = 2^21)
    /// is left unpacked rather than allocating 16× its weights, and still runs.
    func testThinHugeLayerIsNotPacked() throws {
        var b = GraphBuilder(dimension: 1)
        let inDim = 1 << 21
        let w = Tensor(shape: [inDim, 1], scalars: (0..<inDim).map { Float($0 % 7) - 3 })
        let h = try b.linear(b.x, weight: w, bias: nil, name: "wide")
        let out = try b.linear(h, weight: Tensor(shape: [1, inDim], scalars: [Float](repeating: 1e-3, count: inDim)),
                               bias: nil, name: "thin")
        let model = try Model(graph: try b.finish(output: out))
        let packed = model.plan.parameters.packed
        if PackedWeights.available { XCTAssertNotNil(packed[0], "the [2^21, 1] layer pads nothing and is packed") }
        XCTAssertNil(packed[1], "the [1, 2^21] layer would pad 16× and must stay unpacked")
        // v = 1e-3 Σ_k (k mod 7 − 3) x: exact in float for x = 1 up to rounding of the sum.
        let v = model.velocity(t: [0.5], x: Tensor(shape: [1, 1], scalars: [1])).scalars[0]
        let exact = (0..<inDim).reduce(0.0) { $0 + Double($1 % 7 - 3) } * 1e-3
        XCTAssertEqual(Double(v), exact, accuracy: 1e-2)
    }
}
