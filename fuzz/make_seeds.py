"""Writes the fuzzer's seed corpus: every reference fixture shrunk to width 4
(each initializer extent of 256 cut to 4, weights inline), so seeds are a few
hundred bytes and exercise every importer path (Gemm, SiLU/GELU/Softplus
patterns, LayerNorm, sinusoidal embedding, scalar/1-D t, shape chains).

    python fuzz/make_seeds.py ../shared/fixtures/onnx fuzz/corpus
"""
import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper


def shrink(path: Path) -> onnx.ModelProto:
    m = onnx.load(str(path), load_external_data=True)
    for i, init in enumerate(m.graph.initializer):
        a = numpy_helper.to_array(init)
        if a.ndim and 256 in a.shape:
            a = a[tuple(slice(0, 4) if d == 256 else slice(None) for d in a.shape)]
        t = numpy_helper.from_array(np.ascontiguousarray(a), init.name)
        m.graph.initializer[i].CopyFrom(t)
    for vi in list(m.graph.value_info):
        m.graph.value_info.remove(vi)
    return m


def main(src: str, dst: str) -> None:
    out = Path(dst)
    out.mkdir(parents=True, exist_ok=True)
    for p in sorted(Path(src).glob("*.onnx")):
        m = shrink(p)
        (out / p.name.replace(".onnx", ".seed.onnx")).write_bytes(m.SerializeToString())


if __name__ == "__main__":
    main(*sys.argv[1:3])
