// libFuzzer harnesses over FlowRuntime's file parsers that have no C entry
// point: .npy (NPY.decode and the streaming NPY.Reader the CLI uses for big
// files), CSV (CSV.decode, with and without a header) and the image readers
// (ImageData.decodeIDX, ImageData.decodeNPY). One source, one binary per
// parser, chosen at compile time: -D FUZZ_NPY, -D FUZZ_CSV or -D FUZZ_IMAGE
// (`make fuzz-io-build`). The FlowRuntime module is the instrumented debug
// build in .build-fuzz; its object files are linked in directly (libflowrt.so
// exports the C ABI only).
//
// Any bytes must give a value or a thrown FlowError: never a trap, an
// AddressSanitizer report, a leak, a timeout or an allocation beyond the
// RSS limit. What a parser returns must be self-consistent (element count
// equal to the product of the shape).
import FlowRuntime
#if canImport(Glibc)
import Glibc
#endif

@inline(never)
func require(_ condition: Bool, _ what: @autoclosure () -> String) {
    if !condition {
        fputs("invariant violated: \(what())\n", stderr)
        abort()
    }
}

func elementCount(_ shape: [Int]) -> Int { shape.reduce(1, *) }

#if FUZZ_NPY
/// A file in /dev/shm (memory-backed), unlinked at once and reopened by the
/// path-based reader through /proc/self/fd; reused for every input.
let memfd: CInt = {
    var template = Array("/dev/shm/flowrt-fuzz-npy-XXXXXX".utf8CString)
    let fd = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
    require(fd >= 0, "mkstemp")
    template.withUnsafeBufferPointer { _ = unlink($0.baseAddress!) }
    return fd
}()

func fuzzOne(_ bytes: [UInt8]) {
    if let array = try? NPY.decode(bytes) {
        require(elementCount(array.shape) == array.values.count, "NPY.decode: shape \(array.shape), \(array.values.count) values")
        // Re-encoding what was read must read back to the same array.
        let again = try? NPY.decode(NPY.encode(array, as: .float64))
        require(again?.shape == array.shape, "NPY round trip changed the shape")
        _ = try? array.points(dimension: array.shape.last ?? 1)
    }
    // The streaming reader (flowrt-cli logprob on big files) on the same bytes.
    require(ftruncate(memfd, 0) == 0, "ftruncate")
    if !bytes.isEmpty {
        require(pwrite(memfd, bytes, bytes.count, 0) == bytes.count, "pwrite")
    }
    guard let reader = try? NPY.Reader(path: "/proc/self/fd/\(memfd)") else { return }
    // Rows in chunks, as the CLI reads them; a bounded number of chunks
    // (a shape [huge, 0] holds no bytes but many rows).
    var start = 0, chunks = 0
    while start < reader.rows, chunks < 8 {
        let end = min(reader.rows, start + 64)
        if let values = try? reader.read(rows: start..<end) {
            require(values.count == (end - start) * reader.columns, "NPY.Reader: \(values.count) values for rows \(start)..<\(end)")
        }
        start = end
        chunks += 1
    }
}
#elseif FUZZ_CSV
func fuzzOne(_ bytes: [UInt8]) {
    let text = String(decoding: bytes, as: UTF8.self)
    for header in [false, true] {
        if let array = try? CSV.decode(text, header: header) {
            require(array.shape.count == 2 && elementCount(array.shape) == array.values.count,
                    "CSV.decode: shape \(array.shape), \(array.values.count) values")
            // Values written as CSV read back to the same shape.
            let again = try? CSV.decode(CSV.encode(array), header: false)
            require(again?.shape == array.shape, "CSV round trip changed the shape \(array.shape) to \(String(describing: again?.shape))")
        }
    }
}
#elseif FUZZ_IMAGE
func check(_ pixels: PixelArray, _ reader: String) {
    require(elementCount(pixels.shape) == pixels.bytes.count, "\(reader): shape \(pixels.shape), \(pixels.bytes.count) bytes")
    if let sample = try? pixels.sampleShape() {
        require(sample.count == 3, "\(reader): sample shape \(sample)")
        if pixels.bytes.count <= 1 << 16, let t = try? ImageData.scaled(pixels) {
            require(t.scalars.count == pixels.bytes.count, "\(reader): scaled has \(t.scalars.count) values")
        }
    }
}

func fuzzOne(_ bytes: [UInt8]) {
    if let p = try? ImageData.decodeIDX(bytes) { check(p, "decodeIDX") }
    if let p = try? ImageData.decodeNPY(bytes) { check(p, "decodeNPY") }
}
#else
#error("compile with -D FUZZ_NPY, -D FUZZ_CSV or -D FUZZ_IMAGE")
#endif

@_cdecl("LLVMFuzzerTestOneInput")
public func LLVMFuzzerTestOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let bytes = size == 0 || data == nil ? [] : Array(UnsafeBufferPointer(start: data, count: size))
    fuzzOne(bytes)
    return 0
}
