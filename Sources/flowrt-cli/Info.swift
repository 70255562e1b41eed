import ArgumentParser
import CBLAS
import CFlowRT
import CKernels
import FlowRuntime
#if canImport(Glibc)
import Glibc
#endif

/// The release this CLI is built from: the version macros of
/// include/flowrt.h, the ones libflowrt.so reports through
/// flowrt_version_string (the CLI links the same FlowRuntime sources).
let flowrtVersion = "\(FLOWRT_VERSION_MAJOR).\(FLOWRT_VERSION_MINOR).\(FLOWRT_VERSION_PATCH)"

/// `flowrt info`: version and build facts.
struct Info: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Print version and build information.")

    func run() throws {
        print("flowrt \(flowrtVersion)")
        print("  version number:  \(FLOWRT_VERSION_MAJOR * 10000 + FLOWRT_VERSION_MINOR * 100 + FLOWRT_VERSION_PATCH) (FLOWRT_VERSION_NUMBER)")
        print("  build:           \(Self.configurationName), \(Self.compiler), \(Self.architecture)-linux")
        print("  dense kernels:   \(fr_dense_avx512_active() != 0 ? "AVX-512F" : "portable (no AVX-512F)")")
        print("  bf16:            \(Precision.bf16Available ? "available (AVX512_BF16): --precision bf16 runs bfloat16 products" : "not available (no AVX512_BF16): --precision bf16 runs float32")")
        if let config = openblas_get_config() {
            print("  BLAS:            \(String(cString: config))")
        }
        print("  threads:         \(Parallel.defaultThreads) by default (FLOWRT_NUM_THREADS, else online processors)")
    }

    static var configurationName: String {
        #if DEBUG
        return "debug"
        #else
        return "release"
        #endif
    }

    static var compiler: String {
        #if compiler(>=7.0)
        return "Swift ≥ 7.0"
        #elseif compiler(>=6.3)
        return "Swift 6.3"
        #elseif compiler(>=6.2)
        return "Swift 6.2"
        #elseif compiler(>=6.1)
        return "Swift 6.1"
        #else
        return "Swift < 6.1"
        #endif
    }

    static var architecture: String {
        #if arch(x86_64)
        return "x86_64"
        #elseif arch(arm64)
        return "aarch64"
        #else
        return "unknown architecture"
        #endif
    }
}
