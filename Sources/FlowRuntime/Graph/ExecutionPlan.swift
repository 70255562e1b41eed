import CKernels
#if canImport(Glibc)
import Glibc
#endif

/// What the executor precomputes for a graph: per-value sizes, which values
/// carry tangents (depend on x) and which carry gradients (depend on a
/// trainable parameter), and a contiguous copy of the parameters.
final class ExecutionPlan: @unchecked Sendable {
    let graph: Graph
    /// Per-sample element count of each batched value (full count for parameters).
    let sizes: [Int]
    /// Value depends on x: has a tangent in a JVP.
    let hasTangent: [Bool]
    /// Value depends on a trainable parameter: has a gradient in a VJP.
    let hasGradient: [Bool]
    /// Per-sample shape used when a value meets batched values (parameters
    /// with a leading 1 lose it).
    let broadcastShapes: [[Int]]
    /// Immutable parameters for inference (a trainer brings its own store).
    let parameters: ParameterStore
    /// The largest per-sample size of a batched value (sizes tangent chunks).
    let widestBatchedSize: Int
    /// Inference buffers: values never alive at the same time share a slot
    /// (`slots[v]`), so a forward pass without derivatives holds only the
    /// live set (a U-Net's skip connections), not every intermediate.
    /// Recorded passes keep one buffer per value (derivatives read them).
    let slots: [Int]
    let slotCount: Int
    /// Floats per sample of the largest set of values alive at once in an
    /// inference pass (sizes chunks of big batches).
    let peakLiveSize: Int
    /// Inference only: per node, the attention chain it runs fused (at its
    /// first node), and the nodes such a chain computes instead
    /// (`AttentionFusion`). Recorded passes run every node.
    let attentionFusions: [AttentionFusion?]
    let fusedAway: [Bool]

    init(_ graph: Graph, packWeights: Bool = PackedWeights.available) throws {
        self.graph = graph
        var sizes = [Int]()
        for v in graph.values {
            guard let n = v.shape.checkedElementCount, n < (1 << 40) else {
                throw FlowError.invalidModel("value '\(v.name)' has an absurd shape \(v.shape)")
            }
            sizes.append(n)
        }
        self.sizes = sizes
        self.hasTangent = graph.dependsOnX()
        var grad = [Bool](repeating: false, count: graph.values.count)
        for (i, v) in graph.values.enumerated() {
            if case .parameter(let p) = v.source, graph.parameters[p].isTrainable { grad[i] = true }
        }
        for node in graph.nodes where node.inputs.contains(where: { grad[$0] }) { grad[node.output] = true }
        self.hasGradient = grad
        var bs = [[Int]]()
        for v in graph.values {
            if v.isBatched { bs.append(v.shape) }
            else if v.shape.first == 1 && v.shape.count > 1 { bs.append(Array(v.shape.dropFirst())) }
            else { bs.append(v.shape) }
        }
        self.broadcastShapes = bs
        guard graph.values[graph.output].isBatched, graph.values[graph.output].shape.elementCount == graph.dimension else {
            throw FlowError.invalidModel("the output must be batched with \(graph.dimension) values per sample")
        }
        for (i, node) in graph.nodes.enumerated() {
            guard node.output < graph.values.count, graph.values[node.output].source == .node(i),
                  node.inputs.allSatisfy({ $0 < node.output || graph.values[$0].source == .inputX
                      || graph.values[$0].source == .inputT || graph.values[$0].source == .inputContext }) else {
                throw FlowError.invalidModel("node '\(node.name)' is out of topological order")
            }
            for p in node.inputs {
                if case .parameter(let k) = graph.values[p].source,
                   graph.parameters[k].tensor.shape != graph.values[p].shape {
                    throw FlowError.invalidModel("parameter '\(graph.values[p].name)' does not match its declared shape")
                }
            }
        }
        self.parameters = ParameterStore(graph, packWeights: packWeights)
        self.widestBatchedSize = zip(graph.values, sizes).filter { $0.0.isBatched }.map(\.1).max() ?? 1
        var readers = [Int](repeating: 0, count: graph.values.count)
        for node in graph.nodes { for i in node.inputs { readers[i] += 1 } }
        var fusions = [AttentionFusion?](repeating: nil, count: graph.nodes.count)
        var away = [Bool](repeating: false, count: graph.nodes.count)
        var pinned = Set<ValueID>()
        for n in graph.nodes.indices where !away[n] {
            guard let f = AttentionFusion.starting(at: n, in: graph, readers: readers, skipped: away,
                                                   pinned: pinned) else { continue }
            fusions[n] = f
            for a in f.away { away[a] = true }
            pinned.formUnion([f.q.base, f.k.base, f.v.base])
        }
        attentionFusions = fusions
        fusedAway = away
        let views = graph.nodes.map { node -> Bool in
            node.operation.op is ReshapeOp && graph.values[node.inputs[0]].isBatched
        }
        (slots, slotCount, peakLiveSize) = Self.assignSlots(graph, sizes: sizes, fusions: fusions, views: views)
    }

    /// Greedy slot assignment in execution order: a value's slot is freed
    /// after its last reader runs (never the output's); a new value takes a
    /// free slot (the largest, so buffers grow rarely) or a new one. An op's
    /// output never shares a slot with its inputs (they are freed after it).
    /// A fused attention chain takes its output's slot at its first node,
    /// keeps its operands' bases until then; S, P and the values of the
    /// nodes it skips get none. A view node (`views[n]`: a Reshape of a batched
    /// value, whose output has its input's values in the same order) gives
    /// its output its input's slot, which is freed when the last value
    /// sharing it has been read; the node then copies nothing
    /// (`ReshapeOp.forward` sees the same pointer).
    static func assignSlots(_ graph: Graph, sizes: [Int], fusions: [AttentionFusion?] = [], views: [Bool] = [])
        -> (slots: [Int], count: Int, peak: Int) {
        var produced = graph.nodes.map { [$0.output] }
        for case let f? in fusions {
            produced[f.scores] = [f.output]
            for a in f.away { produced[a] = [] }
        }
        // root[v]: the value whose slot v shares (itself unless v is a view).
        var root = Array(graph.values.indices)
        for (n, node) in graph.nodes.enumerated() where n < views.count && views[n] && !produced[n].isEmpty {
            root[node.output] = root[node.inputs[0]]
            produced[n] = []
        }
        var lastUse = [Int](repeating: -1, count: graph.values.count)
        for (n, node) in graph.nodes.enumerated() { for i in node.inputs { lastUse[root[i]] = Swift.max(lastUse[root[i]], n) } }
        // A fused chain reads its operands' bases when it runs (at its first node).
        for case let f? in fusions {
            for b in [f.q.base, f.k.base, f.v.base] { lastUse[root[b]] = Swift.max(lastUse[root[b]], f.scores) }
        }
        lastUse[root[graph.output]] = Int.max
        var slots = [Int](repeating: -1, count: graph.values.count)
        var slotSize: [Int] = [], free: [Int] = []
        var live = 0, peak = 0
        func take(_ v: ValueID) {
            let i: Int
            if let best = free.indices.max(by: { slotSize[free[$0]] < slotSize[free[$1]] }) {
                i = free.remove(at: best)
            } else {
                i = slotSize.count
                slotSize.append(0)
            }
            slotSize[i] = Swift.max(slotSize[i], sizes[v])
            slots[v] = i
            live += sizes[v]
            peak = Swift.max(peak, live)
        }
        for (v, value) in graph.values.enumerated() {
            switch value.source {
            case .inputX, .inputT, .inputContext: take(v)
            default: break
            }
        }
        for (n, node) in graph.nodes.enumerated() {
            for v in produced[n] { take(v) }
            if n < views.count && views[n] && root[node.output] != node.output { slots[node.output] = slots[root[node.output]] }
            var reads = node.inputs
            if n < fusions.count, let f = fusions[n] { reads += [f.q.base, f.k.base, f.v.base] }
            for i in Set(reads.map { root[$0] }) where lastUse[i] == n && slots[i] >= 0 {
                free.append(slots[i])
                live -= sizes[i]
            }
        }
        return (slots, slotSize.count, Swift.max(peak, 1))
    }
}

/// Parameters as stable pointers, one allocation per tensor.
final class ParameterStore: @unchecked Sendable {
    let pointers: [UnsafeMutablePointer<Float>]
    let counts: [Int]
    /// Per node: the weight an op asked to have packed for `fr_gemm_packed`
    /// (`GraphOp.weightPacking`), or nil (no request, weights computed by the
    /// graph, or no packed kernel here).
    let packed: [UnsafeMutablePointer<Float>?]
    /// Whether Linear weights are packed (asked for, and the CPU has the kernel).
    let packsWeights: Bool
    /// Per node: the weight packed for the layer's input gradient
    /// (`fr_linear_backward_pack`), when the store was made for training
    /// (`packBackward`) and packs weights; else nil.
    let packedBackward: [UnsafeMutablePointer<Float>?]
    /// What `repack` rebuilds: node, parameter, layout.
    private let packing: [PackedLinear]
    private struct PackedLinear { let node, parameter, out, `in`: Int; let inOutLayout: Bool }
    /// Per node: the weight in the op's own layout (`GraphOp.derivedWeights`),
    /// when the store packs weights; else nil. Kept current by `repack`.
    let derived: [UnsafeMutablePointer<Float>?]
    private let deriving: [(node: Int, parameter: Int, request: DerivedWeights)]
    /// Other ops' bf16 copies (`GraphOp.bf16Packing`), built by `prepareBF16`.
    private let bf16Packing: [(node: Int, parameter: Int, request: BF16Packing)]
    /// Per node: a bfloat16 copy of the packed weight (`fr_pack_weights_bf16`)
    /// for layers with at least `Precision.bf16MinimumWidth` inputs and outputs; empty
    /// until `prepareBF16` builds them, then kept current by `repack`.
    private(set) var packedBF16: [UnsafeMutablePointer<UInt16>?] = []
    private let bf16Lock = Mutex()

    /// - Parameter packWeights: keep packed copies of Linear weights (default:
    ///   when the CPU has the packed kernel). Tests turn it off to compare
    ///   against the unpacked path.
    ///   - packBackward: also keep the copies the dense backward kernel
    ///     reads (`fr_linear_backward`; differentiators of trainers).
    init(_ graph: Graph, packWeights: Bool = PackedWeights.available, packBackward: Bool = false) {
        var ps = [UnsafeMutablePointer<Float>]()
        for p in graph.parameters {
            let ptr = UnsafeMutablePointer<Float>.allocate(capacity: Swift.max(p.tensor.count, 1))
            p.tensor.scalars.withUnsafeBufferPointer { ptr.update(from: $0.baseAddress!, count: $0.count) }
            ps.append(ptr)
        }
        pointers = ps
        counts = graph.parameters.map(\.tensor.count)
        var packing: [PackedLinear] = []
        var packed = [UnsafeMutablePointer<Float>?](repeating: nil, count: graph.nodes.count)
        packsWeights = packWeights && PackedWeights.available
        if packsWeights {
            for (n, node) in graph.nodes.enumerated() {
                guard let request = node.operation.op.weightPacking(node.inputs.map { graph.values[$0] }),
                      case .parameter(let p) = graph.values[node.inputs[request.input]].source,
                      request.out > 0, request.in > 0 else { continue }
                // Panels pad `out` to a multiple of 16: allow that for small
                // layers (a 256→2 output layer), never more than 2× a big one,
                // so a hostile file cannot make packing allocate 16× its weights.
                let padded = fr_packed_count(request.out, request.in)
                guard padded <= 2 * request.out * request.in || padded <= 1 << 20 else { continue }
                let bytes = padded * MemoryLayout<Float>.stride
                packed[n] = UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: 64)
                    .bindMemory(to: Float.self, capacity: bytes / MemoryLayout<Float>.stride)
                packing.append(PackedLinear(node: n, parameter: p, out: request.out, in: request.in,
                                            inOutLayout: request.inOutLayout))
            }
        }
        self.packed = packed
        self.packing = packing
        var bf16Packing: [(node: Int, parameter: Int, request: BF16Packing)] = []
        for (n, node) in graph.nodes.enumerated() {
            guard let request = node.operation.op.bf16Packing(node.inputs.map { graph.values[$0] }),
                  case .parameter(let p) = graph.values[node.inputs[request.input]].source, request.count > 0,
                  request.count <= 2 * Swift.max(counts[p], 16) else { continue }  // a bf16 copy, not more
            bf16Packing.append((n, p, request))
        }
        self.bf16Packing = bf16Packing
        var derived = [UnsafeMutablePointer<Float>?](repeating: nil, count: graph.nodes.count)
        var deriving: [(node: Int, parameter: Int, request: DerivedWeights)] = []
        if packsWeights {
            for (n, node) in graph.nodes.enumerated() {
                guard let request = node.operation.op.derivedWeights(node.inputs.map { graph.values[$0] }),
                      case .parameter(let p) = graph.values[node.inputs[request.input]].source, request.count > 0,
                      request.count <= 4 * Swift.max(counts[p], 16) else { continue }  // transforms, not more
                let bytes = request.count * MemoryLayout<Float>.stride
                derived[n] = UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: 64)
                    .bindMemory(to: Float.self, capacity: request.count)
                deriving.append((n, p, request))
            }
        }
        self.derived = derived
        self.deriving = deriving
        var backward = [UnsafeMutablePointer<Float>?](repeating: nil, count: graph.nodes.count)
        if packBackward {
            for e in packing {
                let bytes = fr_linear_backward_packed_floats(e.out, e.in) * MemoryLayout<Float>.stride
                backward[e.node] = UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: 64)
                    .bindMemory(to: Float.self, capacity: bytes / MemoryLayout<Float>.stride)
            }
        }
        self.packedBackward = backward
        for p in Set(packing.map(\.parameter) + deriving.map(\.parameter)) { repack(parameter: p) }
    }

    deinit {
        for p in pointers { p.deallocate() }
        for p in packed { p?.deallocate() }
        for p in packedBackward { p?.deallocate() }
        for p in packedBF16 { p?.deallocate() }
        for p in derived { p?.deallocate() }
    }

    /// Whether bf16 copies exist for at least one layer.
    var hasBF16Weights: Bool { packedBF16.contains { $0 != nil } }

    /// The bf16 copy of node `n`'s weight, or nil.
    @inline(__always) func bf16Weights(_ n: Int) -> UnsafeMutablePointer<UInt16>? {
        n < packedBF16.count ? packedBF16[n] : nil
    }

    /// Builds the bf16 copies of the packed weights of wide layers, once.
    /// Call before any pass reads them (`Model.setPrecision` does).
    func prepareBF16() {
        bf16Lock.withLock {
            guard packedBF16.isEmpty else { return }
            var copies = [UnsafeMutablePointer<UInt16>?](repeating: nil, count: packed.count)
            for e in packing where e.in >= Precision.bf16MinimumWidth && e.out >= Precision.bf16MinimumWidth {
                let bytes = fr_bf16_packed_count(e.out, e.in) * MemoryLayout<UInt16>.stride
                let w = UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: 64)
                    .bindMemory(to: UInt16.self, capacity: bytes / MemoryLayout<UInt16>.stride)
                fr_pack_weights_bf16(pointers[e.parameter], e.inOutLayout ? 1 : 0, w, e.out, e.in)
                copies[e.node] = w
            }
            for e in bf16Packing {
                let bytes = e.request.count * MemoryLayout<UInt16>.stride
                let w = UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: 64)
                    .bindMemory(to: UInt16.self, capacity: e.request.count)
                e.request.pack(pointers[e.parameter], w)
                copies[e.node] = w
            }
            packedBF16 = copies
        }
    }

    /// Rebuilds the packed copies of parameter `p` after it changed. Not
    /// thread-safe: call between evaluations (trainers do, after each update).
    func repack(parameter p: Int) {
        for e in packing where e.parameter == p {
            fr_pack_weights(pointers[p], e.inOutLayout ? 1 : 0, packed[e.node]!, e.out, e.in)
            if let w = packedBackward[e.node] { fr_linear_backward_pack(pointers[p], e.inOutLayout ? 1 : 0, e.out, e.in, w) }
            if let w = bf16Weights(e.node) { fr_pack_weights_bf16(pointers[p], e.inOutLayout ? 1 : 0, w, e.out, e.in) }
        }
        for e in bf16Packing where e.parameter == p {
            if let w = bf16Weights(e.node) { e.request.pack(pointers[p], w) }
        }
        for e in deriving where e.parameter == p { e.request.derive(pointers[p], derived[e.node]!) }
    }

    /// The current values as graph parameters (names and flags from `template`).
    func snapshot(_ template: [Graph.Parameter]) -> [Graph.Parameter] {
        template.enumerated().map { i, p in
            var q = p
            q.tensor = Tensor(shape: p.tensor.shape, scalars: Array(UnsafeBufferPointer(start: pointers[i], count: counts[i])))
            return q
        }
    }
}

/// The packed small-and-large-batch GEMM kernel (`fr_gemm_packed`): used for
/// every Linear forward and JVP when the CPU has AVX-512F; elsewhere Linear
/// runs on `fr_gemm_small` and OpenBLAS.
enum PackedWeights {
    static let available: Bool = fr_packed_supported() != 0
}

/// Per-caller buffers of a graph evaluation: values (one per value when
/// recording, shared slots otherwise), derivative caches, tangents,
/// gradients. Reused across calls; grows to the largest batch seen.
public final class GraphWorkspace: FieldWorkspace {
    var values: [FloatBuffer] = []
    var aux: [FloatBuffer] = []
    var tangents: [FloatBuffer] = []
    var gradients: [FloatBuffer] = []
    var scratch = FloatBuffer()
    var scratch2 = FloatBuffer()
    /// Ops' second scratch (`OpContext.scratch2`); `scratch2` belongs to
    /// callers that span several passes (the divergence's basis).
    var scratch3 = FloatBuffer()
    /// Gradients of parameters, accumulated by `backward`.
    var parameterGradients: [FloatBuffer] = []
    /// Batch of the last forward pass.
    var batch = 0
    /// Whether the last forward pass cached what a JVP/VJP needs.
    var recorded = false
    /// Tangents per sample of the last JVP.
    var k = 0

    /// Inference buffers (see `ExecutionPlan.slots`).
    var slotBuffers: [FloatBuffer] = []

    /// Threads an op may split this pass's work over (`Model.velocity` sets
    /// it for a batch that is a single chunk, so that a second core helps
    /// one sample; 1 otherwise). Only ops whose pieces compute the same
    /// values as the whole do so (fused attention's row blocks, a
    /// convolution's bands of outputs), through `split`.
    var opThreads = 1
    /// Scratch of the workers of a split op, one per worker.
    private var workerScratch: [FloatBuffer] = []

    /// Multiply-adds ×2 of an op's call above which it splits over
    /// `opThreads` (about 70 µs of work on one core; a split costs a few µs
    /// while the team's helpers poll, tens once they have parked).
    static let splitFlops = 1 << 23

    /// The threads an op of `flops` whose work comes in `parts` pieces splits
    /// over: `opThreads` (at most `parts`) from `splitFlops` on, else 1.
    func splitThreads(flops: Int, parts: Int) -> Int {
        flops >= Self.splitFlops ? Swift.max(1, Swift.min(opThreads, parts)) : 1
    }

    /// Grows `workerScratch` to `workers` buffers of at least `count` floats.
    private func reserveWorkerScratch(_ workers: Int, count: Int) {
        while workerScratch.count < workers { workerScratch.append(FloatBuffer()) }
        for w in 0..<workers { _ = workerScratch[w].reserve(count) }
    }

    /// The helper threads of split ops: made at the first split, kept for
    /// the workspace's life (its helpers poll briefly after each split, so
    /// that the next one starts without waking a parked thread).
    private var team: Parallel.Team?
    /// The process that made `team` (its helpers exist only there).
    private var teamProcess: pid_t = 0

    /// `body(scratch, part)` for parts 0 ..< `parts` on `threads` threads
    /// (this one and the team's helpers), each worker with its own
    /// `scratch` floats. Parts must write disjoint memory.
    func split(parts: Int, threads: Int, scratch: Int,
               _ body: @escaping (_ scratch: UnsafeMutablePointer<Float>, _ part: Int) -> Void) {
        if let stale = team, teamProcess != getpid() {
            // A child forked after the team was made: its helpers stayed in
            // the parent. The team is abandoned, not released (its deinit
            // would join threads that do not exist here).
            _ = Unmanaged.passRetained(stale)
            team = nil
        }
        if team?.requested != threads {
            team = Parallel.Team(threads: threads)
            teamProcess = getpid()
        }
        let team = team!
        reserveWorkerScratch(team.threads, count: scratch)
        // (The workers only read `workerScratch`, grown above.)
        team.forEachChunk(count: parts, chunkSize: 1) { [self] w, i, _ in body(workerScratch[w].pointer, i) }
    }

    /// Ops' per-node plans (`OpContext.plan`): whatever an op derives from
    /// the node's static shapes and the pass's batch and tangent count
    /// (coalesced broadcast strides, matrix offsets), made on first use and
    /// kept, a few per node, so that calls after the first at a batch size
    /// allocate nothing (issue 13). Cleared when another plan's executor
    /// uses this workspace.
    private var nodePlans: [[NodePlanEntry]] = []
    /// The plan whose nodes `nodePlans` describes (held, so that no other
    /// plan can take its address while the workspace remembers it).
    private var planOwner: ExecutionPlan?
    /// Plans kept per node (batch sizes and tangent counts in use at once:
    /// a solver's full chunks and its last, short one; forward and JVP).
    static let plansPerNode = 8

    private struct NodePlanEntry {
        let batch: Int, k: Int
        let plan: AnyObject
    }

    /// Node `node`'s plan of type `P` for (`batch`, `k`), made by `make` if
    /// not kept yet. `owner` is the execution plan whose node it is.
    func plan<P: AnyObject>(node: Int, owner: ExecutionPlan, batch: Int, k: Int, _ make: () -> P) -> P {
        if planOwner !== owner {
            planOwner = owner
            nodePlans = Array(repeating: [], count: owner.graph.nodes.count)
        }
        for e in nodePlans[node] where e.batch == batch && e.k == k {
            if let p = e.plan as? P { return p }
        }
        let p = make()
        if nodePlans[node].count >= Self.plansPerNode { nodePlans[node].removeFirst() }
        nodePlans[node].append(NodePlanEntry(batch: batch, k: k, plan: p))
        return p
    }

    func prepare(valueCount: Int, nodeCount: Int, parameterCount: Int) {
        if values.count != valueCount {
            values = (0..<valueCount).map { _ in FloatBuffer() }
            tangents = (0..<valueCount).map { _ in FloatBuffer() }
            gradients = (0..<valueCount).map { _ in FloatBuffer() }
            aux = (0..<nodeCount).map { _ in FloatBuffer() }
            parameterGradients = (0..<parameterCount).map { _ in FloatBuffer() }
        }
    }
}
