"""The ctypes declarations checked against include/mllp.h, by the C compiler.

The test reads the header for the names (every ``#define MLLP_*``, every ``typedef struct``
and its fields, every callback typedef, every ``mllp_*`` prototype), writes a small C program
that prints what the compiler makes of them (values, ``sizeof``, ``offsetof``, signedness),
compiles it with ``cc`` and compares the output with the binding:

* every struct of the header has a ctypes Structure with the same fields, in the same order, at
  the same offsets, of the same sizes, and the same total size;
* every ``#define`` value has its Python constant with the same value (``MLLP_ERR_X`` ->
  ``mllp.ERR_X`` ...), and every ``mllp.ERR_*`` is in the header;
* every function of the header is declared for ctypes with as many arguments, each of the
  size and signedness of the C parameter, and a matching return type; every callback type
  likewise.

(bindings/java/layout.c does the struct part for Java.) Skipped, saying why, when there is no
C compiler. ``MLLP_HEADER`` overrides the header's path.
"""

from __future__ import annotations

import ctypes
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import pytest

import mllp
import mllp._lib as L
import mllp.certificate as certificate

HEADER = Path(
    os.environ.get("MLLP_HEADER") or Path(__file__).resolve().parents[3] / "include" / "mllp.h"
)

#: header struct -> the binding's ctypes Structure
STRUCTS = {
    "mllp_connection_request_event": L.ConnectionRequestStruct,
    "mllp_status_event": L.StatusStruct,
    "mllp_transfer_boundary_event": L.TransferBoundaryStruct,
    "mllp_transfer_event": L.TransferStruct,
    "mllp_ack_out_event": L.AckOutStruct,
    "mllp_message_event": L.MessageStruct,
    "mllp_duplicate_event": L.DuplicateStruct,
    "mllp_ack_in_event": L.AckInStruct,
    "mllp_error_event": L.ErrorStruct,
    "mllp_log_event": L.LogStruct,
    "mllp_ssl_client_authentication_event": L.SslClientAuthStruct,
    "mllp_ssl_connection_request_event": L.SslConnectionRequestStruct,
    "mllp_ssl_status_event": L.SslStatusStruct,
    "mllp_send_result": L.SendResultStruct,
    "mllp_client_ack_in_event": L.ClientAckInStruct,
    "mllp_send_done_event": L.SendDoneStruct,
    "mllp_ssl_server_authentication_event": L.SslServerAuthStruct,
    "mllp_metrics": L.MetricsStruct,
}

#: header callback typedef -> the binding's CFUNCTYPE
CALLBACKS = {
    "mllp_connection_request_cb": L.CONNECTION_REQUEST_CB,
    "mllp_status_cb": L.STATUS_CB,
    "mllp_transfer_boundary_cb": L.TRANSFER_BOUNDARY_CB,
    "mllp_transfer_cb": L.TRANSFER_CB,
    "mllp_ack_out_cb": L.ACK_OUT_CB,
    "mllp_message_cb": L.MESSAGE_CB,
    "mllp_duplicate_cb": L.DUPLICATE_CB,
    "mllp_ack_in_cb": L.ACK_IN_CB,
    "mllp_error_cb": L.ERROR_CB,
    "mllp_log_cb": L.LOG_CB,
    "mllp_ssl_client_authentication_cb": L.SSL_CLIENT_AUTH_CB,
    "mllp_ssl_connection_request_cb": L.SSL_CONNECTION_REQUEST_CB,
    "mllp_ssl_status_cb": L.SSL_STATUS_CB,
    "mllp_client_ack_in_cb": L.CLIENT_ACK_IN_CB,
    "mllp_send_done_cb": L.SEND_DONE_CB,
    "mllp_ssl_server_authentication_cb": L.SSL_SERVER_AUTH_CB,
    "mllp_release_cb": L.RELEASE_CB,
    "mllp_thread_cb": L.THREAD_CB,
    "mllp_read_cb": L.READ_CB,
    "mllp_write_cb": L.WRITE_CB,
}

#: Defines that are not values the binding mirrors.
NOT_CONSTANTS = {"MLLP_H"}

_INT_TYPES = (
    ctypes.c_int8,
    ctypes.c_uint8,
    ctypes.c_int16,
    ctypes.c_uint16,
    ctypes.c_int32,
    ctypes.c_uint32,
    ctypes.c_int64,
    ctypes.c_uint64,
    ctypes.c_int,
    ctypes.c_uint,
    ctypes.c_long,
    ctypes.c_ulong,
    ctypes.c_size_t,
    ctypes.c_ssize_t,
)


# ---------------------------------------------------------------------------------------------
# Reading the header (names only: the compiler gives every number)
# ---------------------------------------------------------------------------------------------


def _source() -> str:
    text = HEADER.read_text(encoding="utf-8")
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    return re.sub(r"//[^\n]*", " ", text)


def _split_decl(decl: str) -> Tuple[str, str]:
    """``"const char *address"`` -> ``("const char *", "address")``."""
    decl = " ".join(decl.split())
    m = re.fullmatch(r"(.*?[\s\*])(\w+)", decl)
    assert m, f"cannot read the declaration {decl!r}"
    return m.group(1).strip(), m.group(2)


def _params(text: str) -> List[str]:
    text = " ".join(text.split())
    if text in ("", "void"):
        return []
    return [_split_decl(p)[0] for p in text.split(",")]


def header_defines(src: str) -> List[str]:
    return [n for n in re.findall(r"^\s*#define\s+(MLLP_\w+)\b", src, re.M) if n not in NOT_CONSTANTS]


def header_structs(src: str) -> Dict[str, List[str]]:
    out: Dict[str, List[str]] = {}
    for body, name in re.findall(r"typedef\s+struct\s*\{(.*?)\}\s*(\w+)\s*;", src, re.S):
        out[name] = [_split_decl(f)[1] for f in body.split(";") if f.strip()]
    return out


def header_callbacks(src: str) -> Dict[str, Tuple[str, List[str]]]:
    out: Dict[str, Tuple[str, List[str]]] = {}
    for ret, name, params in re.findall(
        r"typedef\s+([^;{}()]+?)\s*\(\s*\*\s*(\w+)\s*\)\s*\(([^)]*)\)\s*;", src
    ):
        out[name] = (" ".join(ret.split()), _params(params))
    return out


def header_functions(src: str) -> Dict[str, Tuple[str, List[str]]]:
    body = re.sub(r"typedef[^;]*;", " ", src)  # callback and struct typedefs are not functions
    out: Dict[str, Tuple[str, List[str]]] = {}
    for ret, name, params in re.findall(
        r"(?:^|[;}\n])\s*([A-Za-z_][\w\s\*]*?)\b(mllp_\w+)\s*\(([^()]*)\)\s*;", body
    ):
        out[name] = (" ".join(ret.split()), _params(params))
    return out


# ---------------------------------------------------------------------------------------------
# What the compiler says
# ---------------------------------------------------------------------------------------------


def _c_program(src: str) -> str:
    lines = [
        "#include <stdio.h>",
        "#include <stddef.h>",
        '#include "mllp.h"',
        "int main(void) {",
    ]
    for d in header_defines(src):
        lines.append(f'    printf("D {d} %lld\\n", (long long)({d}));')
    for s, fields in header_structs(src).items():
        lines.append(f'    printf("S {s} %zu\\n", sizeof({s}));')
        for f in fields:
            lines.append(
                f'    printf("F {s} {f} %zu %zu\\n", offsetof({s}, {f}), '
                f"sizeof((({s} *)0)->{f}));"
            )

    def sig(kind: str, name: str, ret: str, params: List[str]) -> None:
        if ret == "void":
            lines.append(f'    printf("R {kind} {name} void\\n");')
        else:
            lines.append(
                f'    printf("R {kind} {name} %zu %d\\n", sizeof({ret}), (int)(({ret})-1 < ({ret})0));'
            )
        lines.append(f'    printf("N {kind} {name} {len(params)}\\n");')
        for i, t in enumerate(params):
            lines.append(
                f'    printf("A {kind} {name} {i} %zu %d\\n", sizeof({t}), (int)(({t})-1 < ({t})0));'
            )

    for name, (ret, params) in header_callbacks(src).items():
        sig("cb", name, ret, params)
    for name, (ret, params) in header_functions(src).items():
        sig("fn", name, ret, params)
    lines += ["    return 0;", "}", ""]
    return "\n".join(lines)


@pytest.fixture(scope="module")
def compiled(tmp_path_factory: pytest.TempPathFactory) -> Dict[str, List[List[str]]]:
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if not cc:
        pytest.skip("no C compiler (cc) to check the ctypes declarations against mllp.h")
    if not HEADER.is_file():
        pytest.skip(f"{HEADER} not found (set MLLP_HEADER)")
    d = tmp_path_factory.mktemp("layout")
    (d / "layout.c").write_text(_c_program(_source()))
    # Quiet about the relational comparisons of pointer types the generic signedness probe makes.
    build = subprocess.run(
        [cc, "-std=c99", "-w", f"-I{HEADER.parent}", "-o", str(d / "layout"), str(d / "layout.c")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert build.returncode == 0, build.stderr
    run = subprocess.run([str(d / "layout")], capture_output=True, text=True, timeout=30)
    assert run.returncode == 0, run.stderr
    out: Dict[str, List[List[str]]] = {}
    for line in run.stdout.splitlines():
        kind, *rest = line.split()
        out.setdefault(kind, []).append(rest)
    return out


def _size_sign(t: Optional[type]) -> Tuple[int, int]:
    assert t is not None
    signed = 1 if (issubclass(t, _INT_TYPES) and t(-1).value < 0) else 0
    return ctypes.sizeof(t), signed


# ---------------------------------------------------------------------------------------------
# Tests
# ---------------------------------------------------------------------------------------------


def test_every_header_struct_has_a_ctypes_structure() -> None:
    assert set(header_structs(_source())) == set(STRUCTS)
    # ... and every Structure the binding defines is one of them.
    defined = {
        v
        for v in vars(L).values()
        if isinstance(v, type) and issubclass(v, ctypes.Structure) and v is not ctypes.Structure
    }
    assert defined == set(STRUCTS.values())


def test_struct_layouts(compiled: Dict[str, List[List[str]]]) -> None:
    fields = header_structs(_source())
    sizes = {name: int(size) for name, size in compiled["S"]}
    problems: List[str] = []
    for cname, py in STRUCTS.items():
        names = [f[0] for f in py._fields_]
        if names != fields[cname]:
            problems.append(f"{py.__name__}: fields {names} != {cname}'s {fields[cname]}")
        if ctypes.sizeof(py) != sizes[cname]:
            problems.append(f"{py.__name__}: size {ctypes.sizeof(py)} != {cname}'s {sizes[cname]}")
    for cname, field, offset, size in compiled["F"]:
        desc = getattr(STRUCTS[cname], field, None)
        if desc is None:
            continue  # reported above
        if (desc.offset, desc.size) != (int(offset), int(size)):
            problems.append(
                f"{cname}.{field}: ctypes offset/size {desc.offset}/{desc.size}, C {offset}/{size}"
            )
    assert problems == []


def _python_constant(define: str) -> Tuple[str, Optional[int]]:
    name = define[len("MLLP_") :]
    if name.startswith("CERT_FIELD_"):
        attr = "_FIELD_" + name[len("CERT_FIELD_") :]
        return f"mllp.certificate.{attr}", getattr(certificate, attr, None)
    if name.startswith("VERSION_"):
        part = ["MAJOR", "MINOR", "PATCH"].index(name[len("VERSION_") :])
        return "mllp.__version__", int(mllp.__version__.split(".")[part])
    return f"mllp.{name}", getattr(mllp, name, None)


def test_constants_and_error_codes(compiled: Dict[str, List[List[str]]]) -> None:
    problems: List[str] = []
    for define, value in compiled["D"]:
        where, py = _python_constant(define)
        if py != int(value):
            problems.append(f"{define} = {value}, {where} = {py}")
    assert problems == []
    header = {d for d, _ in compiled["D"]}
    extra = sorted(n for n in mllp.CODES if f"MLLP_{n}" not in header)
    assert extra == [], f"error codes of the binding that mllp.h does not define: {extra}"
    assert mllp.CODES == {
        d[len("MLLP_") :]: int(v) for d, v in compiled["D"] if d.startswith("MLLP_ERR_")
    }


def _signatures(
    compiled: Dict[str, List[List[str]]], kind: str
) -> Dict[str, Tuple[Optional[Tuple[int, int]], List[Tuple[int, int]]]]:
    rets: Dict[str, Optional[Tuple[int, int]]] = {}
    for k, name, *rest in compiled["R"]:
        if k == kind:
            rets[name] = None if rest == ["void"] else (int(rest[0]), int(rest[1]))
    args: Dict[str, List[Tuple[int, int]]] = {}
    counts = {name: int(n) for k, name, n in compiled["N"] if k == kind}
    for name in counts:
        args[name] = [(0, 0)] * counts[name]
    for k, name, i, size, signed in compiled["A"]:
        if k == kind:
            args[name][int(i)] = (int(size), int(signed))
    return {name: (rets[name], args[name]) for name in counts}


def _compare(
    what: str,
    restype: Optional[type],
    argtypes: Optional[List[type]],
    c: Tuple[Optional[Tuple[int, int]], List[Tuple[int, int]]],
) -> List[str]:
    c_ret, c_args = c
    problems: List[str] = []
    if c_ret is None:
        if restype is not None:
            problems.append(f"{what}: returns void in C, {restype.__name__} in ctypes")
    elif restype is None or _size_sign(restype) != c_ret:
        got = None if restype is None else _size_sign(restype)
        problems.append(f"{what}: return (size, signed) {got} in ctypes, {c_ret} in C")
    argtypes = list(argtypes or [])
    if len(argtypes) != len(c_args):
        problems.append(f"{what}: {len(argtypes)} ctypes arguments, {len(c_args)} in C")
        return problems
    for i, (t, c_arg) in enumerate(zip(argtypes, c_args)):
        if _size_sign(t) != c_arg:
            problems.append(
                f"{what} argument {i}: (size, signed) {_size_sign(t)} in ctypes, {c_arg} in C"
            )
    return problems


def test_callback_types(compiled: Dict[str, List[List[str]]]) -> None:
    sigs = _signatures(compiled, "cb")
    assert set(sigs) == set(CALLBACKS)
    problems: List[str] = []
    for name, proto in CALLBACKS.items():
        problems += _compare(name, proto._restype_, list(proto._argtypes_), sigs[name])
    assert problems == []


def test_function_declarations(compiled: Dict[str, List[List[str]]]) -> None:
    sigs = _signatures(compiled, "fn")
    assert len(sigs) > 50, "the header's prototypes were not found"
    problems: List[str] = []
    for name, c in sorted(sigs.items()):
        fn = getattr(L.lib, name, None)
        if fn is None:
            problems.append(f"{name}: not exported by {L.library_path}")
            continue
        if fn.argtypes is None:
            problems.append(f"{name}: in mllp.h but not declared in mllp/_lib.py")
            continue
        problems += _compare(name, fn.restype, fn.argtypes, c)
    assert problems == []
