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
        // zlib's gzread for gzip-compressed IDX image files (ImageData).
        .systemLibrary(
            name: "CZlib", path: "Sources/CZlib", pkgConfig: "zlib",
            providers: [.apt(["zlib1g-dev"])]),
        // Vectorised elementwise kernels in C, compiled once per ISA level
        // (AVX-512, AVX2+FMA, baseline) and dispatched at load time.
        .target(name: "CKernels", path: "Sources/CKernels"),
        // ONNX protobuf structs and (un)packers, generated once by protoc-c
        // from Debian's /usr/include/onnx/onnx.proto (`make regen-onnx-proto`);
        // builds never need the generator, only libprotobuf-c.
        .target(
            name: "ONNXProto", path: "Sources/ONNXProto",
            linkerSettings: [.linkedLibrary("protobuf-c")]),
        .target(
            name: "FlowRuntime",
            dependencies: ["CBLAS", "CKernels", "ONNXProto", "CZlib"],
            path: "Sources/FlowRuntime"),
        // The public header as a Clang module for the CAPI implementation.
        .systemLibrary(name: "CFlowRT", path: "Sources/CFlowRT"),
        .target(
            name: "CAPI",
            dependencies: ["FlowRuntime", "CFlowRT"],
            path: "Sources/CAPI",
            exclude: ["exports.map"],
            linkerSettings: [
                // libflowrt.so: a soname, the Swift runtime linked in, and
                // only flowrt_* symbols exported (Sources/CAPI/exports.map).
                // RULE: FlowRuntime and CAPI must not import Foundation.
                // -static-stdlib does not link Foundation's static
                // dependencies (CoreFoundation, ICU: +60 MB); use Glibc
                // (fopen/fread/fwrite/rename, pthread, sysconf) and the
                // `Mutex` in Tensor/Parallel.swift instead.
                .unsafeFlags([
                    "-static-stdlib",
                    "-Xlinker", "-soname=libflowrt.so.0",
                    "-Xlinker", "--version-script=Sources/CAPI/exports.map",
                ]),
            ]),
        .executableTarget(
            name: "flowrt-cli",
            dependencies: [
                "FlowRuntime",
                // `flowrt info`: the header's version macros, the kernels' ISA, OpenBLAS's build.
                "CFlowRT", "CKernels", "CBLAS",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            path: "Sources/flowrt-cli",
            // main.swift holds an @main type; with other files in the target
            // it must be parsed as a library file, not top-level code.
            swiftSettings: [.unsafeFlags(["-parse-as-library"])]),
        .testTarget(
            name: "FlowRuntimeTests",
            dependencies: ["FlowRuntime", "CKernels", "CZlib"],
            path: "Tests/FlowRuntimeTests"),
    ]
)
