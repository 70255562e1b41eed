"""The Python binding's ctypes Structures against the C compiler's layout.

bindings/c/tests/struct_layout.c, compiled against include/flowrt.h (the
Makefile builds it before pytest; FLOWRT_STRUCT_LAYOUT names the binary),
prints sizeof and offsetof/sizeof of every field of every public struct as
JSON. Each struct of the header must be there with every field it declares
(parsed from the header), and the ctypes class of the same name in
flowrt/_capi.py must have the same fields in the same order at the same
offsets with the same sizes, and the same total size.
"""
from __future__ import annotations

import ctypes
import json
import os
import re
import subprocess
from pathlib import Path

import pytest

import flowrt
from flowrt import _capi

ROOT = Path(__file__).resolve().parents[3]
HEADER = ROOT / "include" / "flowrt.h"
PACKAGE = ROOT / "bindings" / "python" / "flowrt"


def header_structs() -> dict[str, list[str]]:
    """{struct name: field names} of every `typedef struct X { ... } X;` in flowrt.h."""
    text = re.sub(r"/\*.*?\*/", "", HEADER.read_text(), flags=re.S)
    text = re.sub(r"//[^\n]*", "", text)
    out = {}
    for name, body in re.findall(r"typedef\s+struct\s+(\w+)\s*\{(.*?)\}\s*\1\s*;", text, flags=re.S):
        fields = []
        for decl in body.split(";"):
            decl = decl.strip()
            if not decl:
                continue
            # `const char *x_name, *t_name` declares two fields.
            for part in decl.split(","):
                m = re.search(r"(\w+)\s*(\[[^\]]*\])?\s*$", part.strip())
                assert m, f"cannot parse field declaration '{decl}' of {name}"
                fields.append(m.group(1))
        out[name] = fields
    return out


@pytest.fixture(scope="module")
def layout() -> dict:
    exe = os.environ.get("FLOWRT_STRUCT_LAYOUT", str(ROOT / "bindings" / "c" / "tests" / "struct_layout"))
    if not Path(exe).exists():
        pytest.fail(f"{exe} is not built (make bindings/c/tests/struct_layout)")
    return json.loads(subprocess.run([exe], check=True, capture_output=True, text=True).stdout)


def test_the_tests_import_the_package_itself():
    # Not a copy of the binding (an installed wheel, a helper module in tests/).
    assert Path(flowrt.__file__).resolve().parent == PACKAGE.resolve(), flowrt.__file__
    assert Path(_capi.__file__).resolve().parent == PACKAGE.resolve(), _capi.__file__


def test_the_layout_program_lists_every_struct_and_field_of_the_header(layout):
    structs = header_structs()
    assert structs, "no structs parsed from flowrt.h"
    assert sorted(layout) == sorted(structs), "struct_layout.c must print exactly the header's structs"
    for name, fields in structs.items():
        assert list(layout[name]["fields"]) == fields, f"{name}: struct_layout.c fields differ from flowrt.h"


def test_ctypes_structures_match_the_c_layout(layout):
    for name, c in layout.items():
        assert hasattr(_capi, name), f"flowrt/_capi.py has no ctypes class {name}"
        cls = getattr(_capi, name)
        assert issubclass(cls, ctypes.Structure), name
        names = [f[0] for f in cls._fields_]
        assert names == list(c["fields"]), f"{name}: ctypes fields {names} != C fields {list(c['fields'])}"
        for field, (offset, size) in c["fields"].items():
            d = getattr(cls, field)
            assert (d.offset, d.size) == (offset, size), \
                f"{name}.{field}: ctypes offset/size {(d.offset, d.size)} != C {(offset, size)}"
        assert ctypes.sizeof(cls) == c["size"], f"{name}: ctypes sizeof {ctypes.sizeof(cls)} != C {c['size']}"
        assert ctypes.alignment(cls) <= c["size"]


def test_default_params_report_the_c_size(layout):
    # The library's own struct_size (what *_default_params() writes) is the header's sizeof.
    for fn, name in [("flowrt_mlp_default_params", "flowrt_mlp_params"),
                     ("flowrt_flow_default_params", "flowrt_flow_params"),
                     ("flowrt_solver_default_params", "flowrt_solver_params"),
                     ("flowrt_trainer_default_params", "flowrt_trainer_params"),
                     ("flowrt_onnx_default_options", "flowrt_onnx_options"),
                     ("flowrt_sde_default_params", "flowrt_sde_params"),
                     ("flowrt_path_default_params", "flowrt_path_params")]:
        assert getattr(_capi, fn)().struct_size == layout[name]["size"], fn
