/// Limits every front end shares (the Swift API, the C ABI and the CLI
/// check and print these, never their own copies; issue 16 item 4 "names
/// and limits defined once"). The interpolant names live with the
/// schedules (`ScheduleKind`, `ScheduleMetadata`).
public enum Limits {
    /// Worker threads of any parallel call: solvers, trainers, the SDE sampler.
    public static let threads = 1...4096
    /// Hutchinson probe vectors per sample.
    public static let probes = 1...4096

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
