import XCTest
@testable import FlowRuntime

/// Params structs with three public versions (issue 16, item 4): every
/// known struct_size is read (fields beyond it keep their defaults), every
/// other size is refused naming the sizes known, and init writes only up to
/// the caller's size.
final class VersionedStructTests: XCTestCase {
    /// Version 3 of a made-up params struct; version 1 ends after `a`
    /// (8 bytes), version 2 after `b` (16 bytes), version 3 is 28 bytes.
    struct Params: Equatable {
        var structSize: UInt32 = 28
        var a: Int32 = 7
        var b: Double = 0.5
        var c: UInt64 = 99
        var d: Int32 = -1
    }

    let versions = VersionedStruct<Params>(olderSizes: [16, 8], typeName: "my_params")

    func testKnownSizesAreSortedWithTheCurrentSizeLast() {
        XCTAssertEqual(MemoryLayout<Params>.size, 28)
        XCTAssertEqual(versions.knownSizes, [8, 16, 28])
        XCTAssertEqual(versions.knownSizesText, "8, 16 or 28")
        XCTAssertEqual(VersionedStruct<Params>().knownSizesText, "28")
    }

    /// A caller's struct of `size` bytes holding `value`'s first bytes, the
    /// rest of its memory poisoned (0xAB) to show nothing past it is read.
    func callerBytes(_ value: Params, size: Int) -> [UInt8] {
        var v = value
        v.structSize = UInt32(size)
        var bytes = withUnsafeBytes(of: &v) { Array($0.prefix(size)) }
        bytes += [UInt8](repeating: 0xAB, count: 64)
        return bytes
    }

    func testEveryVersionIsReadAndLaterFieldsKeepTheirDefaults() throws {
        let caller = Params(structSize: 0, a: 1, b: 2.5, c: 3, d: 4)
        let defaults = Params()
        for size in [8, 16, 28] {
            let bytes = callerBytes(caller, size: size)
            let got = try bytes.withUnsafeBytes { try versions.read($0.baseAddress!, defaults: defaults, "params") }
            XCTAssertEqual(got.structSize, UInt32(size))
            XCTAssertEqual(got.a, 1)
            XCTAssertEqual(got.b, size >= 16 ? 2.5 : defaults.b, "size \(size)")
            XCTAssertEqual(got.c, size >= 28 ? 3 : defaults.c, "size \(size)")
            XCTAssertEqual(got.d, size >= 28 ? 4 : defaults.d, "size \(size)")
        }
    }

    func testOtherSizesAreRefusedNamingTheKnownOnes() {
        for size in [0, 3, 4, 12, 15, 17, 24, 27, 29, 32, 1 << 20] {
            let bytes = callerBytes(Params(), size: min(size, 28)).enumerated().map { i, b in
                i < 4 ? UInt8(truncatingIfNeeded: size >> (8 * i)) : b
            }
            XCTAssertThrowsError(try bytes.withUnsafeBytes { try versions.size(at: $0.baseAddress!, "params") }) { error in
                guard case FlowError.invalidArgument(let m) = error else { return XCTFail("\(error)") }
                XCTAssertTrue(m.contains("params->struct_size = \(size)") && m.contains("8, 16 or 28") && m.contains("my_params"), m)
            }
        }
    }

    func testWriteFillsOnlyTheCallersVersion() throws {
        for size in [8, 16, 28] {
            var bytes = callerBytes(Params(structSize: 0, a: 0, b: 0, c: 0, d: 0), size: size)
            let before = bytes
            let written = try bytes.withUnsafeMutableBytes { try versions.write(Params(), to: $0.baseAddress!, "params") }
            XCTAssertEqual(written, size)
            XCTAssertEqual(Array(bytes[size...]), Array(before[size...]), "bytes past struct_size \(size) untouched")
            let back = try bytes.withUnsafeBytes { try versions.read($0.baseAddress!, defaults: Params(), "params") }
            XCTAssertEqual(back, Params(structSize: UInt32(size)))
        }
    }
}
