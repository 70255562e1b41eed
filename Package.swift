// swift-tools-version:5.9
import PackageDescription

let package = Package(
    name: "FlowRuntime",
    products: [
        // libflowrt.so: the C ABI declared in include/flowrt.h.
        .library(name: "flowrt", type: .dynamic, targets: ["CAPI"]),
        .library(name: "FlowRuntime", targets: ["FlowRuntime"]),
        // The command-line tool; `make install` installs it as `flowrt`.
        .executable(name: "flowrt-cli", targets: ["flowrt-cli"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
    ],
    targets: [
        .systemLibrary(
            name: "CBLAS", path: "Sources/CBLAS", pkgConfig: "openblas",
            providers: [.apt(["libopenblas-dev"])]),
        // Vectorised elementwise kernels in C, compiled once per ISA level
        // (AVX-512, AVX2+FMA, baseline) and dispatched at load time.
        .target(name: "CKernels", path: "Sources/CKernels"),
        .target(
            name: "FlowRuntime",
            dependencies: ["CBLAS", "CKernels"],
            path: "Sources/FlowRuntime"),
        .target(
            name: "CAPI",
            dependencies: ["FlowRuntime"],
            path: "Sources/CAPI"),
        .executableTarget(
            name: "flowrt-cli",
            dependencies: [
                "FlowRuntime",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            path: "Sources/flowrt-cli"),
        .testTarget(
            name: "FlowRuntimeTests",
            dependencies: ["FlowRuntime"],
            path: "Tests/FlowRuntimeTests"),
    ]
)
