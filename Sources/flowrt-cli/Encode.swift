import ArgumentParser
import FlowRuntime
import Foundation

/// `flowrt encode`: map data to the base (the backward transport).
struct Encode: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Encode points into the base: integrate from t = 1 back to t = 0.",
        discussion: """
            Example:
              flowrt encode model.onnx --data points.npy --out codes.npy
            A C-order .npy input is read, and the codes written, in blocks of up
            to 65 536 rows (bounded memory); CSV input is read whole.
            """)

    @OptionGroup var flow: FlowModelOptions
    @Option(help: "Points [n, d]: .npy (float32/float64) or .csv.") var data: String
    @Flag(help: "The CSV's first row is a header (otherwise only a row without any number is).") var header = false
    @Option(help: "Where to write the codes [n, d] (.npy float32 or .csv).") var out: String
    @OptionGroup var solver: SolverArguments

    func run() throws {
        try Checked.writable(out, option: "--out", extensions: [".npy", ".csv"])
        let options = try solver.options()
        let f = try flow.makeFlow()
        // Streamed like logprob: a C-order .npy is read by blocks and the
        // codes are written as each block finishes.
        let input = try PointRows(path: data, dimension: f.dimension, header: header)
        let codes = try RowWriter(path: out, rows: input.count, columns: f.dimension, float32: true)
        let start = Date()
        let statistics = try f.transportBlocks(count: input.count, from: 1, to: 0, solver: options,
                                               progress: solver.progress(), points: input.rows) { _, r in
            try codes.append(r.points.scalars)
        }
        solver.report(statistics, seconds: Date().timeIntervalSince(start),
                      precision: (f.field as? Model)?.effectivePrecision())
        try codes.finish()
    }
}
