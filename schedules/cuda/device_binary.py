"""Device binaries in a GPU artifact's library: code the GPU's driver loads, not CUDA C.

Why: on a machine without a CUDA driver TVM's CUDA codegen keeps CUDA C in its module
(format ``"cuda"``), and a library exported from it makes the device compile that source when
it loads (nvcc or NVRTC on the board; a Jetson usually has neither at run time, and a wrong
toolkit gives ``CUDA_ERROR_INVALID_IMAGE`` far from the cause). This wheel has no Python way to
make a CUDA module from a binary either: its factory lives in the CUDA runtime library, which
needs ``libcuda.so``.

So the export packs the imports itself (``export_library(fpack_imports=...)``): TVM
serialises the module tree (``runtime.ModulePackImportsToTensor``), we replace each CUDA
module's payload, ``(format, function table, code)``, with the device binary of the target's
route (:func:`.toolchain.device_binary`: a fatbin from nvcc for sm_75 and up,
PTX from LLVM for sm_61/62/70), and TVM's ``codegen.codegen_blob`` turns the blob into an
object for the host's triple, as its own export does. The payload layout is the one TVM's CUDA
runtime loader (``ffi.Module.load_from_bytes.cuda``) reads; parsing checks every length, so a
TVM whose layout differs fails here, at export, with a clear error.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path

FATBIN_MAGIC = b"\x50\xed\x55\xba"  # a fatbin's first 4 bytes: 0xBA55ED50, little endian


class BlobLayoutError(ValueError):
    """The serialised module tree is not laid out as this TVM version's loader expects."""


class _Reader:
    def __init__(self, data: bytes, what: str):
        self.data, self.pos, self.what = data, 0, what

    def take(self, count: int) -> bytes:
        if count < 0 or self.pos + count > len(self.data):
            raise BlobLayoutError(f"{self.what}: a field runs past the end ({count} bytes at "
                                  f"{self.pos} of {len(self.data)})")
        chunk = self.data[self.pos:self.pos + count]
        self.pos += count
        return chunk

    def u64(self) -> int:
        return struct.unpack("<Q", self.take(8))[0]

    def string(self) -> bytes:
        return self.take(self.u64())

    def vector(self, item_bytes: int) -> list[bytes]:
        return [self.take(item_bytes) for _ in range(self.u64())]

    def done(self) -> bool:
        return self.pos == len(self.data)


def _u64(value: int) -> bytes:
    return struct.pack("<Q", value)


def _string(value: bytes) -> bytes:
    return _u64(len(value)) + value


@dataclass
class ModuleTree:
    """A serialised module tree: the import tree (CSR) and one ``(kind, payload)`` per module
    group (``payload`` None for ``"_lib"``, the host library itself)."""

    row_ptr: list[int]
    child_indices: list[int]
    modules: list[tuple[str, bytes | None]]

    @classmethod
    def parse(cls, blob: bytes) -> ModuleTree:
        """From ``PackImportsToBytes``' output (an 8-byte length, then the tree)."""
        outer = _Reader(blob, "module blob")
        body = _Reader(outer.take(outer.u64()), "module blob")
        if not outer.done():
            raise BlobLayoutError("module blob: bytes after the recorded length")
        row_ptr = [struct.unpack("<Q", v)[0] for v in body.vector(8)]
        child_indices = [struct.unpack("<Q", v)[0] for v in body.vector(8)]
        modules = []
        for _ in range(max(len(row_ptr) - 1, 0)):
            kind = body.string().decode()
            modules.append((kind, None if kind == "_lib" else body.string()))
        if not body.done():
            raise BlobLayoutError("module blob: bytes after the last module")
        return cls(row_ptr, child_indices, modules)

    def to_bytes(self) -> bytes:
        body = b"".join([_u64(len(self.row_ptr)), *map(_u64, self.row_ptr),
                         _u64(len(self.child_indices)), *map(_u64, self.child_indices)])
        for kind, payload in self.modules:
            body += _string(kind.encode()) + (b"" if payload is None else _string(payload))
        return _u64(len(body)) + body


@dataclass
class CUDAPayload:
    """What a CUDA module saves: code format, the function table (kept as its bytes; the
    kernel names read from it) and the code."""

    fmt: str
    function_table: bytes
    kernels: list[str]
    code: bytes

    @classmethod
    def parse(cls, payload: bytes) -> CUDAPayload:
        reader = _Reader(payload, "CUDA module")
        fmt = reader.string().decode()
        start = reader.pos
        kernels = []
        for _ in range(reader.u64()):
            key = reader.string().decode()
            if reader.string().decode() != key:  # FunctionInfo.name repeats the key
                raise BlobLayoutError(f"CUDA module: function table entry {key!r} is not laid "
                                      "out as expected")
            reader.vector(4)  # argument types (DLDataType)
            for _tag in range(reader.u64()):  # launch parameter tags
                reader.string()
            reader.vector(4)  # per-argument extra tags (int32)
            kernels.append(key)
        table = payload[start:reader.pos]
        code = reader.string()
        if not reader.done():
            raise BlobLayoutError("CUDA module: bytes after the code")
        return cls(fmt, table, kernels, code)

    def to_bytes(self) -> bytes:
        return _string(self.fmt.encode()) + self.function_table + _string(self.code)


@dataclass
class DeviceCodePacker:
    """``fpack_imports`` for ``export_library``: the imports packed with device binaries for
    ``target`` (a CUDA target). After the export, :attr:`summary` says what was shipped."""

    target: object
    summary: dict = field(default_factory=dict)

    def __call__(self, module, is_system_lib: bool, symbol_prefix: str,
                 workspace_dir: str) -> str:
        import tvm_ffi
        from tvm.runtime import _ffi_api

        tree = ModuleTree.parse(_ffi_api.ModulePackImportsToTensor(module).numpy().tobytes())
        tree.modules = [(kind, self._replace(payload) if kind == "cuda" else payload)
                        for kind, payload in tree.modules]
        host = _host_module(module)
        llvm_target = host.get_function("_get_target_string")()
        blob = tvm_ffi.get_global_func("codegen.codegen_blob")(
            tree.to_bytes(), is_system_lib, llvm_target, symbol_prefix)
        path = str(Path(workspace_dir) / f"{symbol_prefix}devc.o")
        blob.write_to_file(path)
        return path

    def _replace(self, payload: bytes) -> bytes:
        from . import toolchain

        cuda = CUDAPayload.parse(payload)
        if cuda.fmt == "cuda":
            text, fmt = cuda.code.decode(), "cu"
        elif cuda.fmt == "ptx":
            text, fmt = toolchain.entry_points(cuda.code.decode()), "ptx"
        else:
            raise BlobLayoutError(f"CUDA module with {cuda.fmt!r} code: expected CUDA C or PTX")
        if fmt == "ptx":
            missing = [k for k in cuda.kernels if f".entry {k}(" not in text]
            if missing:
                raise BlobLayoutError(f"PTX lacks entry points for {', '.join(missing[:5])}")
        binary, binary_fmt, report = toolchain.device_binary(text, fmt, self.target)
        self.summary = {
            "format": binary_fmt, "arch": f"sm_{toolchain.arch_number(self.target)}",
            "route": toolchain.route(self.target), "kernels": len(cuda.kernels),
            "bytes": len(binary),
            "max_registers": max((k.registers for k in report), default=0),
            "spilling_kernels": sorted({k.name for k in report
                                        if k.spill_stores or k.spill_loads}),
        }
        return CUDAPayload(binary_fmt, cuda.function_table, cuda.kernels, binary).to_bytes()


def _host_module(module):
    from .toolchain import find_module

    host = find_module(module, "llvm")
    if host is None:
        raise BlobLayoutError("the module has no host (llvm) library to pack device code "
                              "beside")
    return host


def library_blob(path: str | Path) -> bytes:
    """The packed module tree inside an exported library of this machine's architecture
    (read through ``dlopen``; for checks and tests)."""
    import ctypes

    library = ctypes.CDLL(str(path))
    symbol = "__tvm_ffi__library_bin"
    size = struct.unpack("<Q", bytes((ctypes.c_ubyte * 8).in_dll(library, symbol)))[0]
    return bytes((ctypes.c_ubyte * (size + 8)).in_dll(library, symbol))


def device_payloads(path: str | Path) -> list[CUDAPayload]:
    """The CUDA modules packed in an exported library."""
    tree = ModuleTree.parse(library_blob(path))
    return [CUDAPayload.parse(payload) for kind, payload in tree.modules if kind == "cuda"]
