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
        let x = try ArrayFile.readPoints(data, dimension: f.dimension, header: header)
        let start = Date()
        let r = try f.encode(points: x, solver: options, progress: solver.progress())
        solver.report(r.statistics, seconds: Date().timeIntervalSince(start))
        try ArrayFile.write(NumericArray(r.points), to: out, float32: true)
    }
}
