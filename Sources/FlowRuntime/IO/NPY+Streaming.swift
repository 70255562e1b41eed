#if canImport(Glibc)
import Glibc
#endif

extension NPY {
    /// Writes a C-order `.npy` file of a known shape row block by row block:
    /// the header first, then the elements as they are appended, so memory
    /// stays bounded by a block whatever the file's size. The file appears
    /// at its path (atomically) only when `finish()` has checked that every
    /// element was written.
    public final class Writer {
        private let output: AtomicFileWriter
        /// The array's shape; `type` its element type on disk.
        public let shape: [Int], type: ElementType
        private let count: Int
        /// Elements written so far.
        public private(set) var written = 0

        /// - Throws: `.io` when the file cannot be created, `.invalidArgument`
        ///   for a negative or overflowing shape.
        public init(path: String, shape: [Int], type: ElementType) throws {
            guard let count = shape.checkedElementCount, !count.multipliedReportingOverflow(by: type.size).overflow else {
                throw FlowError.invalidArgument(".npy shape \(shape) is too large")
            }
            self.shape = shape
            self.type = type
            self.count = count
            output = try AtomicFileWriter(path: path)
            try output.write(NPY.header(shape: shape, type: type))
        }

        /// Appends elements in C order.
        /// - Throws: `.io` (write failed, or more elements than the shape holds).
        public func append<S: Collection>(_ values: S) throws where S.Element: BinaryFloatingPoint {
            guard written + values.count <= count else {
                throw FlowError.io("'\(output.path)': \(written + values.count) elements exceed the shape \(shape)")
            }
            var bytes: [UInt8] = []
            bytes.reserveCapacity(values.count * type.size)
            NPY.append(values.lazy.map { Double($0) }, as: type, to: &bytes)
            try output.write(bytes)
            written += values.count
        }

        /// Checks the element count and moves the file into place.
        /// - Throws: `.io`.
        public func finish() throws {
            guard written == count else {
                throw FlowError.io("'\(output.path)': \(written) of \(count) elements written")
            }
            try output.commit()
        }
    }

    /// Reads the rows of a C-order `.npy` file (1-D or 2-D) block by block,
    /// so memory stays bounded by a block whatever the file's size. Fortran
    /// order cannot be read by rows: `NPY.read` reads it whole.
    public final class Reader {
        public let path: String
        public let header: Header
        private let file: UnsafeMutablePointer<FILE>

        /// Reads and checks the header and the file size against the shape.
        /// - Throws: `.io` naming the path (unreadable, malformed, data size
        ///   not matching the shape), `.unsupported` (dtype, version, or
        ///   Fortran order).
        public init(path: String) throws {
            (file, header) = try Self.open(path)
            self.path = path
        }

        /// Opens and checks the file; closes it again on any error.
        private static func open(_ path: String) throws -> (UnsafeMutablePointer<FILE>, Header) {
            guard let f = fopen(path, "rb") else { throw FlowError.io("cannot open '\(path)': \(String(cString: strerror(errno)))") }
            do {
                var info = stat()
                guard fstat(fileno(f), &info) == 0, (info.st_mode & S_IFMT) == S_IFREG else {
                    throw FlowError.io("'\(path)' is not a regular file")
                }
                let size = Int(info.st_size)
                var start = [UInt8](repeating: 0, count: Swift.min(size, 12 + NPY.maxHeaderLength))
                guard fread(&start, 1, start.count, f) == start.count else { throw FlowError.io("short read of '\(path)'") }
                let header: Header
                do { header = try NPY.prefix(start) } catch let FlowError.io(m) { throw FlowError.io("\(path): \(m)") }
                guard size - header.dataStart == header.count * header.type.size else {
                    throw FlowError.io("\(path): .npy data holds \(size - header.dataStart) bytes; shape \(header.shape) of \(header.type.rawValue) needs \(header.count * header.type.size)")
                }
                guard !header.fortranOrder || header.shape.count < 2 else {
                    throw FlowError.unsupported("\(path): Fortran-order .npy files are read whole, not by rows")
                }
                guard header.shape.count == 1 || header.shape.count == 2 else {
                    throw FlowError.shapeMismatch("\(path): .npy shape \(header.shape); expected [n, d] rows")
                }
                return (f, header)
            } catch {
                fclose(f)
                throw error
            }
        }

        deinit { fclose(file) }

        /// Rows of the array (its first extent).
        public var rows: Int { header.shape.first ?? 0 }
        /// Elements per row (1 for a vector).
        public var columns: Int { header.shape.count == 2 ? header.shape[1] : 1 }

        /// Rows `range` as Doubles in C order, `[range.count, columns]`.
        /// - Throws: `.io` naming the path.
        public func read(rows range: Range<Int>) throws -> [Double] {
            precondition(range.lowerBound >= 0 && range.upperBound <= rows)
            let size = header.type.size, n = range.count * columns
            let offset = header.dataStart + range.lowerBound * columns * size
            var raw = try HostMemory.array(repeating: UInt8(0), count: n * size, for: "reading '\(path)'")
            guard fseeko(file, off_t(offset), SEEK_SET) == 0, fread(&raw, 1, raw.count, file) == raw.count else {
                throw FlowError.io("short read of '\(path)' at byte \(offset)")
            }
            var out = [Double](repeating: 0, count: n)
            raw.withUnsafeBufferPointer { p in
                NPY.convert(p.baseAddress!, count: n, type: header.type, bigEndian: header.bigEndian, into: &out, at: 0)
            }
            return out
        }
    }
}
