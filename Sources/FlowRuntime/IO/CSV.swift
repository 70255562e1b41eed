/// Comma-separated numbers: one row per line, the same number of columns on
/// every row. Blank lines and lines starting with `#` are skipped. The first
/// row is a header (skipped) when the caller says so (`header: true`) or
/// when none of its cells is a number; a row mixing numbers and other text
/// is an error naming the line and column, never silently dropped.
/// Fields may be padded with spaces; `nan` and `inf` parse (callers reject
/// them where finite values are required).
public enum CSV {
    /// Parses CSV text into a `[rows, columns]` array.
    /// - Throws: `.io` naming the line and field that is not a number, or a
    ///   row with a different column count; `.io` for no rows at all.
    public static func decode(_ text: String, header: Bool = false) throws -> NumericArray {
        var values: [Double] = []
        var columns = -1, rows = 0, lineNumber = 0, sawContent = false
        for rawLine in text.split(omittingEmptySubsequences: false, whereSeparator: \.isNewline) {
            lineNumber += 1
            let line = rawLine.trimmingSpaces
            if line.isEmpty || line.hasPrefix("#") { continue }
            let fields = line.split(separator: ",", omittingEmptySubsequences: false).map { $0.trimmingSpaces }
            if !sawContent {
                sawContent = true
                // The header: announced, or a first row without a single number.
                if header || fields.allSatisfy({ Double($0) == nil }) { continue }
            }
            var row: [Double] = []
            row.reserveCapacity(fields.count)
            for (column, f) in fields.enumerated() {
                guard let v = Double(f) else {
                    throw FlowError.io("CSV line \(lineNumber), column \(column + 1): '\(f)' is not a number")
                }
                row.append(v)
            }
            if columns < 0 { columns = row.count }
            guard row.count == columns else {
                throw FlowError.io("CSV line \(lineNumber) has \(row.count) columns; earlier rows have \(columns)")
            }
            if values.count + row.count > values.capacity {
                // Growth goes through the checked path: a file too large for
                // memory is `.outOfMemory`, not an abort.
                let capacity = Swift.max(2 * values.capacity, values.count + row.count, 1024)
                try HostMemory.reserve(capacity, of: Double.self, for: "CSV values")
                values.reserveCapacity(capacity)
            }
            values += row
            rows += 1
        }
        guard rows > 0 else { throw FlowError.io("CSV holds no rows of numbers") }
        return NumericArray(shape: [rows, columns], values: values)
    }

    /// Formats a rank-1 or rank-2 array as CSV (the shortest decimal that
    /// round-trips each value, as float32 when `float32`), with an optional
    /// header line.
    public static func encode(_ array: NumericArray, header: [String]? = nil, float32: Bool = false) -> String {
        precondition(array.shape.count == 1 || array.shape.count == 2, "CSV holds vectors or matrices")
        let columns = array.shape.count == 2 ? array.shape[1] : 1
        var out = ""
        if let header { out += header.joined(separator: ",") + "\n" }
        guard columns > 0 else { return out }
        for (i, v) in array.values.enumerated() {
            out += float32 ? "\(Float(v))" : "\(v)"
            out += (i + 1) % columns == 0 ? "\n" : ","
        }
        return out
    }

    /// Reads a CSV file (`header` as in `decode`). - Throws: `.io` naming the path.
    public static func read(path: String, header: Bool = false) throws -> NumericArray {
        let bytes = try FileIO.read(path)
        do { return try decode(String(decoding: bytes, as: UTF8.self), header: header) } catch let FlowError.io(m) { throw FlowError.io("\(path): \(m)") }
    }

    /// Writes a CSV file atomically. - Throws: `.io`.
    public static func write(_ array: NumericArray, header: [String]? = nil, float32: Bool = false, to path: String) throws {
        try FileIO.writeAtomically(Array(encode(array, header: header, float32: float32).utf8), to: path)
    }
}
