// swift-tools-version:5.9
// The FlowRuntime side of bench/quality: one process per (dataset, schedule,
// seed) that trains with the library's Trainer and measures likelihood and
// sampling in-process, so the timings contain no file or process overhead.
import PackageDescription

let package = Package(
    name: "flowrt-quality",
    dependencies: [.package(name: "FlowRuntime", path: "../../..")],
    targets: [
        .executableTarget(
            name: "flowrt-quality",
            dependencies: [.product(name: "FlowRuntime", package: "FlowRuntime")],
            path: "Sources/flowrt-quality"),
    ]
)
