"""Device code of GPU kernels, assembled here by NVIDIA's ``ptxas``: registers and spills.

Why: a GPU schedule can be valid TIR, pass TVM's resource verification and still spill its
register tiles to local memory or fail to assemble for an old arch. ``ptxas -v`` says so per
kernel, on a machine without a GPU.

Two routes, by arch (``route``):

* ``sm_75`` and newer: TVM's CUDA C codegen, compiled by ``nvcc`` (CUDA 13 on our machines);
* ``sm_61`` / ``sm_62`` / ``sm_70`` (GTX 1080, Jetson TX2, V100), which CUDA 13 dropped: PTX from
  LLVM's NVPTX backend (PTX ISA 5.0, which the TX2's CUDA 10.2 driver loads), assembled by the
  ``ptxas`` of CUDA 12.9 from PyPI (``nvidia-cuda-nvcc-cu12``, the ``cuda`` extra). Two bugs of
  the 0.27 wheel's NVPTX path are worked around here: its barrier lowers to an LLVM intrinsic
  call with a missing operand (we register the one-operand form), and kernels come out as
  ``.visible .func`` instead of ``.entry`` (patched in the text).

A missing toolkit is one clear error naming what to install.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

NVCC_MIN_ARCH = 75  # CUDA 13's nvcc builds sm_75 and newer only
PIP_PACKAGE = "nvidia-cuda-nvcc-cu12"


@dataclass(frozen=True)
class KernelResources:
    """What ``ptxas -v`` reports for one device kernel."""

    name: str
    registers: int
    spill_stores: int  # bytes
    spill_loads: int  # bytes
    shared_bytes: int
    stack_bytes: int


def arch_number(target) -> int:
    arch = str(target.attrs.get("arch", "") or target.attrs.get("mcpu", ""))
    if not arch.startswith("sm_"):
        raise ValueError(f"target {target} names no CUDA arch")
    return int(arch[3:].rstrip("a"))


def route(target) -> str:
    """``"nvcc"`` (CUDA C through nvcc) or ``"nvptx"`` (LLVM PTX through CUDA 12's ptxas)."""
    return "nvcc" if arch_number(target) >= NVCC_MIN_ARCH else "nvptx"


def _cuda_home() -> Path | None:
    for candidate in (os.environ.get("CUDA_PATH"), os.environ.get("CUDA_HOME"),
                      "/usr/local/cuda-13.0", "/usr/local/cuda"):
        if candidate and (Path(candidate) / "bin" / "nvcc").is_file():
            return Path(candidate)
    return None


def nvcc_path() -> Path:
    home = _cuda_home()
    if home is None:
        raise RuntimeError("no CUDA toolkit found for sm_75+ device code: install CUDA 12.8+ "
                           "(nvcc) and set CUDA_PATH")
    return home / "bin" / "nvcc"


def legacy_ptxas_path() -> Path:
    """``ptxas`` of the PyPI CUDA 12 compiler package (still builds sm_61/62/70)."""
    try:
        import nvidia.cuda_nvcc as package
    except ImportError:
        package = None
    if package is not None:
        for base in package.__path__:
            ptxas = Path(base) / "bin" / "ptxas"
            if ptxas.is_file():
                return ptxas
    raise RuntimeError(f"sm_61/62/70 device code needs the ptxas of CUDA 12: pip install "
                       f"'{PIP_PACKAGE}' (the las-compiler 'cuda' extra)")


_NVPTX_FIXED = False


def _fix_nvptx_barrier() -> None:
    """Register the one-operand ``llvm.nvvm.barrier.cta.sync.aligned.all`` lowering for TVM's
    barrier on nvptx (the wheel's own emits the intrinsic without its operand)."""
    global _NVPTX_FIXED
    if _NVPTX_FIXED:
        return
    import tvm
    from tvm import tirx

    def lower(call):
        scope = getattr(call.args[0], "value", str(call.args[0]))
        if scope == "warp":
            return tirx.call_llvm_intrin("void", "llvm.nvvm.bar.warp.sync",
                                         tirx.const(-1, "int32"))
        return tirx.call_llvm_intrin("void", "llvm.nvvm.barrier.cta.sync.aligned.all",
                                     tirx.const(0, "int32"))

    tvm.tirx.op.register_intrin_lowering("tirx.tvm_storage_sync", target="nvptx", f=lower,
                                         level=99)
    _NVPTX_FIXED = True


def device_code(funcs: dict, target) -> tuple[str, str]:
    """``(text, "cu" | "ptx")``: the device code of scheduled PrimFuncs ``{name: func}`` for
    the CUDA ``target`` by its route."""
    import tvm

    mod = tvm.IRModule({name: f.with_attr("global_symbol", name) for name, f in funcs.items()})
    if route(target) == "nvcc":
        executable = tvm.compile(mod, target=target)
        return _device_module(executable).inspect_source(), "cu"
    os.environ.setdefault("CUDA_PATH", str(_cuda_home() or ""))  # libdevice lookup
    import tvm.support.nvcc  # noqa: F401 - registers the libdevice path callback

    _fix_nvptx_barrier()
    nvptx = tvm.target.Target({"kind": "nvptx", "mcpu": f"sm_{arch_number(target)}"},
                              host={"kind": "llvm"})
    executable = tvm.compile(mod, target=nvptx)
    ptx = _device_module(executable).inspect_source("ptx")
    return re.sub(r"^\.visible \.func (\w+)\(", r".visible .entry \1(", ptx, flags=re.M), "ptx"


def _device_module(executable):
    todo = [executable.mod if hasattr(executable, "mod") else executable]
    while todo:
        module = todo.pop()
        if module.kind == "cuda":
            return module
        todo.extend(module.imports)
    raise ValueError("the build has no CUDA device module")


def assemble(text: str, fmt: str, target) -> list[KernelResources]:
    """Assemble device code for the target's arch; ``ptxas -v``'s report per kernel."""
    arch = f"sm_{arch_number(target)}"
    with tempfile.TemporaryDirectory(prefix="las-ptxas-") as tmp:
        source = Path(tmp) / f"kernels.{fmt}"
        source.write_text(text)
        if fmt == "cu":
            command = [str(nvcc_path()), "-cubin", f"-arch={arch}", "-Xptxas", "-v",
                       "-w", str(source), "-o", str(Path(tmp) / "k.cubin")]
        else:
            command = [str(legacy_ptxas_path()), "-v", f"-arch={arch}", str(source), "-o",
                       str(Path(tmp) / "k.cubin")]
        result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{Path(command[0]).name} failed for {arch}:\n"
                           f"{result.stderr.strip()[-2000:]}")
    return parse_ptxas_report(result.stderr)


_ENTRY = re.compile(r"Compiling entry function '(\w+)' for")
_FRAME = re.compile(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")
_USED = re.compile(r"Used (\d+) registers(?:.*?(\d+) bytes smem)?")


def parse_ptxas_report(text: str) -> list[KernelResources]:
    """The per-kernel lines of ``ptxas -v`` output."""
    out, name, frame = [], None, (0, 0, 0)
    for line in text.splitlines():
        if match := _ENTRY.search(line):
            name, frame = match.group(1), (0, 0, 0)
        elif (match := _FRAME.search(line)) and name:
            frame = tuple(int(v) for v in match.groups())
        elif (match := _USED.search(line)) and name:
            out.append(KernelResources(name, int(match.group(1)), frame[1], frame[2],
                                       int(match.group(2) or 0), frame[0]))
            name = None
    return out


def toolchain_available(target) -> str | None:
    """None when this machine can assemble for ``target``, else why not."""
    try:
        nvcc_path() if route(target) == "nvcc" else legacy_ptxas_path()
    except RuntimeError as err:
        return str(err)
    return None


def summarise_device_code(source: str, target) -> str:
    """One line on a GPU build's device code: its kernels assembled for the arch with their
    registers and spills (sm_75+, nvcc here), or why the artifact's CUDA C is left to the
    device (older archs: CUDA 13 no longer compiles for them)."""
    arch = f"sm_{arch_number(target)}"
    if route(target) != "nvcc":
        return (f"device code: CUDA C, compiled for {arch} when the artifact is loaded there "
                "(CUDA 13 here builds sm_75+ only; the kernels' NVPTX device code for this "
                "arch assembles in the test suite)")
    missing = toolchain_available(target)
    if missing:
        return f"device code not assembled here: {missing}"
    report = assemble(source, "cu", target)
    spills = [k.name for k in report if k.spill_stores or k.spill_loads]
    return (f"device code: {len(report)} kernels assemble for {arch} (nvcc -Xptxas -v), at "
            f"most {max(k.registers for k in report)} registers per thread, "
            + (f"spills in {', '.join(spills)}" if spills else "no register spills"))
