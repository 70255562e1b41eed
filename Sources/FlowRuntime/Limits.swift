/// Limits every front end shares (the Swift API, the C ABI and the CLI
/// check and print these, never their own copies; issue 16 item 4 "names
/// and limits defined once"). The interpolant names live with the
/// schedules (`ScheduleKind`, `ScheduleMetadata`).
public enum Limits {
    /// Worker threads of any parallel call: solvers, trainers, the SDE sampler.
    public static let threads = 1...4096
    /// Hutchinson probe vectors per sample.
    public static let probes = 1...4096
    /// Elements of a batch (count × dimension) and of any size the C ABI
    /// takes: below 2^40.
    public static let elements = 1 << 40

    /// count × dimension for a batch of `count` samples.
    /// - Throws: `.invalidArgument` unless 0 ≤ count and count × dimension < `elements`.
    public static func checkSampleCount(_ count: Int, dimension: Int) throws -> Int {
        let (nd, overflow) = count.multipliedReportingOverflow(by: dimension)
        guard count >= 0, !overflow, nd < elements else {
            throw FlowError.invalidArgument("sample count \(count) must be ≥ 0 and count × dim < 2^40")
        }
        return nd
    }

    /// - Throws: `.invalidArgument` naming `what` unless `count` is in `Limits.threads`.
    public static func checkThreads(_ count: Int, _ what: String = "threads") throws {
        guard threads.contains(count) else {
            throw FlowError.invalidArgument("\(what) \(count) must be in \(threads.lowerBound)...\(threads.upperBound)")
        }
    }

    /// - Throws: `.invalidArgument` naming `what` unless `count` is in `Limits.probes`.
    public static func checkProbes(_ count: Int, _ what: String = "Hutchinson probe count") throws {
        guard probes.contains(count) else {
            throw FlowError.invalidArgument("\(what) \(count) must be in \(probes.lowerBound)...\(probes.upperBound)")
        }
    }
}
