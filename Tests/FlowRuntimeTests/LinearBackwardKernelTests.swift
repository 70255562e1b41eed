import CKernels
import XCTest
@testable import FlowRuntime

/// `fr_linear_backward` and `fr_gemm_prepacked_acc` (gemm_backward.c)
/// against a naive Double reference, on shapes with partial row tiles (rows
/// not a multiple of 8), partial panels (widths not a multiple of 16),
/// several k blocks (> 256) and several n blocks (> 256), both weight
/// layouts, g_W's in-place and packed paths, on the AVX-512 and the
/// portable engine.
///
/// Tolerance per element: 2·(K + 1)·2^-24 · (|C₀| + Σ_p |a_p·b_p|), the
/// float32 bound for K multiply-adds onto C₀ (doubled); a wrong index, a
/// missing accumulation or a dropped edge is off by O(|C|).
final class LinearBackwardKernelTests: XCTestCase {
    struct Rng {
        var s: UInt64
        mutating func next() -> Float {
            s = s &* 6364136223846793005 &+ 1442695040888963407
            return Float(Int64(bitPattern: s >> 11) % 2001 - 1000) / 1000
        }
        mutating func array(_ n: Int) -> [Float] { (0..<n).map { _ in next() } }
    }

    func check(_ got: [Float], _ c0: [Float], rows: Int, cols: Int, k: Int,
               _ term: (Int, Int, Int) -> Double, _ label: String) {
        var worst = 0.0
        for i in 0..<rows {
            for j in 0..<cols {
                var exact = Double(c0[i * cols + j]), mag = abs(exact)
                for p in 0..<k { let t = term(i, j, p); exact += t; mag += abs(t) }
                let err = abs(Double(got[i * cols + j]) - exact)
                let tol = 2 * Double(k + 1) * 0x1p-24 * mag
                if err > tol {
                    XCTFail("\(label): [\(i), \(j)] = \(got[i * cols + j]), reference \(exact), error \(err) > \(tol)")
                    return
                }
                worst = max(worst, err / max(mag, 1e-30))
            }
        }
        XCTAssertLessThan(worst, 1e-5, label)
    }

    func run(rows: Int, out: Int, in inDim: Int, inOutLayout: Bool, portable: Bool) {
        let previous = fr_dense_force_portable(portable ? 1 : 0)
        defer { _ = fr_dense_force_portable(previous) }
        let label = "rows \(rows) out \(out) in \(inDim)\(inOutLayout ? " [in, out]" : "")\(portable ? " portable" : "")"
        var rng = Rng(s: UInt64(rows * 131 + out * 17 + inDim))
        let gz = rng.array(rows * out), x = rng.array(rows * inDim), w = rng.array(out * inDim)
        let gx0 = rng.array(rows * inDim), gw0 = rng.array(out * inDim)
        // W[o, i] in either layout.
        func weight(_ o: Int, _ i: Int) -> Double { Double(inOutLayout ? w[i * out + o] : w[o * inDim + i]) }
        var packed = [Float](repeating: .nan, count: fr_linear_backward_packed_floats(out, inDim))
        fr_linear_backward_pack(w, inOutLayout ? 1 : 0, out, inDim, &packed)
        var scratch = [Float](repeating: .nan, count: fr_linear_backward_scratch_floats(rows, out, inDim))
        var gx = gx0, gw = gw0
        fr_linear_backward(gz, x, packed, &gx, &gw, rows, out, inDim, inOutLayout ? 1 : 0, &scratch)
        check(gx, gx0, rows: rows, cols: inDim, k: out, { r, i, o in Double(gz[r * out + o]) * weight(o, i) }, "g_x " + label)
        if inOutLayout {  // g_W [in, out]
            check(gw, gw0, rows: inDim, cols: out, k: rows, { i, o, r in Double(x[r * inDim + i]) * Double(gz[r * out + o]) },
                  "g_W " + label)
        } else {          // g_W [out, in]
            check(gw, gw0, rows: out, cols: inDim, k: rows, { o, i, r in Double(gz[r * out + o]) * Double(x[r * inDim + i]) },
                  "g_W " + label)
        }
        // Each output alone: NULL skips the other and leaves it untouched.
        var gxOnly = gx0, gwOnly = gw0
        fr_linear_backward(gz, x, packed, &gxOnly, nil, rows, out, inDim, inOutLayout ? 1 : 0, &scratch)
        fr_linear_backward(gz, x, nil, nil, &gwOnly, rows, out, inDim, inOutLayout ? 1 : 0, &scratch)
        XCTAssertEqual(gxOnly, gx, label)
        XCTAssertEqual(gwOnly, gw, label)
    }

    func testAgainstNaiveReference() {
        let shapes: [(Int, Int, Int)] = [
            (1, 1, 1), (7, 3, 5), (8, 16, 16), (13, 17, 33), (64, 256, 256), (37, 2, 256), (256, 256, 3),
            (29, 300, 20),   // k = out > 256: two k blocks for g_x
            (19, 40, 530),   // n = in > 256: several n blocks for g_x
            (300, 24, 18),   // k = rows > 256: two k blocks for g_W
            (9, 20, 1030),   // B rows of ≥ 1024 floats: g_W packs them ([out, in] layout)
            (270, 1030, 20), // the same for the [in, out] layout, two k blocks
        ]
        for portable in [false, true] {
            for (rows, out, inDim) in shapes {
                for layout in [false, true] { run(rows: rows, out: out, in: inDim, inOutLayout: layout, portable: portable) }
            }
        }
    }

    /// A row of g_x does not depend on the other rows (nor on m): the
    /// trainer's chunking can change without changing a row's bits.
    func testRowsDoNotDependOnTheBatch() {
        var rng = Rng(s: 5)
        let out = 40, inDim = 35, rows = 21
        let gz = rng.array(rows * out), w = rng.array(out * inDim)
        var packed = [Float](repeating: 0, count: fr_linear_backward_packed_floats(out, inDim))
        fr_linear_backward_pack(w, 0, out, inDim, &packed)
        var all = [Float](repeating: 0.25, count: rows * inDim)
        fr_gemm_prepacked_acc(rows, inDim, out, gz, out, packed, &all, inDim)
        for r in [0, 8, 20] {
            var one = [Float](repeating: 0.25, count: inDim)
            gz.withUnsafeBufferPointer { fr_gemm_prepacked_acc(1, inDim, out, $0.baseAddress! + r * out, out, packed, &one, inDim) }
            XCTAssertEqual(one, Array(all[(r * inDim)..<((r + 1) * inDim)]), "row \(r)")
        }
    }

    /// The trainer's gradient through the new kernel equals the gradient
    /// with OpenBLAS (a store without backward packing) to rounding.
    func testTrainerGradientMatchesTheBLASPath() throws {
        let graph = try VelocityMLP(dimension: 3, hiddenWidths: [40, 33], activation: .silu, seed: 2).makeGraph()
        let data = (0..<600).map { Float(($0 * 29) % 83) / 40 - 1 }
        let config = TrainerConfiguration(batchSize: 90, heldOutFraction: 0, seed: 1, threads: 2, chunkSize: 30)
        let t = try Trainer(graph: graph, data: .samples(data), configuration: config)
        guard PackedWeights.available else { throw XCTSkip("no AVX-512F: the trainer runs on OpenBLAS here") }
        _ = try t.computeGradient(step: 0)
        let fast = t.gradient
        // The same passes on an executor whose store has no backward copies.
        let plain = Executor(plan: t.differentiator.plan, params: ParameterStore(graph))
        XCTAssertNil(plain.params.packedBackward.first { $0 != nil } ?? nil)
        var reference = t.trainable.map { [Double](repeating: 0, count: graph.parameters[$0].tensor.count) }
        let chunks = 3, n = 30
        for c in 0..<chunks {
            let ws = t.chunks[c].workspace
            // Re-run the chunk's recorded forward on the plain executor.
            let v = t.chunks[c].times.withUnsafeBufferPointer { times in
                plain.forward(times: UnsafeBufferPointer(rebasing: times[0..<n]), points: t.chunks[c].points.pointer,
                              batch: n, workspace: ws, record: true)
            }
            // The loss gradient the trainer used.
            let g = UnsafeMutablePointer<Float>.allocate(capacity: n * 3)
            defer { g.deallocate() }
            _ = InterpolantLoss.sums(velocities: UnsafePointer(v), targets: t.chunks[c].targets.pointer, count: n * 3,
                                     gradient: g, gradientScale: 1 / Float(90))
            plain.zeroParameterGradients(ws)
            plain.backward(outputGradient: g, workspace: ws)
            for (a, p) in t.trainable.enumerated() {
                let src = ws.parameterGradients[p].pointer
                for j in reference[a].indices { reference[a][j] += Double(src[j]) }
            }
        }
        for a in reference.indices {
            let scale = max(1e-3, reference[a].map(abs).max()!)
            for j in reference[a].indices {
                XCTAssertEqual(Double(fast[a][j]), reference[a][j], accuracy: 1e-5 * scale, "parameter \(t.trainable[a])[\(j)]")
            }
        }
    }
}
