import CKernels
import XCTest
@testable import FlowRuntime

#if canImport(Glibc)
import Glibc
#endif

/// Kernels the DiT's time goes to (issue 13): the tanh-GELU in its
/// sigmoid form (and SiLU, which shares its AVX-512 form), the row softmax
/// over short rows (several rows at once), against double-precision
/// references and against their own one-row form.
final class DiTKernelTests: XCTestCase {
    /// 0.5·x·(1 + tanh(√(2/π)(x + 0.044715x³))) in double.
    private func geluTanhReference(_ x: Float) -> Double {
        let v = Double(x)
        return 0.5 * v * (1 + tanh(0.7978845608028654 * (v + 0.044715 * v * v * v)))
    }

    /// A recorded pass (value and derivative in one call, in place or not)
    /// gives `ys`, the inference pass's values, bit for bit, and the
    /// derivative of `fr_unary_derivative`.
    private func assertRecordedPassAgrees(_ f: UnaryFunction, _ xs: [Float], _ ys: [Float],
                                          file: StaticString = #filePath, line: UInt = #line) {
        let (k, p1, p2) = f.kernel
        var d = [Float](repeating: .nan, count: xs.count), dAlone = d, yd = d
        fr_unary_derivative(k, p1, p2, xs, &dAlone, xs.count)
        fr_unary_forward_derivative(k, p1, p2, xs, &yd, &d, xs.count)
        var inPlace = xs, dInPlace = d
        inPlace.withUnsafeMutableBufferPointer { p in
            fr_unary_forward_derivative(k, p1, p2, p.baseAddress!, p.baseAddress!, &dInPlace, xs.count)
        }
        for (name, got, want) in [("y", yd, ys), ("y in place", inPlace, ys), ("d", d, dAlone), ("d in place", dInPlace, dAlone)] {
            XCTAssertEqual(got.map(\.bitPattern), want.map(\.bitPattern), "\(f) \(name)", file: file, line: line)
        }
    }

    /// The sigmoid form x / (1 + exp(-2u)) within 2.5e-7·max(|x|, 1) of the
    /// double reference (measured over every float in [-12, 12]: 1.23e-7
    /// with the scalar polynomial exp and with the AVX-512 table exp alike;
    /// the tanh form it replaced: 1.18e-7, the two forms differ by at most
    /// 2.1e-7 on that range). A wrong constant (0.04472 for 0.044715) is off
    /// by 1.8e-6 near x = 1.57 and fails; the limits and NaN are pinned.
    func testGeluTanhAgainstDoubleReference() {
        let f = UnaryFunction.geluTanh
        var worst = 0.0, at: Float = 0
        var x: Float = -12
        while x <= 12 {
            let err = abs(Double(f(x)) - geluTanhReference(x)) / max(1, Double(abs(x)))
            if err > worst { worst = err; at = x }
            x += 1.0 / 4096 + 1e-7 * abs(x)
        }
        XCTAssertLessThan(worst, 2.5e-7, "worst at x = \(at)")
        // Through the vector loop too (the scalar call above is a one-element loop).
        let xs = (0..<4099).map { Float($0 - 2049) / 171 }
        var ys = [Float](repeating: .nan, count: xs.count)
        let (k, p1, p2) = f.kernel
        fr_unary_forward(k, p1, p2, xs, &ys, xs.count)
        for (xv, yv) in zip(xs, ys) {
            XCTAssertLessThan(abs(Double(yv) - geluTanhReference(xv)) / max(1, Double(abs(xv))), 2.5e-7, "x = \(xv)")
        }
        assertRecordedPassAgrees(f, xs, ys)
        XCTAssertEqual(f(.infinity), .infinity)
        XCTAssertTrue(f(.nan).isNaN)
        XCTAssertEqual(f(0), 0)
        XCTAssertEqual(f(100), 100)
        XCTAssertEqual(abs(f(-100)), 0)
        XCTAssertLessThan(abs(f(-9)), 1e-20)
    }

    /// SiLU (the U-Nets' activation after GroupNorm and the MLPs' default)
    /// x / (1 + exp(-x)) within 3e-7 relative of the double reference on
    /// [-87, 100] (measured over every float there: the AVX-512 form 1.8e-7,
    /// the scalar x·σ(x) 2.0e-7), and the recorded pass gives the inference
    /// values bit for bit. Computing exp(x) for exp(-x) fails (6e37 off at
    /// x = -87).
    func testSiLUAgainstDoubleReference() {
        let f = UnaryFunction.silu
        let (k, p1, p2) = f.kernel
        let xs = (0..<200_003).map { -87 + 187 * Float($0) / 200_002 } + [0, -0.0, 1e-30, -1e-30, 1e-3]
        var ys = [Float](repeating: .nan, count: xs.count)
        fr_unary_forward(k, p1, p2, xs, &ys, xs.count)
        var worst = 0.0, at: Float = 0
        for (x, y) in zip(xs, ys) {
            let v = Double(x), r = v / (1 + exp(-v))
            let e = r == 0 ? abs(Double(y)) : abs(Double(y) - r) / abs(r)
            if e > worst { worst = e; at = x }
        }
        XCTAssertLessThan(worst, 3e-7, "worst at x = \(at)")
        assertRecordedPassAgrees(f, xs, ys)
        XCTAssertEqual(f(.infinity), .infinity)
        XCTAssertTrue(f(.nan).isNaN)
        XCTAssertEqual(f(100), 100)
        XCTAssertEqual(abs(f(-100)), 0)
        XCTAssertEqual(f(0), 0)
    }

    /// Rows in groups of four give each row exactly its value when computed
    /// alone (the same operations per row), for every rows % 4, short and
    /// long rows, partial vectors, in place and out of place; and the values
    /// are a softmax: within 4e-7 of a double reference (relative to the row
    /// maximum 1), which a dropped max subtraction or a wrong row offset fails.
    func testSoftmaxRowsAreRowIndependentAndAccurate() {
        var rng = RandomStream(seed: 913, purpose: .custom, index: 0)
        for cols in [1, 5, 16, 17, 33, 49, 64, 100, 256] {
            for rows in [1, 3, 4, 5, 8, 9, 13] {
                let x = (0..<(rows * cols)).map { _ in Float(rng.nextNormal() * 4) }
                var y = [Float](repeating: .nan, count: rows * cols)
                fr_softmax_rows(x, &y, rows, cols)
                var inPlace = x
                inPlace.withUnsafeMutableBufferPointer { p in fr_softmax_rows(p.baseAddress!, p.baseAddress!, rows, cols) }
                var mismatches = 0, worst = 0.0
                for r in 0..<rows {
                    let row = Array(x[(r * cols)..<((r + 1) * cols)])
                    var alone = [Float](repeating: .nan, count: cols)
                    fr_softmax_rows(row, &alone, 1, cols)
                    let mx = row.map(Double.init).max()!
                    let e = row.map { exp(Double($0) - mx) }
                    let s = e.reduce(0, +)
                    for j in 0..<cols {
                        let v = y[r * cols + j]
                        if v.bitPattern != alone[j].bitPattern || v.bitPattern != inPlace[r * cols + j].bitPattern {
                            mismatches += 1
                        }
                        worst = max(worst, abs(Double(v) - e[j] / s))
                    }
                }
                XCTAssertEqual(mismatches, 0, "rows \(rows) cols \(cols)")
                XCTAssertLessThan(worst, 4e-7, "rows \(rows) cols \(cols)")
            }
        }
        // A NaN makes its own row NaN and leaves the other rows alone.
        var x = (0..<(5 * 49)).map { Float($0 % 13) / 3 }
        x[2 * 49 + 7] = .nan
        var y = [Float](repeating: 0, count: x.count)
        fr_softmax_rows(x, &y, 5, 49)
        for r in 0..<5 {
            let row = y[(r * 49)..<((r + 1) * 49)]
            if r == 2 { XCTAssertTrue(row.allSatisfy { $0.isNaN }) } else { XCTAssertTrue(row.allSatisfy { $0.isFinite }) }
        }
    }

    /// The softmax's exp, read out exactly: in a row [0, x₁, …] with every
    /// xᵢ ≤ -25 the sum rounds to 1, so yᵢ is the kernel's exp(xᵢ) itself.
    /// Over 40,000 points of [-87.3, -25] it is within 0.75 ulp of double
    /// exp on the AVX-512F path (measured over every float in [-87.3, 0]:
    /// 0.70) and within 2 ulp on the portable one (fr_exp). In [-25, 0]
    /// the rows [0, x] give exp(x) = y₁ / y₀ up to one more rounding (1.25
    /// ulp). Each fails: the tables' low parts dropped (1.02 ulp), one entry
    /// 1 ulp off (1.59), the cubic term dropped (28).
    func testSoftmaxExpWithinAnUlp() {
        func ulps(_ v: Double, _ e: Double) -> Double {
            abs(v - e) / Double(Float(e).ulp)
        }
        let limit = fr_dense_avx512_active() != 0 ? 0.75 : 2.0
        let n = 40_000
        let xs = (0..<n).map { -25 - 62.3 * Float($0) / Float(n - 1) }
        var y = [Float](repeating: .nan, count: n + 1)
        fr_softmax_rows([0] + xs, &y, 1, n + 1)
        XCTAssertEqual(y[0], 1)
        var worst = 0.0, at: Float = 0
        for (i, x) in xs.enumerated() {
            let u = ulps(Double(y[i + 1]), exp(Double(x)))
            if u > worst { worst = u; at = x }
        }
        XCTAssertLessThan(worst, limit, "worst at x = \(at)")
        // [-25, 0] in rows of two: y₀ = 1/(1 + e), y₁ = e·y₀ rounded once.
        let m = 20_000
        let pairs: [Float] = (0..<m).flatMap { i -> [Float] in [0, -25 * Float(i) / Float(m - 1)] }
        var p = [Float](repeating: .nan, count: 2 * m)
        fr_softmax_rows(pairs, &p, m, 2)
        worst = 0
        for i in 0..<m {
            let u = ulps(Double(p[2 * i + 1]) / Double(p[2 * i]), exp(Double(pairs[2 * i + 1])))
            if u > worst { worst = u; at = pairs[2 * i + 1] }
        }
        XCTAssertLessThan(worst, limit + 0.5, "worst at x = \(at)")
    }

    /// `fr_attention_key_major` (16 or 32 queries in vector lanes) gives,
    /// bit for bit, the row form's values: c·Q by `fr_binary_rows`, S by
    /// `fr_gemm_prepacked`, `fr_softmax_rows`, P·V by `fr_gemm_prepacked`.
    /// Key counts below, at and past a vector (the row form's lane sums and
    /// its last partial vector), to the 256 limit; depths and widths with
    /// partial panels; K as [keys, depth] or [depth, keys]; with and without
    /// the scale; everything read and written with row strides, and nothing
    /// beside Y's rows written. A lane-sum order other than `fr_sum16`'s
    /// tree, or a max taken over the wrong keys, fails.
    func testKeyMajorAttentionEqualsTheRowForm() throws {
        guard fr_dense_avx512_active() != 0 else { throw XCTSkip("AVX-512F path only") }
        XCTAssertEqual(fr_attention_key_major_applies(256, 64, 64), 1)
        XCTAssertEqual(fr_attention_key_major_applies(257, 64, 64), 0)
        XCTAssertEqual(fr_attention_key_major_applies(0, 64, 64), 0)
        var rng = RandomStream(seed: 4242, purpose: .custom, index: 0)
        var mismatches = 0, cases = 0
        for (keys, depth, width) in [(1, 16, 16), (7, 5, 9), (16, 16, 16), (17, 8, 24), (33, 32, 16), (49, 16, 16),
                                     (64, 64, 64), (100, 20, 40), (256, 16, 16)] {
            for rows in [16, 32] {
                for transK in [1, 0] {
                    for scaled in [false, true] {
                        let (lq, lk, lv, ly) = (depth + 3, (transK == 1 ? depth : keys) + 1, width + 2, width + 5)
                        let q = (0..<(rows * lq)).map { _ in Float(rng.nextNormal() * 2) }
                        let k = (0..<((transK == 1 ? keys : depth) * lk)).map { _ in Float(rng.nextNormal() * 2) }
                        let v = (0..<(keys * lv)).map { _ in Float(rng.nextNormal()) }
                        var c: Float = 0.353_553_4
                        // The row form.
                        var qs = [Float](repeating: 0, count: rows * depth)
                        if scaled {
                            fr_binary_rows(2, q, lq, 1, &c, 0, 0, &qs, rows, depth)
                        } else {
                            for r in 0..<rows { for d in 0..<depth { qs[r * depth + d] = q[r * lq + d] } }
                        }
                        var kp = [Float](repeating: 0, count: fr_gemm_packed_b_floats(keys, depth))
                        fr_gemm_pack_b(Int32(transK), keys, depth, k, lk, &kp)
                        var vp = [Float](repeating: 0, count: fr_gemm_packed_b_floats(width, keys))
                        fr_gemm_pack_b(0, width, keys, v, lv, &vp)
                        var p = [Float](repeating: .nan, count: rows * keys)
                        fr_gemm_prepacked(rows, keys, depth, qs, depth, kp, &p, keys)
                        fr_softmax_rows(p, &p, rows, keys)
                        var expected = [Float](repeating: .nan, count: rows * width)
                        fr_gemm_prepacked(rows, width, keys, p, keys, vp, &expected, width)
                        // Key-major.
                        var y = [Float](repeating: -7, count: rows * ly)
                        var scratch = [Float](repeating: .nan, count: fr_attention_key_major_scratch_floats(keys, depth))
                        if scaled {
                            fr_attention_key_major(rows, keys, depth, width, Int32(transK), q, lq, &c, k, lk, v, lv, &y,
                                                   ly, &scratch)
                        } else {
                            fr_attention_key_major(rows, keys, depth, width, Int32(transK), q, lq, nil, k, lk, v, lv, &y,
                                                   ly, &scratch)
                        }
                        for r in 0..<rows {
                            for j in 0..<ly {
                                let got = y[r * ly + j]
                                if j < width ? got.bitPattern != expected[r * width + j].bitPattern : got != -7 {
                                    mismatches += 1
                                }
                            }
                        }
                        cases += 1
                    }
                }
            }
        }
        XCTAssertEqual(cases, 72)
        XCTAssertEqual(mismatches, 0)
    }

    /// `fr_gemm_b_in_place` (B read with its row stride, never packed)
    /// gives `fr_gemm_prepacked`'s values bit for bit on both engines, for
    /// row counts that leave every tile split (the rows spread evenly over
    /// the tiles), partial last panels and k past one 256 block; nothing
    /// beside C's rows is written. A last panel read unmasked would read
    /// past B's row into the next (the stride leaves garbage there) and fail.
    func testGemmReadingBInPlaceEqualsPrepacked() {
        var rng = RandomStream(seed: 5151, purpose: .custom, index: 0)
        var mismatches = 0
        for portable in [false, true] {
            let previous = fr_dense_force_portable(portable ? 1 : 0)
            defer { _ = fr_dense_force_portable(previous) }
            for (m, n, k) in [(1, 16, 49), (7, 8, 3), (9, 17, 64), (49, 16, 49), (50, 40, 300), (17, 64, 16)] {
                let (lda, ldb, ldc) = (k + 1, n + 5, n + 2)
                let a = (0..<(m * lda)).map { _ in Float(rng.nextNormal()) }
                let b = (0..<(k * ldb)).map { _ in Float(rng.nextNormal()) }
                var bp = [Float](repeating: 0, count: fr_gemm_packed_b_floats(n, k))
                fr_gemm_pack_b(0, n, k, b, ldb, &bp)
                var expected = [Float](repeating: .nan, count: m * n)
                fr_gemm_prepacked(m, n, k, a, lda, bp, &expected, n)
                var c = [Float](repeating: -3, count: m * ldc)
                fr_gemm_b_in_place(m, n, k, a, lda, b, ldb, &c, ldc)
                for i in 0..<m {
                    for j in 0..<ldc where j < n ? c[i * ldc + j].bitPattern != expected[i * n + j].bitPattern
                                                 : c[i * ldc + j] != -3 {
                        mismatches += 1
                    }
                }
            }
        }
        XCTAssertEqual(mismatches, 0)
    }

    /// `fr_layer_norm_mod_rows` (rows four at a time) gives, bit for bit,
    /// each row's LayerNorm alone (`fr_layer_norm_rows` of one row), then
    /// a float multiply by the row's modulation scale and an add of its
    /// shift (the values of LayerNorm → Mul → Add), with the modulation row
    /// advancing every `group` rows; the statistics are those of the row
    /// alone. A group boundary off by one row fails.
    func testModulatedLayerNormRowsEqualTheUnfusedOps() {
        var rng = RandomStream(seed: 1313, purpose: .custom, index: 0)
        func draw(_ n: Int, _ scale: Double = 1, _ offset: Double = 0) -> [Float] {
            (0..<n).map { _ in Float(offset + rng.nextNormal() * scale) }
        }
        for m in [1, 5, 16, 17, 49, 64, 100] {
            for (rows, group) in [(1, 1), (3, 3), (4, 2), (5, 5), (9, 3), (13, 13), (14, 7), (8, 1)] {
                let x = draw(rows * m, 2, 0.5), gamma = draw(m, 0.3, 1), beta = draw(m, 0.2)
                let groups = rows / group
                let ms = draw(groups * m, 0.3, 1), mt = draw(groups * m, 0.5)
                var y = [Float](repeating: .nan, count: rows * m), stats = [Float](repeating: .nan, count: 2 * rows)
                fr_layer_norm_mod_rows(x, gamma, beta, ms, mt, group, &y, &stats, rows, m, 1e-5)
                var plain = [Float](repeating: .nan, count: rows * m), plainStats = stats
                fr_layer_norm_rows(x, gamma, beta, &plain, &plainStats, rows, m, 1e-5)
                var mismatches = 0
                for r in 0..<rows {
                    var alone = [Float](repeating: .nan, count: m), st: [Float] = [0, 0]
                    fr_layer_norm_rows(Array(x[(r * m)..<((r + 1) * m)]), gamma, beta, &alone, &st, 1, m, 1e-5)
                    if st[0].bitPattern != stats[2 * r].bitPattern || st[1].bitPattern != stats[2 * r + 1].bitPattern {
                        mismatches += 1
                    }
                    let g = r / group
                    for i in 0..<m {
                        if alone[i].bitPattern != plain[r * m + i].bitPattern { mismatches += 1 }
                        let scaled = alone[i] * ms[g * m + i]
                        let shifted = scaled + mt[g * m + i]
                        if shifted.bitPattern != y[r * m + i].bitPattern { mismatches += 1 }
                    }
                }
                XCTAssertEqual(mismatches, 0, "m \(m) rows \(rows) group \(group)")
            }
        }
    }

    /// The DiT exports import their five adaLN LayerNorm → Mul → Add chains
    /// as modulated LayerNorms (no LayerNorm left beside them), and the
    /// velocities are bit for bit those of the unfused ops: the same graph
    /// with every modulated LayerNorm split back into LayerNorm, Mul, Add.
    func testDiTModulationFusesExactly() throws {
        let folder = ImageNetworkTests.folder
        for file in ["dit__dynamo__opdefault.onnx", "dit__dynamo__op21.onnx", "dit__legacy__op17.onnx"] {
            let model = try Model.loadONNX(path: folder + "/" + file)
            let kinds = model.graph.nodes.map { $0.operation.op.kindName }
            XCTAssertEqual(kinds.filter { $0 == "ModulatedLayerNorm" }.count, 5, file)
            XCTAssertEqual(kinds.filter { $0 == "LayerNorm" }.count, 0, file)
            let split = try Model(graph: unfused(model.graph))
            XCTAssertEqual(split.graph.nodes.filter { $0.operation.op.kindName == "LayerNorm" }.count, 5, file)
            var rng = RandomStream(seed: 21, purpose: .custom, index: 0)
            for batch in [1, 5] {
                let d = model.dimension
                let x = Tensor(shape: [batch, d], scalars: (0..<(batch * d)).map { _ in Float(rng.nextNormal()) })
                let t = (0..<batch).map { 0.1 + 0.17 * Double($0) }
                let a = model.velocity(t: t, x: x).scalars, b = split.velocity(t: t, x: x).scalars
                XCTAssertEqual(a.map(\.bitPattern), b.map(\.bitPattern), "\(file) batch \(batch)")
            }
        }
    }

    /// Export writes a modulated LayerNorm as LayerNormalization, Mul, Add
    /// (and a transposed-B MatMul as Transpose + MatMul); importing the
    /// export fuses the five modulations again. The velocities agree within
    /// 2e-6 of the output scale, not bit for bit: the opset-17 export spells
    /// the tanh-GELU out in elementary ops, which import as separate nodes
    /// (measured 3.0e-7 at scale 2; onnxruntime on the export: 6e-7).
    func testDiTSurvivesExportAndImport() throws {
        let model = try Model.loadONNX(path: ImageNetworkTests.folder + "/dit__dynamo__opdefault.onnx")
        let bytes = try model.onnxData()
        let back = try bytes.withUnsafeBytes { try Model.loadONNX(bytes: $0) }
        let kinds = back.graph.nodes.map { $0.operation.op.kindName }
        XCTAssertEqual(kinds.filter { $0 == "ModulatedLayerNorm" }.count, 5)
        XCTAssertEqual(kinds.filter { $0 == "LayerNorm" }.count, 0)
        var rng = RandomStream(seed: 61, purpose: .custom, index: 0)
        let d = model.dimension
        let x = Tensor(shape: [3, d], scalars: (0..<(3 * d)).map { _ in Float(rng.nextNormal()) })
        let t = [0.1, 0.5, 0.9]
        let a = model.velocity(t: t, x: x).scalars, b = back.velocity(t: t, x: x).scalars
        let scale = a.map { abs($0) }.max()!
        XCTAssertLessThanOrEqual(zip(a, b).map { abs($0 - $1) }.max()!, 2e-6 * scale)
    }

    /// SDPA's Kᵀ·√scale (Transpose, then Mul by a scalar) imports as K·√scale
    /// read transposed by the MatMul: no Transpose of K is left in the DiT
    /// (2 attention blocks) and the diffusers U-Net (4), and the velocities
    /// stay those the exporter's graph computes (ImageNetworkTests; bit for
    /// bit: ImageOpDerivativeTests.testScaledTransposeEqualsTransposedMatMul).
    func testScaledKeyTransposeIsReadTransposed() throws {
        let folder = ImageNetworkTests.folder
        for (file, attention, transposes) in [("dit__dynamo__opdefault.onnx", 2, 6), ("diffusers_unet__dynamo__opdefault.onnx", 4, 24)] {
            let nodes = try Model.loadONNX(path: folder + "/" + file).graph.nodes
            XCTAssertEqual(nodes.filter { $0.operation.as(MatMulOp.self)?.transposeB == true }.count, attention, file)
            XCTAssertEqual(nodes.filter { $0.operation.as(TransposeOp.self) != nil }.count, transposes, file)
        }
    }

    /// Fused attention reads Q, K and V through the head split (Reshape,
    /// Transpose, Slices and the √scale Muls of the qkv projection's output)
    /// and writes Y straight into the heads-merging Transpose's layout: in
    /// inference those nodes do not run (the counts below: the softmax, P·V
    /// and the skipped views, per model), and the velocities are bit for bit
    /// those of a recorded pass, which runs every node as exported.
    func testAttentionReadsHeadSplitsInPlace() throws {
        let folder = ImageNetworkTests.folder
        for (file, away) in [("dit__dynamo__opdefault.onnx", 26), ("dit__legacy__op17.onnx", 26),
                             ("diffusers_unet__dynamo__opdefault.onnx", 44), ("diffusers_unet__legacy__op17.onnx", 36),
                             ("tcfm_unet__dynamo__opdefault.onnx", 20)] {
            let model = try Model.loadONNX(path: folder + "/" + file)
            let ex = model.executor
            XCTAssertEqual(ex.plan.fusedAway.filter { $0 }.count, away, file)
            var rng = RandomStream(seed: 33, purpose: .custom, index: 0)
            for batch in [1, 3] {
                let d = model.dimension
                let x = (0..<(batch * d)).map { _ in Float(rng.nextNormal()) }
                let t = (0..<batch).map { 0.15 + 0.3 * Double($0) }
                func pass(record: Bool) -> [Float] {
                    let ws = GraphWorkspace()
                    return withExtendedLifetime(ws) {
                        t.withUnsafeBufferPointer { tb in
                            x.withUnsafeBufferPointer { xb in
                                let out = ex.forward(times: tb, points: xb.baseAddress!, batch: batch, workspace: ws,
                                                     record: record)
                                return Array(UnsafeBufferPointer(start: out, count: batch * d))
                            }
                        }
                    }
                }
                let fused = pass(record: false), exported = pass(record: true)
                let differ = zip(fused, exported).filter { $0.bitPattern != $1.bitPattern }
                XCTAssertEqual(differ.count, 0, "\(file) batch \(batch): \(differ.count) of \(fused.count) velocities differ, "
                               + "by up to \(differ.map { abs($0 - $1) }.max() ?? 0)")
            }
        }
    }

    /// A batch of one U-Net sample on two threads splits its attention's row
    /// blocks over both (the torchcfm U-Net's 28×28 attention is above
    /// `AttentionFusion.splitFlops`): the velocity is bit for bit the one
    /// thread's, and a single DiT chunk (below the threshold) too.
    func testSplitAttentionGivesTheOneThreadValues() throws {
        let folder = ImageNetworkTests.folder
        for (file, batch) in [("tcfm_unet__dynamo__opdefault.onnx", 1), ("diffusers_unet__dynamo__opdefault.onnx", 1),
                              ("dit__dynamo__opdefault.onnx", 5)] {
            let model = try Model.loadONNX(path: folder + "/" + file)
            var rng = RandomStream(seed: 44, purpose: .custom, index: 0)
            let d = model.dimension
            let x = (0..<(batch * d)).map { _ in Float(rng.nextNormal()) }
            let t = (0..<batch).map { 0.3 + 0.1 * Double($0) }
            func velocity(threads: Int) -> [UInt32] {
                var v = [Float](repeating: 0, count: batch * d)
                t.withUnsafeBufferPointer { tb in
                    x.withUnsafeBufferPointer { xb in
                        v.withUnsafeMutableBufferPointer { model.velocity(times: tb, points: xb, into: $0, threads: threads) }
                    }
                }
                return v.map(\.bitPattern)
            }
            let one = velocity(threads: 1)
            XCTAssertEqual(velocity(threads: 2), one, file)
            XCTAssertEqual(velocity(threads: 3), one, file)
        }
    }

    /// Batched velocity calls evaluate a U-Net up to 4 samples a pass
    /// (`batchChunkSize`) where two chunks per thread remain, and on
    /// several threads end in narrower chunks (`TaperedChunks`): 12 samples
    /// on one thread are passes of 4, 4, 4, on two threads 3, 3 and six of
    /// 1, on three 2, 2, 2 and six of 1, and all give the same bits. The
    /// chunk rule: U-Nets 4 (while a chunk's activations fit 2^23 floats),
    /// the DiT and MLPs their preferred chunk; never fewer than two chunks
    /// per thread. A GroupNorm that gave every sample of a pass sample 0's
    /// statistics fails.
    func testBatchChunksOfUNetSamplesGiveTheSampleValues() throws {
        XCTAssertEqual(Model.batchChunkSize(peakLiveSize: 200_832, flopsPerSample: 628_713_728, preferred: 1), 4)
        XCTAssertEqual(Model.batchChunkSize(peakLiveSize: (1 << 21) + 1, flopsPerSample: 628_713_728, preferred: 1), 2)
        XCTAssertEqual(Model.batchChunkSize(peakLiveSize: 1 << 23, flopsPerSample: 628_713_728, preferred: 1), 1)
        XCTAssertEqual(Model.batchChunkSize(peakLiveSize: 18_944, flopsPerSample: 11_194_880, preferred: 8), 8)
        XCTAssertEqual(Model.batchChunkSize(peakLiveSize: 768, flopsPerSample: 265_000, preferred: 1024), 1024)
        let model = try Model.loadONNX(path: ImageNetworkTests.folder + "/tcfm_unet__dynamo__opdefault.onnx")
        XCTAssertEqual(model.preferredChunkSize, 1)
        XCTAssertEqual(model.batchChunkSize, 4)
        for (n, threads, chunk) in [(1, 1, 1), (3, 1, 3), (16, 1, 4), (2, 2, 1), (7, 2, 1), (8, 2, 2), (16, 2, 4),
                                    (64, 2, 4), (16, 3, 2)] {
            XCTAssertEqual(model.batchChunk(count: n, threads: threads), chunk, "n \(n) threads \(threads)")
        }
        for (n, chunk, threads, sizes) in [(12, 4, 1, [4, 4, 4]), (12, 3, 2, [3, 3, 1, 1, 1, 1, 1, 1]),
                                           (12, 2, 3, [2, 2, 2, 1, 1, 1, 1, 1, 1]), (64, 4, 2, Array(repeating: 4, count: 14) + Array(repeating: 1, count: 8)),
                                           (64, 8, 2, Array(repeating: 8, count: 6) + Array(repeating: 2, count: 8)),
                                           (10_000, 1024, 2, Array(repeating: 1024, count: 7) + Array(repeating: 256, count: 11) + [16]),
                                           (5, 1, 2, [1, 1, 1, 1, 1]), (3, 4, 2, [1, 1, 1]), (9, 4, 1, [4, 4, 1])] {
            let s = Model.TaperedChunks(count: n, chunk: chunk, threads: threads)
            let ranges = (0..<s.chunks).map(s.range)
            XCTAssertEqual(ranges.map(\.count), sizes, "n \(n) chunk \(chunk) threads \(threads)")
            XCTAssertEqual(ranges.first?.lowerBound, 0)
            XCTAssertEqual(ranges.last?.upperBound, n)
            XCTAssertTrue(zip(ranges, ranges.dropFirst()).allSatisfy { $0.upperBound == $1.lowerBound })
        }
        let batch = 12, d = model.dimension
        var rng = RandomStream(seed: 45, purpose: .custom, index: 0)
        let x = (0..<(batch * d)).map { _ in Float(rng.nextNormal()) }
        let t = (0..<batch).map { 0.15 * Double($0 + 1) }
        func velocity(threads: Int) -> [UInt32] {
            var v = [Float](repeating: .nan, count: batch * d)
            t.withUnsafeBufferPointer { tb in
                x.withUnsafeBufferPointer { xb in
                    v.withUnsafeMutableBufferPointer { model.velocity(times: tb, points: xb, into: $0, threads: threads) }
                }
            }
            return v.map(\.bitPattern)
        }
        let passesOf4 = velocity(threads: 1), passesOf1 = velocity(threads: 2)
        XCTAssertEqual(passesOf4, passesOf1)
        XCTAssertEqual(velocity(threads: 3), passesOf1)
        // The field call solvers make (one solver chunk): passes of up to 4 too.
        var v = [Float](repeating: .nan, count: batch * d)
        t.withUnsafeBufferPointer { tb in
            x.withUnsafeBufferPointer { xb in
                v.withUnsafeMutableBufferPointer {
                    model.velocity(times: tb, points: xb, into: $0, workspace: model.makeWorkspace())
                }
            }
        }
        XCTAssertEqual(v.map(\.bitPattern), passesOf1)
        XCTAssertFalse(passesOf4.contains { Float(bitPattern: $0).isNaN })
    }

    /// fr_gemm_n8 (two rows of an 8-column product per vector) gives
    /// fr_gemm_prepacked's values bit for bit, for odd and even row counts,
    /// B in both layouts, C rows further apart than 8, and writes nothing
    /// outside C's rows; against a double reference within 1e-5 relative.
    func testGemmN8MatchesPrepackedBitForBit() throws {
        try XCTSkipUnless(fr_dense_avx512_active() != 0, "the dense engine is not AVX-512 here")
        var rng = RandomStream(seed: 71, purpose: .custom, index: 0)
        let canary: Float = -777.25
        for m in [1, 2, 3, 15, 16, 17, 31, 33, 128] {
            for k in [1, 7, 8, 49, 256, 300] {
                for trans in [0, 1] {
                    for ldc in [8, 11] {
                        let a = (0..<(m * k)).map { _ in Float(rng.nextNormal()) }
                        let b = (0..<(k * 8)).map { _ in Float(rng.nextNormal()) }
                        let ldb = trans == 1 ? k : 8
                        var bp = [Float](repeating: 0, count: fr_gemm_packed_b_floats(8, k))
                        fr_gemm_pack_b(Int32(trans), 8, k, b, ldb, &bp)
                        var bd = [Float](repeating: .nan, count: 16 * k)
                        fr_gemm_n8_pack(Int32(trans), k, b, ldb, &bd)
                        var c1 = [Float](repeating: canary, count: m * ldc), c2 = c1
                        fr_gemm_prepacked(m, 8, k, a, k, bp, &c1, ldc)
                        fr_gemm_n8(m, k, a, k, bd, &c2, ldc)
                        let label = "m \(m) k \(k) trans \(trans) ldc \(ldc)"
                        XCTAssertEqual(c1.map(\.bitPattern), c2.map(\.bitPattern), label)
                        var worst = 0.0
                        for r in 0..<m {
                            for j in 0..<8 {
                                var s = 0.0, mag = 0.0
                                for p in 0..<k {
                                    let t = Double(a[r * k + p]) * Double(trans == 1 ? b[j * k + p] : b[p * 8 + j])
                                    s += t; mag += abs(t)
                                }
                                worst = max(worst, abs(Double(c2[r * ldc + j]) - s) / max(mag, 1e-30))
                            }
                            for j in 8..<ldc { XCTAssertEqual(c2[r * ldc + j], canary, label) }
                        }
                        XCTAssertLessThan(worst, 1e-5, label)
                    }
                }
            }
        }
    }

    /// `g` with every modulated LayerNorm replaced by LayerNorm, Mul, Add.
    private func unfused(_ g: Graph) throws -> Graph {
        var b = GraphBuilder(sampleShape: g.sampleShape, timeShape: g.values[g.t].shape)
        var map: [ValueID: ValueID] = [g.x: b.x, g.t: b.t]
        if let c = g.context { map[c] = b.addContext(shape: g.values[c].shape) }
        for (i, v) in g.values.enumerated() {
            if case .parameter(let p) = v.source {
                map[i] = b.parameter(g.parameters[p].name, g.parameters[p].tensor, trainable: g.parameters[p].isTrainable)
            }
        }
        for node in g.nodes {
            let ins = node.inputs.map { map[$0]! }
            if let ln = node.operation.as(LayerNormOp.self), ln.modulated {
                let n = try b.apply(.layerNorm(axis: ln.axis, epsilon: ln.epsilon), Array(ins.prefix(3)), name: node.name + ".norm")
                let scaled = try b.apply(.binary(.mul), [n, ins[3]], name: node.name + ".scale")
                map[node.output] = try b.apply(.binary(.add), [scaled, ins[4]], name: node.name)
            } else {
                map[node.output] = try b.apply(node.operation, ins, name: node.name)
            }
        }
        return try b.finish(output: map[g.output]!)
    }
}

/// The modulated LayerNorm's JVP and VJP against finite differences, with
/// the modulation computed from x (tangents and gradients flow through s
/// and t) and from t (no tangents: the divergence's case), and its forward
/// bit for bit equal to LayerNorm → Mul → Add.
extension ImageOpDerivativeTests {
    /// u [T, F] → modulated LayerNorm over F with s, t [1, F] from `source`
    /// (x's pre-op output, or t) through small Linears.
    func modulatedLayerNormGraph(fromX: Bool, fused: Bool, pre: Bool) throws -> Graph {
        let (tokens, features) = (3, 5)
        return try graph([tokens, features], seed: fromX ? 31 : 37, pre: pre) { b, u in
            let src: ValueID
            if fromX { src = try b.apply(.reshape(shape: [tokens * features]), [u], name: "flat_u") } else { src = b.t }
            let inDim = b.shape(of: src).elementCount
            let s = try b.linear(src, weight: self.random([features, inDim], seed: 41, scale: 0.4),
                                 bias: self.random([features], seed: 42, scale: 0.2, offset: 1), activation: .tanh, name: "s")
            let t = try b.linear(src, weight: self.random([features, inDim], seed: 43, scale: 0.4),
                                 bias: self.random([features], seed: 44, scale: 0.2), name: "t")
            let s2 = try b.apply(.reshape(shape: [1, features]), [s], name: "s2")
            let t2 = try b.apply(.reshape(shape: [1, features]), [t], name: "t2")
            let gamma = b.parameter("ln.weight", self.random([features], seed: 45, scale: 0.3, offset: 1))
            let beta = b.parameter("ln.bias", self.random([features], seed: 46, scale: 0.2))
            if fused {
                return try b.apply(Operation(LayerNormOp(axis: 1, epsilon: 1e-5, modulated: true)), [u, gamma, beta, s2, t2],
                                   name: "mln")
            }
            let n = try b.apply(.layerNorm(axis: 1, epsilon: 1e-5), [u, gamma, beta], name: "ln")
            return try b.apply(.binary(.add), [try b.apply(.binary(.mul), [n, s2], name: "mul"), t2], name: "mln")
        }
    }

    /// MatMul(A, Mul(Transpose(K), c)) and MatMul(A, Mul(K, c), transposeB)
    /// give the same values bit for bit (the importer's rewrite of SDPA's
    /// scaled Kᵀ), batched and per head.
    func testScaledTransposeEqualsTransposedMatMul() throws {
        var rng = RandomStream(seed: 53, purpose: .custom, index: 0)
        let x = (0..<(3 * 40)).map { _ in Float(rng.nextNormal()) }
        var outputs: [[UInt32]] = []
        for rewritten in [false, true] {
            let g = try graph([2, 5, 4], seed: 57, pre: false) { b, u in
                let flat = try b.apply(.reshape(shape: [40]), [u], name: "flat")
                let q = try b.apply(.reshape(shape: [2, 5, 4]), [try b.linear(flat, weight: self.random([40, 40], seed: 58, scale: 0.3),
                                                                             bias: nil, name: "q")], name: "Q")
                let k = try b.apply(.reshape(shape: [2, 5, 4]), [try b.linear(flat, weight: self.random([40, 40], seed: 59, scale: 0.3),
                                                                             bias: nil, name: "k")], name: "K")
                let c = b.parameter("scale", Tensor(shape: [1], scalars: [0.7071]), trainable: false)
                if rewritten {
                    return try b.apply(.matMul(transposeB: true), [q, try b.apply(.binary(.mul), [k, c])], name: "op")
                }
                let kt = try b.apply(Operation(try TransposeOp(perm: [0, 2, 1], inputShape: [2, 5, 4], node: "Kt")), [k], name: "Kt")
                return try b.apply(.matMul(), [q, try b.apply(.binary(.mul), [kt, c])], name: "op")
            }
            let out = try nodeOutputs(g, x: x, batch: 3, names: ["op"])["op"]!
            XCTAssertEqual(out.shape, [2, 5, 5])
            outputs.append(out.values.map(\.bitPattern))
        }
        XCTAssertEqual(outputs[0], outputs[1])
    }

    /// Attention with 8-wide heads runs fused (P·V on fr_gemm_n8) in
    /// inference passes and as three nodes in recorded passes; `nodeOutputs`
    /// requires the two to agree bit for bit.
    func testNarrowHeadAttentionFusedEqualsUnfused() throws {
        var rng = RandomStream(seed: 73, purpose: .custom, index: 0)
        let (heads, tokens, width) = (2, 37, 8)
        let n = heads * tokens * width
        let x = (0..<(3 * n)).map { _ in Float(rng.nextNormal()) }
        let g = try graph([heads, tokens, width], seed: 79, pre: false) { b, u in
            func proj(_ name: String, _ seed: UInt64) throws -> ValueID {
                let flat = try b.apply(.reshape(shape: [n]), [u], name: name + ".flat")
                let y = try b.linear(flat, weight: self.random([n, n], seed: seed, scale: 1 / Double(n).squareRoot()),
                                     bias: nil, name: name)
                return try b.apply(.reshape(shape: [heads, tokens, width]), [y], name: name + ".heads")
            }
            let v = try proj("v", 80), q = try proj("q", 81), k = try proj("k", 82)
            let s = try b.apply(.matMul(transposeB: true), [q, k], name: "scores")
            let p = try b.apply(Operation(SoftmaxOp(axis: 2)), [s], name: "p")
            return try b.apply(.matMul(), [p, v], name: "pv")
        }
        let out = try nodeOutputs(g, x: x, batch: 3, names: ["pv"])["pv"]!
        XCTAssertEqual(out.shape, [heads, tokens, width])
        XCTAssertTrue(out.values.allSatisfy(\.isFinite))
    }

    /// Attention over ≤ 256 keys runs key-major in inference passes
    /// (blocks of 32 and 16 queries, the rest in the row form) and as three
    /// nodes in recorded passes; `nodeOutputs` requires the two to agree.
    /// Token counts that leave 0, 1, 5 and 14 rows to the row form and one
    /// past the 256-key limit (one narrow head: the graph ends in a
    /// Linear over every value); Q and K scaled by constants (read through by
    /// the fusion); K given transposed (Kᵀ materialised: the MatMul without
    /// transposeB); widths of one and two panels.
    func testKeyMajorAttentionFusedEqualsUnfused() throws {
        var rng = RandomStream(seed: 97, purpose: .custom, index: 0)
        for (heads, tokens, width, transposedK) in [(2, 16, 16, false), (2, 49, 16, false), (2, 37, 24, true),
                                                    (2, 64, 16, true), (2, 46, 20, false), (1, 257, 4, false)] {
            let n = heads * tokens * width
            let x = (0..<(2 * n)).map { _ in Float(rng.nextNormal()) }
            let g = try graph([heads, tokens, width], seed: 101, pre: false) { b, u in
                func proj(_ name: String, _ seed: UInt64) throws -> ValueID {
                    // A per-feature Linear over the last axis keeps the graph small at 257 tokens.
                    let y = try b.linear(u, weight: self.random([width, width], seed: seed,
                                                                scale: 1 / Double(width).squareRoot()),
                                         bias: self.random([width], seed: seed + 7, scale: 0.1), name: name)
                    return y
                }
                let v = try proj("v", 102), q = try proj("q", 103), k = try proj("k", 104)
                let cq = b.parameter("cq", Tensor(shape: [1], scalars: [0.5946]), trainable: false)
                let ck = b.parameter("ck", Tensor(shape: [1], scalars: [0.5946]), trainable: false)
                let qs = try b.apply(.binary(.mul), [q, cq], name: "qs")
                let s: ValueID
                if transposedK {
                    let kt = try b.apply(Operation(try TransposeOp(perm: [0, 2, 1], inputShape: [heads, tokens, width],
                                                                   node: "kt")), [k], name: "kt")
                    s = try b.apply(.matMul(), [qs, try b.apply(.binary(.mul), [kt, ck], name: "ks")], name: "scores")
                } else {
                    s = try b.apply(.matMul(transposeB: true), [qs, try b.apply(.binary(.mul), [k, ck], name: "ks")],
                                    name: "scores")
                }
                let p = try b.apply(Operation(SoftmaxOp(axis: 2)), [s], name: "p")
                return try b.apply(.matMul(), [p, v], name: "pv")
            }
            let out = try nodeOutputs(g, x: x, batch: 2, names: ["pv"])["pv"]!
            XCTAssertEqual(out.shape, [heads, tokens, width])
            XCTAssertTrue(out.values.allSatisfy(\.isFinite), "tokens \(tokens)")
        }
    }

    /// A key-major attention big enough to split at batch 1 (2 heads × 256
    /// tokens × 32: 2^24 flops > `GraphWorkspace.splitFlops`) gives the
    /// same bits on 1, 2 and 3 threads: the workers' K copies (one per
    /// matrix, scaled) and score blocks are their own; and the same values
    /// as the three nodes of a recorded pass.
    func testKeyMajorAttentionSplitsOverThreads() throws {
        let (heads, tokens, width) = (2, 256, 32)
        var b = GraphBuilder(sampleShape: [heads, tokens, width])
        func proj(_ name: String, _ seed: UInt64) throws -> ValueID {
            try b.linear(b.x, weight: random([width, width], seed: seed, scale: 1 / Double(width).squareRoot()),
                         bias: random([width], seed: seed + 7, scale: 0.1), name: name)
        }
        let v = try proj("v", 111), q = try proj("q", 112), k = try proj("k", 113)
        let c = b.parameter("c", Tensor(shape: [1], scalars: [0.42]), trainable: false)
        let ks = try b.apply(.binary(.mul), [k, c], name: "ks")
        let qs = try b.apply(.binary(.mul), [q, c], name: "qs")
        let s = try b.apply(.matMul(transposeB: true), [qs, ks], name: "scores")
        let p = try b.apply(Operation(SoftmaxOp(axis: 2)), [s], name: "p")
        let pv = try b.apply(.matMul(), [p, v], name: "pv")
        let g = try b.finish(output: pv)
        let model = try Model(graph: g)
        var rng = RandomStream(seed: 114, purpose: .custom, index: 0)
        let x = (0..<(heads * tokens * width)).map { _ in Float(rng.nextNormal()) }
        func velocity(threads: Int) -> [UInt32] {
            var out = [Float](repeating: .nan, count: x.count)
            [0.5].withUnsafeBufferPointer { tb in
                x.withUnsafeBufferPointer { xb in
                    out.withUnsafeMutableBufferPointer { model.velocity(times: tb, points: xb, into: $0, threads: threads) }
                }
            }
            return out.map(\.bitPattern)
        }
        let one = velocity(threads: 1)
        XCTAssertEqual(velocity(threads: 2), one)
        XCTAssertEqual(velocity(threads: 3), one)
        let recorded = try nodeOutputs(g, x: x, batch: 1, names: ["pv"])["pv"]!
        XCTAssertEqual(recorded.values.map(\.bitPattern), one)
    }

    func testModulatedLayerNormDerivatives() throws {
        for fromX in [true, false] {
            try checkDerivatives(try modulatedLayerNormGraph(fromX: fromX, fused: true, pre: true),
                                 "modulated LayerNorm, modulation from \(fromX ? "x" : "t")")
        }
    }

    func testModulatedLayerNormForwardEqualsTheThreeOps() throws {
        var rng = RandomStream(seed: 47, purpose: .custom, index: 0)
        let x = (0..<(4 * 15)).map { _ in Float(rng.nextNormal()) }
        for fromX in [true, false] {
            let fused = try nodeOutputs(try modulatedLayerNormGraph(fromX: fromX, fused: true, pre: false), x: x, batch: 4,
                                        names: ["mln"])["mln"]!
            let split = try nodeOutputs(try modulatedLayerNormGraph(fromX: fromX, fused: false, pre: false), x: x, batch: 4,
                                        names: ["mln"])["mln"]!
            XCTAssertEqual(fused.shape, [3, 5])
            XCTAssertEqual(fused.values.map(\.bitPattern), split.values.map(\.bitPattern), "from \(fromX ? "x" : "t")")
        }
    }
}
