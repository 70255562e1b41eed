import ArgumentParser
import FlowRuntime

/// `flowrt`: train, sample, score and convert flows from the command line.
/// Each subcommand lives in its own file in this folder.
@main
struct FlowRTCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "flowrt",
        abstract: "Normalizing flows from stochastic interpolants (InterFlow).",
        version: flowrtVersion,
        subcommands: [
            Info.self,
            Train.self,
            Demo.self,
            DemoImages.self,
            Sample.self,
            LogProb.self,
            Encode.self,
            Paths.self,
            ScoreCommand.self,
            SampleSDE.self,
            Inspect.self,
            Conditional.self,
            // (subcommands: add one line per command file)
        ])
}
