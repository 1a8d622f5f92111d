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
    """The compute capability a CUDA (``arch``) or NVPTX (``mcpu``) target compiles for."""
    from .family import sm_number

    number = sm_number(str(target.attrs.get("arch", "") or target.attrs.get("mcpu", "")))
    if number is None:
        raise ValueError(f"target {target} names no CUDA arch")
    return number


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


def _fix_nvptx_lowering() -> None:
    """Intrinsic lowerings of our own for nvptx device code, where the wheel's are wrong:

    * the barrier: the wheel emits ``llvm.nvvm.barrier.cta.sync.aligned.all`` without its
      operand (invalid IR); we register the one-operand form;
    * warp reductions (dlight's pooling/GEMV rules): the wheel reads the active mask with an
      inline ``activemask`` that lacks its ``;`` and needs PTX ISA 6.2, while LLVM writes ISA 5.0
      for sm_61/62 and 6.0 for sm_70, and its shuffles are the non-``.sync`` forms that sm_70
      no longer has. The mask becomes the full warp: on sm_6x the codegen's shuffles ignore it
      (Pascal warps run in lock step); on sm_70 :func:`_sync_shuffles` makes them ``shfl.sync``
      over the full warp (TVM's warp reductions run on whole warps of threads).
    """
    global _NVPTX_FIXED
    if _NVPTX_FIXED:
        return
    import tvm
    from tvm import tirx

    def barrier(call):
        scope = getattr(call.args[0], "value", str(call.args[0]))
        if scope == "warp":
            return tirx.call_llvm_intrin("void", "llvm.nvvm.bar.warp.sync",
                                         tirx.const(-1, "int32"))
        return tirx.call_llvm_intrin("void", "llvm.nvvm.barrier.cta.sync.aligned.all",
                                     tirx.const(0, "int32"))

    def full_warp(call):
        return tirx.const(0xFFFFFFFF if "uint" in str(call.ty) else -1, call.ty)

    lowerings = {"tirx.tvm_storage_sync": barrier, "tirx.tvm_warp_activemask": full_warp}
    for name, lower in lowerings.items():
        tvm.tirx.op.register_intrin_lowering(name, target="nvptx", f=lower, level=99)
    _NVPTX_FIXED = True


NVPTX_TIR_PIPELINE = "las-nvptx"

# TVM's warp shuffle -> (nvvm shfl.sync kind, whether lanes past the width clamp)
_SYNC_SHUFFLES = {"tirx.tvm_warp_shuffle": ("idx", True), "tirx.tvm_warp_shuffle_up": ("up", False),
                  "tirx.tvm_warp_shuffle_down": ("down", True)}


def _sync_shuffles(stmt):
    """TVM's warp shuffles as ``llvm.nvvm.shfl.sync.*`` over the full warp (sm_70 and up, which
    lost the non-sync forms the NVPTX codegen writes). ``c`` packs the segment mask and clamp
    as CUDA's ``__shfl_*_sync`` do."""
    import tvm
    import tvm_ffi
    from tvm import tirx

    ops = {tvm.ir.Op.get(name): spec for name, spec in _SYNC_SHUFFLES.items()}

    def visit(call):
        spec = next((s for op, s in ops.items() if call.op.same_as(op)), None)
        if spec is None:
            return call
        kind, clamp_low_lanes = spec
        _mask, value, lane, width, warp = call.args
        c = ((warp - width) << 8) | (0x1F if clamp_low_lanes else 0)
        suffix = "f32" if "float" in str(value.ty) else "i32"
        return tirx.call_llvm_pure_intrin(value.ty, f"llvm.nvvm.shfl.sync.{kind}.{suffix}",
                                          tirx.const(-1, "int32"), value, lane, c)

    return tvm_ffi.structural_map(stmt, [(tvm.ir.Call, visit)], order="post")


def _nvptx_tir_pipeline():
    """TVM's TIR pipeline, then the device kernels of CUDA targets retargeted to ``nvptx`` of
    the same arch (before the device finalisation, so intrinsics lower for NVPTX): the host
    code stays the same, the device code comes from LLVM instead of CUDA C."""
    import tvm
    from tvm.tirx.compilation_pipeline import get_tir_pipeline

    main, finalize_host, finalize_device = get_tir_pipeline("default")

    @tvm.transform.module_pass(opt_level=0, name="RetargetDeviceToNVPTX")
    def retarget(mod, _ctx):
        funcs = {}
        for gvar, func in mod.functions.items():
            target = func.attrs.get("target") if func.attrs else None
            if target is not None and target.kind.name == "cuda":
                func = func.with_attr("target", nvptx_target(target))
                if arch_number(target) >= 70:
                    func = func.with_body(_sync_shuffles(func.body))
            funcs[gvar] = func
        return tvm.IRModule(funcs, attrs=mod.attrs)

    return tvm.transform.Sequential([main, retarget]), finalize_host, finalize_device


def nvptx_target(target):
    """The ``nvptx`` target of a CUDA target's arch (its host kept)."""
    import tvm

    return tvm.target.Target({"kind": "nvptx", "mcpu": f"sm_{arch_number(target)}"},
                             host=target.host)


def tir_pipeline(target) -> str:
    """Name of the TIR pipeline ``tvm.compile`` takes for ``target``: TVM's own, or for CUDA
    targets on the NVPTX route (sm_61/62/70) ours, registered here, whose device code is PTX."""
    if target.kind.name != "cuda" or route(target) == "nvcc":
        return "default"
    from tvm.tirx.compilation_pipeline import PIPELINE_MAP, register_tir_pipeline

    _fix_nvptx_lowering()
    os.environ.setdefault("CUDA_PATH", str(_libdevice_home() or ""))
    import tvm.support.nvcc  # noqa: F401 - registers the libdevice lookup NVPTX builds use

    if NVPTX_TIR_PIPELINE not in PIPELINE_MAP:
        register_tir_pipeline(NVPTX_TIR_PIPELINE, _nvptx_tir_pipeline)
    return NVPTX_TIR_PIPELINE


def _libdevice_home() -> Path | None:
    """A CUDA home with ``nvvm/libdevice`` (the toolkit's, else the PyPI package's)."""
    home = _cuda_home()
    if home is not None and (home / "nvvm" / "libdevice").is_dir():
        return home
    try:
        import nvidia.cuda_nvcc as package
    except ImportError:
        return home
    for base in package.__path__:
        if (Path(base) / "nvvm" / "libdevice").is_dir():
            return Path(base)
    return home


def entry_points(ptx: str) -> str:
    """LLVM's PTX with its kernels declared ``.entry`` (this wheel writes ``.visible .func``
    for them: its kernel annotation is one that this LLVM no longer reads)."""
    return re.sub(r"^\.visible \.func (\w+)\(", r".visible .entry \1(", ptx, flags=re.M)


def device_code(funcs: dict, target) -> tuple[str, str]:
    """``(text, "cu" | "ptx")``: the device code of scheduled PrimFuncs ``{name: func}`` for
    the CUDA ``target`` by its route (what the compiler ships for them)."""
    import tvm

    mod = tvm.IRModule({name: f.with_attr("global_symbol", name) for name, f in funcs.items()})
    executable = tvm.compile(mod, target=target, tir_pipeline=tir_pipeline(target))
    module = _device_module(executable)
    if route(target) == "nvcc":
        return module.inspect_source(), "cu"
    return entry_points(module.inspect_source("ptx")), "ptx"


def find_module(root, kind: str):
    """The first module of ``kind`` (``"cuda"``, ``"llvm"``) in the import tree of ``root``
    (a runtime module, or a build's ``Executable``); None if there is none."""
    todo = [root.mod if hasattr(root, "mod") else root]
    while todo:
        module = todo.pop()
        if module.kind == kind:
            return module
        todo.extend(module.imports)
    return None


def _device_module(executable):
    module = find_module(executable, "cuda")
    if module is None:
        raise ValueError("the build has no CUDA device module")
    return module


def assemble(text: str, fmt: str, target) -> list[KernelResources]:
    """Assemble device code for the target's arch; ``ptxas -v``'s report per kernel."""
    return device_binary(text, fmt, target)[2]


def device_binary(text: str, fmt: str, target) -> tuple[bytes, str, list[KernelResources]]:
    """``(binary, its format, ptxas -v report)``: what a GPU of the target's arch loads.

    * CUDA C (``"cu"``, the nvcc route): a fatbin of the arch's cubin and its PTX (which the
      drivers of newer GPUs compile), by nvcc at ``-O3`` without fast math (the numbers the
      CPU emulation checks are IEEE ones);
    * PTX (``"ptx"``, the NVPTX route): shipped as it is, to be compiled by the device's
      driver (a TX2's CUDA 10.2 driver loads PTX ISA <= 6.5, not cubins of CUDA 12), after
      assembling here with CUDA 12's ``ptxas`` for the arch as the check that it is valid.
    """
    arch = f"sm_{arch_number(target)}"
    with tempfile.TemporaryDirectory(prefix="las-device-code-") as tmp:
        source = Path(tmp) / f"kernels.{fmt}"
        source.write_text(text)
        if fmt == "cu":
            number = arch_number(target)
            output = Path(tmp) / "kernels.fatbin"
            command = [str(nvcc_path()), "--fatbin", "-O3", "-w", "-Xptxas", "-v",
                       "-gencode", f"arch=compute_{number},code=sm_{number}",
                       "-gencode", f"arch=compute_{number},code=compute_{number}",
                       str(source), "-o", str(output)]
        else:
            output = Path(tmp) / "kernels.cubin"
            command = [str(legacy_ptxas_path()), "-v", f"-arch={arch}", str(source), "-o",
                       str(output)]
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"{Path(command[0]).name} failed for {arch}:\n"
                               f"{result.stderr.strip()[-2000:]}")
        if fmt == "cu":
            return output.read_bytes(), "fatbin", parse_ptxas_report(result.stderr)
    return text.encode(), "ptx", parse_ptxas_report(result.stderr)


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


def describe_device_code(summary: dict) -> str:
    """One line on the device code an artifact ships (its metadata's ``device_code``)."""
    if summary.get("format") == "fatbin":
        what = f"fatbin ({summary['arch']} cubin + PTX, nvcc)"
    else:
        what = (f"PTX for {summary['arch']} (LLVM NVPTX; the device's driver compiles it; "
                "checked here with CUDA 12's ptxas)")
    spills = summary.get("spilling_kernels") or []
    return (f"device code in the library: {what}, {summary['kernels']} kernels, "
            f"{summary['bytes'] / 1024:.0f} KiB, at most {summary['max_registers']} registers "
            "per thread, " + (f"spills in {', '.join(spills)}" if spills
                              else "no register spills"))
