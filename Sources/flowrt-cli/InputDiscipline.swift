import ArgumentParser
import FlowRuntime
import Foundation

/// Checks every command makes before it starts working: numbers in range
/// (with the option's name and rule), output paths that can be written,
/// file paths in every load error.
enum Checked {
    /// A transform for count and size options: an integer ≥ `minimum`.
    /// Options using it are declared with `parsing: .unconditional`, so that
    /// `-n -5` reaches the check (ArgumentParser would otherwise read `-5`
    /// as an option and say "Missing value for -n").
    static func integer(atLeast minimum: Int) -> (String) throws -> Int {
        { text in
            guard let v = Int(text) else { throw ValidationError("must be an integer ≥ \(minimum), got '\(text)'") }
            guard v >= minimum else { throw ValidationError("must be an integer ≥ \(minimum), got \(v)") }
            return v
        }
    }

    /// A transform for seeds: an integer in 0...2^64 − 1.
    static func seed(_ text: String) throws -> UInt64 {
        guard let v = UInt64(text) else { throw ValidationError("must be an integer in 0...18446744073709551615, got '\(text)'") }
        return v
    }

    /// Refuses an output path before any work starts: it must end in one of
    /// `extensions`, not be a folder, and its folder must exist and accept a
    /// new file (probed by creating and removing a temporary file there:
    /// outputs are written beside the path and renamed into place).
    static func writable(_ path: String, option: String, extensions: [String]) throws {
        guard extensions.isEmpty || extensions.contains(where: { path.hasSuffix($0) }) else {
            throw ValidationError("\(option) '\(path)': the file name must end in \(extensions.joined(separator: " or "))")
        }
        var isFolder: ObjCBool = false
        if FileManager.default.fileExists(atPath: path, isDirectory: &isFolder), isFolder.boolValue {
            throw ValidationError("\(option) '\(path)' is a folder")
        }
        let folder = (path as NSString).deletingLastPathComponent.isEmpty ? "." : (path as NSString).deletingLastPathComponent
        guard FileManager.default.fileExists(atPath: folder, isDirectory: &isFolder), isFolder.boolValue else {
            throw ValidationError("\(option) '\(path)': the folder '\(folder)' does not exist")
        }
        var template = Array("\(path).probe.XXXXXX".utf8CString)
        let fd = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
        guard fd >= 0 else {
            throw ValidationError("\(option) '\(path)' cannot be written: \(String(cString: strerror(errno)))")
        }
        close(fd)
        unlink(String(cString: template))
    }

    /// Runs a load of `path`, naming the path in any error it throws.
    static func loading<T>(_ path: String, _ body: () throws -> T) throws -> T {
        do { return try body() } catch let e as FlowError where !e.message.contains(path) {
            throw e.prefixed("'\(path)': ")
        }
    }
}

/// Rows written as they arrive to .npy (header first, then the rows) or
/// .csv, for outputs of a known row count: memory stays bounded by a block.
final class RowWriter {
    private let npy: NPY.Writer?
    private let csv: AtomicFileWriter?
    private let columns: Int, float32: Bool

    /// - Parameters:
    ///   - columns: values per row; nil writes a vector `[rows]`.
    ///   - header: the CSV header line's names (nil: none).
    init(path: String, rows: Int, columns: Int?, float32: Bool, header: [String]? = nil) throws {
        self.columns = columns ?? 1
        self.float32 = float32
        if path.hasSuffix(".npy") {
            npy = try NPY.Writer(path: path, shape: columns.map { [rows, $0] } ?? [rows], type: float32 ? .float32 : .float64)
            csv = nil
        } else if path.hasSuffix(".csv") {
            npy = nil
            csv = try AtomicFileWriter(path: path)
            if let header { try csv!.write(Array((header.joined(separator: ",") + "\n").utf8)) }
        } else {
            throw ValidationError("'\(path)': output must end in .npy or .csv")
        }
    }

    /// Appends whole rows (C order).
    func append<S: Collection>(_ values: S) throws where S.Element: BinaryFloatingPoint {
        if let npy { return try npy.append(values) }
        var text = ""
        for (i, v) in values.enumerated() {
            text += float32 ? "\(Float(v))" : "\(Double(v))"
            text += (i + 1) % columns == 0 ? "\n" : ","
        }
        try csv!.write(Array(text.utf8))
    }

    /// Appends rows of two columns, a[i] and b[i] (CSV only).
    func append(pairs a: [Double], _ b: [Double]) throws {
        var interleaved: [Double] = []
        interleaved.reserveCapacity(2 * a.count)
        for i in a.indices { interleaved += [a[i], b[i]] }
        try append(interleaved)
    }

    /// Moves the complete file into place.
    func finish() throws {
        if let npy { try npy.finish() } else { try csv!.commit() }
    }
}
