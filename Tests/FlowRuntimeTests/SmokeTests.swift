import XCTest
@testable import FlowRuntime

final class SmokeTests: XCTestCase {
    func testMLPEvaluates() throws {
        let model = try VelocityMLP(dimension: 2, hiddenWidths: [16, 16], seed: 1).makeModel()
        let v = model.velocity(t: [0.1, 0.7], x: Tensor(shape: [2, 2], scalars: [0.5, -1, 2, 0.25]))
        XCTAssertEqual(v.shape, [2, 2])
        XCTAssertTrue(v.scalars.allSatisfy(\.isFinite))
    }
}
