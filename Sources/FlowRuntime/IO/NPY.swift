#if canImport(Glibc)
import Glibc
#endif

/// An N-dimensional array of numbers read from or written to a file, in C
/// (row-major) order whatever the file's layout. Values are kept as Double
/// (float32 and integer data convert exactly).
public struct NumericArray: Sendable, Equatable {
    /// Extents, outermost first.
    public var shape: [Int]
    /// The elements in row-major order.
    public var values: [Double]

    /// - Precondition: `values.count` is the product of `shape`.
    public init(shape: [Int], values: [Double]) {
        precondition(shape.elementCount == values.count, "\(values.count) values do not fill shape \(shape)")
        self.shape = shape
        self.values = values
    }

    /// The array as an `[n, dimension]` tensor of points: a matrix, or a
    /// vector when `dimension` is 1.
    /// - Throws: `.shapeMismatch` for another shape, `.nonFinite` for a NaN or
    ///   infinity (naming the row and column), or a value outside Float's range.
    public func points(dimension d: Int) throws -> Tensor {
        let rows: Int
        if shape.count == 2, shape[1] == d { rows = shape[0] }
        else if shape.count == 1, d == 1 { rows = shape[0] }
        else { throw FlowError.shapeMismatch("data has shape \(shape); expected [n, \(d)]") }
        var out = try HostMemory.array(repeating: Float(0), count: rows * d, for: "points of a \(shape) array")
        for (i, v) in values.enumerated() {
            let f = Float(v)
            guard f.isFinite else { throw FlowError.nonFinite("data row \(i / d), column \(i % d) is \(v) (not a finite float32)") }
            out[i] = f
        }
        return Tensor(shape: [rows, d], scalars: out)
    }
}

/// NumPy's `.npy` format, versions 1.0, 2.0 and 3.0: a magic string, a
/// little-endian header length, a Python dict literal
/// `{'descr': '<f4', 'fortran_order': False, 'shape': (n, d), }` padded to a
/// multiple of 64 bytes, then the raw elements
/// (https://numpy.org/doc/stable/reference/generated/numpy.lib.format.html).
///
/// Reads float32 and float64 only (integer and other dtypes are refused
/// with a message naming the dtype) in either byte order and in C or
/// Fortran order; writes float32 or float64, version 1.0 (2.0 when the
/// header needs it), C or Fortran order. Every size is checked against the
/// file before anything is allocated.
public enum NPY {
    /// Element types this reader and writer understand.
    public enum ElementType: String, Sendable {
        case float32 = "f4", float64 = "f8"
        var size: Int { self == .float32 ? 4 : 8 }
    }

    /// NumPy's names of dtypes people hand us, for messages.
    static func dtypeName(_ descr: Substring) -> String {
        let names = ["i1": "int8", "i2": "int16", "i4": "int32", "i8": "int64", "u1": "uint8", "u2": "uint16",
                     "u4": "uint32", "u8": "uint64", "f2": "float16", "f4": "float32", "f8": "float64",
                     "b1": "bool", "c8": "complex64", "c16": "complex128"]
        return names[String(descr)] ?? String(descr)
    }

    /// Largest header accepted (NumPy itself limits headers to 10 kB by default).
    static let maxHeaderLength = 1 << 20

    /// Decodes a whole `.npy` file image.
    /// - Throws: `.io` naming what is malformed: magic, version, header
    ///   syntax, dtype (`.unsupported` for other dtypes), shape, or a data
    ///   size that does not match the shape.
    public static func decode(_ bytes: [UInt8]) throws -> NumericArray {
        let h = try prefix(bytes)
        let (type, bigEndian, fortran, shape, dataStart) = (h.type, h.bigEndian, h.fortranOrder, h.shape, h.dataStart)
        let count = h.count
        guard bytes.count - dataStart == count * type.size else {
            throw FlowError.io(".npy data holds \(bytes.count - dataStart) bytes; shape \(shape) of \(type.rawValue) needs \(count * type.size)")
        }
        var raw = try HostMemory.array(repeating: 0.0, count: count, for: ".npy decoding")
        bytes.withUnsafeBufferPointer { p in
            convert(p.baseAddress! + dataStart, count: count, type: type, bigEndian: bigEndian, into: &raw, at: 0)
        }
        return NumericArray(shape: shape, values: fortran ? reorder(raw, shape: shape, fromFortran: true) : raw)
    }

    /// Converts `count` raw elements at `p` to Double, into `out[at...]`.
    static func convert(_ p: UnsafePointer<UInt8>, count: Int, type: ElementType, bigEndian: Bool,
                        into out: inout [Double], at offset: Int) {
        for i in 0..<count {
            var word: UInt64 = 0
            for b in 0..<type.size {
                let byte = UInt64(p[i * type.size + (bigEndian ? type.size - 1 - b : b)])
                word |= byte << (8 * UInt64(b))
            }
            switch type {
            case .float32: out[offset + i] = Double(Float(bitPattern: UInt32(truncatingIfNeeded: word)))
            case .float64: out[offset + i] = Double(bitPattern: word)
            }
        }
    }

    /// What a `.npy` header says: dtype, byte order, layout, shape, and
    /// where the data start.
    public struct Header: Sendable {
        public var type: ElementType
        public var bigEndian: Bool
        public var fortranOrder: Bool
        public var shape: [Int]
        /// Byte offset of the first element.
        public var dataStart: Int
        /// Number of elements (checked against overflow).
        public var count: Int
    }

    /// Parses the magic, version and header dict at the start of `bytes`
    /// (which may hold only the start of a file).
    /// - Throws: `.io` (malformed, or `bytes` too short for the header),
    ///   `.unsupported` (version or dtype).
    static func prefix(_ bytes: [UInt8]) throws -> Header {
        let magic: [UInt8] = [0x93, 0x4E, 0x55, 0x4D, 0x50, 0x59]  // \x93NUMPY
        guard bytes.count >= 10, Array(bytes[0..<6]) == magic else { throw FlowError.io("not an .npy file (bad magic string)") }
        let major = bytes[6]
        let headerLength: Int, headerStart: Int
        switch major {
        case 1:
            headerLength = Int(bytes[8]) | Int(bytes[9]) << 8
            headerStart = 10
        case 2, 3:
            guard bytes.count >= 12 else { throw FlowError.io(".npy file truncated in its header length") }
            headerLength = Int(bytes[8]) | Int(bytes[9]) << 8 | Int(bytes[10]) << 16 | Int(bytes[11]) << 24
            headerStart = 12
        default:
            throw FlowError.unsupported(".npy format version \(major).\(bytes[7])")
        }
        guard headerLength <= maxHeaderLength, headerStart + headerLength <= bytes.count else {
            throw FlowError.io(".npy header length \(headerLength) exceeds the file (\(bytes.count) bytes)")
        }
        let header = String(decoding: bytes[headerStart..<(headerStart + headerLength)], as: UTF8.self)
        let (type, bigEndian, fortran, shape) = try parseHeader(header)
        guard let count = shape.checkedElementCount, count.multipliedReportingOverflow(by: type.size).overflow == false else {
            throw FlowError.io(".npy shape \(shape) is too large")
        }
        return Header(type: type, bigEndian: bigEndian, fortranOrder: fortran, shape: shape,
                      dataStart: headerStart + headerLength, count: count)
    }

    /// Parses the header dict: (type, big-endian, fortran_order, shape).
    static func parseHeader(_ h: String) throws -> (ElementType, Bool, Bool, [Int]) {
        func value(of key: String) throws -> Substring {
            guard let k = h.firstRange(of: "'\(key)'") ?? h.firstRange(of: "\"\(key)\""),
                  let colon = h[k.upperBound...].firstIndex(of: ":") else {
                throw FlowError.io(".npy header lacks '\(key)': \(h)")
            }
            return h[h.index(after: colon)...].drop { $0 == " " }
        }
        // descr: a quoted string such as '<f4'.
        let d = try value(of: "descr")
        guard let q = d.first, q == "'" || q == "\"", let end = d.dropFirst().firstIndex(of: q) else {
            throw FlowError.io(".npy header has a malformed 'descr': \(h)")
        }
        var descr = d[d.index(after: d.startIndex)..<end]
        var bigEndian = false
        if let order = descr.first, "<>|=".contains(order) {
            bigEndian = order == ">"
            descr = descr.dropFirst()
        }
        guard let type = ElementType(rawValue: String(descr)) else {
            throw FlowError.unsupported(".npy dtype \(dtypeName(descr)) ('\(d[d.index(after: d.startIndex)..<end])') is not supported: FlowRuntime reads float32 and float64 (convert with x.astype(np.float32))")
        }
        let f = try value(of: "fortran_order")
        let fortran: Bool
        if f.hasPrefix("True") { fortran = true } else if f.hasPrefix("False") { fortran = false } else {
            throw FlowError.io(".npy header has a malformed 'fortran_order': \(h)")
        }
        let s = try value(of: "shape")
        guard s.first == "(", let close = s.firstIndex(of: ")") else { throw FlowError.io(".npy header has a malformed 'shape': \(h)") }
        var shape: [Int] = []
        for part in s[s.index(after: s.startIndex)..<close].split(separator: ",") {
            let t = part.trimmingSpaces
            if t.isEmpty { continue }
            guard let n = Int(t), n >= 0 else { throw FlowError.io(".npy shape entry '\(t)' is not a non-negative integer") }
            shape.append(n)
        }
        return (type, bigEndian, fortran, shape)
    }

    /// Converts between Fortran (column-major) and C (row-major) order.
    static func reorder<T>(_ v: [T], shape: [Int], fromFortran: Bool) -> [T] {
        guard shape.count > 1, let first = v.first else { return v }
        var out = [T](repeating: first, count: v.count)
        var index = [Int](repeating: 0, count: shape.count)
        var fStrides = [Int](repeating: 1, count: shape.count)
        for k in 1..<shape.count { fStrides[k] = fStrides[k - 1] * shape[k - 1] }
        for c in 0..<v.count {  // c walks C order; f is the Fortran offset
            var f = 0
            for k in 0..<shape.count { f += index[k] * fStrides[k] }
            if fromFortran { out[c] = v[f] } else { out[f] = v[c] }
            var k = shape.count - 1
            while k >= 0 { index[k] += 1; if index[k] < shape[k] { break }; index[k] = 0; k -= 1 }
        }
        return out
    }

    /// Encodes an array as a `.npy` image (version 1.0, or 2.0 if the header
    /// needs more than 65535 bytes). `values` are in C order; with
    /// `fortranOrder` the file stores them column-major.
    public static func encode(_ array: NumericArray, as type: ElementType = .float32, fortranOrder: Bool = false) -> [UInt8] {
        var out = header(shape: array.shape, type: type, fortranOrder: fortranOrder)
        let values = fortranOrder ? reorder(array.values, shape: array.shape, fromFortran: false) : array.values
        out.reserveCapacity(out.count + values.count * type.size)
        append(values, as: type, to: &out)
        return out
    }

    /// Little-endian bytes of `values` as `type`, appended to `out`.
    static func append<S: Sequence>(_ values: S, as type: ElementType, to out: inout [UInt8]) where S.Element == Double {
        for v in values {
            let word: UInt64 = type == .float32 ? UInt64(Float(v).bitPattern) : v.bitPattern
            for b in 0..<type.size { out.append(UInt8(truncatingIfNeeded: word >> (8 * UInt64(b)))) }
        }
    }

    /// The magic string, version and padded header dict of a `.npy` file of
    /// `shape` and `type` (version 1.0, or 2.0 when the dict needs it).
    public static func header(shape: [Int], type: ElementType, fortranOrder: Bool = false) -> [UInt8] {
        let shapeText = shape.count == 1 ? "(\(shape[0]),)" : "(" + shape.map(String.init).joined(separator: ", ") + ")"
        var dict = "{'descr': '<\(type.rawValue)', 'fortran_order': \(fortranOrder ? "True" : "False"), 'shape': \(shapeText), }"
        let version: UInt8 = dict.utf8.count + 11 > 65535 ? 2 : 1
        let prefix = version == 1 ? 10 : 12
        while (prefix + dict.utf8.count + 1) % 64 != 0 { dict += " " }
        dict += "\n"
        let n = dict.utf8.count
        var out: [UInt8] = [0x93, 0x4E, 0x55, 0x4D, 0x50, 0x59, version, 0]
        out += version == 1 ? [UInt8(n & 0xFF), UInt8(n >> 8)] : [UInt8(n & 0xFF), UInt8((n >> 8) & 0xFF), UInt8((n >> 16) & 0xFF), UInt8(n >> 24)]
        out += Array(dict.utf8)
        return out
    }

    /// Reads a `.npy` file. - Throws: `.io` (cannot read, malformed), `.unsupported` (dtype).
    public static func read(path: String) throws -> NumericArray {
        let bytes = try FileIO.read(path)
        do { return try decode(bytes) } catch let FlowError.io(m) { throw FlowError.io("\(path): \(m)") }
    }

    /// Writes a `.npy` file (atomically: a temporary file renamed into place).
    public static func write(_ array: NumericArray, as type: ElementType = .float32, fortranOrder: Bool = false,
                             to path: String) throws {
        try FileIO.writeAtomically(encode(array, as: type, fortranOrder: fortranOrder), to: path)
    }
}

extension NumericArray {
    /// A tensor's elements as an array of the same shape.
    public init(_ tensor: Tensor) { self.init(shape: tensor.shape, values: tensor.scalars.map(Double.init)) }
}

extension Substring {
    var trimmingSpaces: Substring {
        var s = self
        while let f = s.first, f.isWhitespace { s = s.dropFirst() }
        while let l = s.last, l.isWhitespace { s = s.dropLast() }
        return s
    }
}
