"""Writes the seed corpora of the parser fuzzers (fuzz/README.md):
corpus-npy, corpus-csv and corpus-image (numpy only). The checkpoint seeds
come from the harness itself: FLOWRT_FUZZ_WRITE_SEED=fuzz/corpus-checkpoint/
trained-3-steps.seed .build-fuzz/checkpoint_fuzzer (`make fuzz-seeds`).
Seeds are small so every field is a few mutations away."""
import io
import struct
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def npy(a, **kw) -> bytes:
    b = io.BytesIO()
    np.lib.format.write_array(b, a, **kw)
    return b.getvalue()


def write(folder, name, data):
    d = HERE / folder
    d.mkdir(exist_ok=True)
    (d / name).write_bytes(data if isinstance(data, bytes) else data.encode())


rng = np.random.default_rng(0)
x = rng.standard_normal((3, 2))
write("corpus-npy", "f4-2d.seed.npy", npy(x.astype("<f4")))
write("corpus-npy", "f8-2d.seed.npy", npy(x.astype("<f8")))
write("corpus-npy", "f4-big-endian.seed.npy", npy(x.astype(">f4")))
write("corpus-npy", "f8-fortran.seed.npy", npy(np.asfortranarray(x.astype("<f8"))))
write("corpus-npy", "f4-1d.seed.npy", npy(np.arange(4, dtype="<f4")))
write("corpus-npy", "f4-3d.seed.npy", npy(np.zeros((2, 1, 2), "<f4")))
write("corpus-npy", "f4-empty.seed.npy", npy(np.zeros((0, 2), "<f4")))
write("corpus-npy", "f8-scalar.seed.npy", npy(np.float64(1.5)))
write("corpus-npy", "f4-v2.seed.npy", npy(x.astype("<f4"), version=(2, 0)))
write("corpus-npy", "f4-v3.seed.npy", npy(x.astype("<f4"), version=(3, 0)))
write("corpus-npy", "i4-refused.seed.npy", npy(np.arange(4, dtype="<i4")))
write("corpus-npy", "u1.seed.npy", npy(np.arange(6, dtype="u1").reshape(2, 3)))
write("corpus-npy", "f4-nan-inf.seed.npy", npy(np.array([[np.nan, np.inf], [-np.inf, 1e38]], "<f4")))

write("corpus-csv", "plain.seed.csv", "0.5,-1.25\n3,4e-3\n")
write("corpus-csv", "header.seed.csv", "x,y\n1,2\n3,4\n")
write("corpus-csv", "comments-blank-crlf.seed.csv", "# a comment\r\n\r\n 1 , 2 \r\n3,4\r\n")
write("corpus-csv", "one-column.seed.csv", "1\n2\n-3.5e+10\n")
write("corpus-csv", "nan-inf-hex.seed.csv", "nan,inf,-inf\n0x1p-3,1e400,-0\n")
write("corpus-csv", "ragged.seed.csv", "1,2\n3\n")
write("corpus-csv", "bad-cell.seed.csv", "1,2\n3,abc\n")
write("corpus-csv", "unicode.seed.csv", "α,β\n1,２\n")

def idx(a) -> bytes:
    a = np.asarray(a, np.uint8)
    return bytes([0, 0, 8, a.ndim]) + b"".join(struct.pack(">I", n) for n in a.shape) + a.tobytes()

img = rng.integers(0, 256, (2, 3, 3), dtype=np.uint8)
write("corpus-image", "images-n-h-w.seed.idx", idx(img))
write("corpus-image", "labels.seed.idx", idx(np.array([1, 7, 3])))
write("corpus-image", "images-n-c-h-w.seed.idx", idx(img.reshape(2, 1, 3, 3)))
write("corpus-image", "gzip-magic.seed.idx", b"\x1f\x8b\x08\x00" + idx(img)[4:])
write("corpus-image", "int-type.seed.idx", bytes([0, 0, 0x0C, 1, 0, 0, 0, 1, 0, 0, 0, 5]))
write("corpus-image", "images-u1.seed.npy", npy(img))
write("corpus-image", "images-nchw-u1.seed.npy", npy(img.reshape(2, 1, 3, 3)))
write("corpus-image", "images-f4.seed.npy", npy(img.astype("<f4")))
write("corpus-image", "images-f8-fortran.seed.npy", npy(np.asfortranarray(img[0].astype("<f8"))))
write("corpus-image", "images-out-of-range.seed.npy", npy(np.array([[[0.5, 300.0]]], "<f4")))
