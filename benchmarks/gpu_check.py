"""Check and time our compiled LAS blocks on a GPU, against PyTorch, with artifacts built here.

    python -m benchmarks.gpu_check build [--target nvidia/nvidia-h100] [--out gpu_check]
    bash scripts/gpu_check.sh [gpu_check]          # on the machine with the GPU

Why two steps: the GPU machine has PyTorch but not TVM's compiler library (248 MB, too big to
carry), so everything is compiled here and that machine needs only the TVM runtime.

``build`` compiles LAS-ResNet-50 bottlenecks (``benchmarks.peers`` shapes: stages 1-3, the
projected first block and a plain one, S = 4, 2 and 1; :func:`cases`) with the
block pipelines that fit the GPU, as one-block modules (``compile_block``: the kernels the
compiler emits for a network's blocks, masker and scans included), exports each as an
artifact with its device binary, and writes ``manifest.json`` with how to rebuild each
block's weights from its seed and their SHA-256. Beside them: the TVM runtime (the ``tvm``
package without its compiler library) and an ``apache-tvm-ffi`` wheel for the GPU machine's
Python.

``run`` (what ``scripts/gpu_check.sh`` calls there) rebuilds each block with PyTorch from its
seed (refusing a case whose weights hash differently), pins a random half of its patches on
(``models.pin_mask``), runs the artifact on the GPU and compares output and mask with PyTorch
on the CPU, then times it against the same block dense in PyTorch on that GPU (cuDNN,
channels_last, fp32) and prints one table. The same ``run`` works on the CPU with a host
build: the test suite checks it that way, runtime-only, without a GPU.

Whole networks too: LAS-ResNet-50 4-4-2-1 at 224x224 (batch 1 and 128), LAS-ResNet-101
4-4-2-1 at 224x224 and the LAS-ResNet-101 4-4-7-1 detection backbone at 800x1333, compiled
code-only (``weights_as_inputs``: a weight-carrying LAS-ResNet-50 artifact is ~100 MB, the code
1.5 MB). There the network is rebuilt from its seed with PyTorch, the calibrated maskers
(shipped, a few KB) loaded, the weights' hash checked, and the compiled module prepares the
weights on the GPU (``set_weights``).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

RATE = 0.5
SEED = 0
MANIFEST = "manifest.json"
TVM_FFI = "apache-tvm-ffi==0.1.14.post1"
DEVICE_PYTHON = "3.12"  # the GPU machine's Python (its tvm-ffi wheel is carried)
SIZE_LIMIT = 56 << 20  # what may travel to the GPU machine, less room for the repository


@dataclass(frozen=True)
class Case:
    """One compiled block: a ResNet-50 bottleneck shape, S, pipeline and batch."""

    shape: str
    granularity: int
    pipeline: str
    batch: int = 1

    @property
    def name(self) -> str:
        return f"{self.shape}-S{self.granularity}-{self.pipeline}-b{self.batch}"


def cases(quick: bool = False) -> list[Case]:
    """The blocks to check: every pipeline on stage 1 at S = 4, fused, halo and dense on
    stage 2 (S = 4) and the row kernels at S = 1 (fused, masker_conv1, halo), fused,
    pixel_rows (several 2x2 patches per thread block) and halo on stage 3 (S = 2): every
    kernel of every pipeline (batch 128 runs in the networks), in about 26 MiB of artifacts
    for a GPU (50 MiB with the networks and the runtime: under what may travel)."""
    from las_compiler.block_pipelines import PIPELINES

    if quick:
        return [Case("s1b1", 4, "fused"), Case("s2b0", 4, "dense")]
    out = [Case(shape, 4, pipeline) for shape in ("s1b0", "s1b1") for pipeline in PIPELINES]
    out += [Case(shape, 4, pipeline) for shape in ("s2b0", "s2b1")
            for pipeline in ("fused", "halo", "dense")]
    out += [Case("s2b1", 1, pipeline) for pipeline in ("fused", "masker_conv1", "halo")]
    out += [Case("s3b1", 2, pipeline) for pipeline in ("fused", "pixel_rows", "halo")]
    return out


@dataclass(frozen=True)
class NetworkCase:
    """One compiled network: a ``build_model`` name (or ``"tiny"``, a narrow 4-block network
    for the suite's dry run), S_net, input size, batch, detection backbone or classifier."""

    model: str
    snet: str
    height: int
    width: int
    batch: int = 1
    backbone: bool = False

    @property
    def name(self) -> str:
        return (f"{self.model}-{self.snet}-{self.height}x{self.width}-b{self.batch}"
                + ("-backbone" if self.backbone else ""))


def networks(quick: bool = False) -> list[NetworkCase]:
    """The issue's networks: LAS-ResNet-50 (batch 1 and the batch-128 goal), LAS-ResNet-101
    at 224x224, and its backbone at detection size (the 800x1333 goal)."""
    if quick:
        return [NetworkCase("tiny", "4-2-1-2", 48, 56)]
    return [NetworkCase("las_resnet50", "4-4-2-1", 224, 224),
            NetworkCase("las_resnet50", "4-4-2-1", 224, 224, 128),
            NetworkCase("las_resnet101", "4-4-2-1", 224, 224),
            NetworkCase("las_resnet101", "4-4-7-1", 800, 1333, 1, True)]


MASKERS = "maskers.npz"


# -- the blocks, the same on both machines ------------------------------------------------------


def _digest(module) -> str:
    digest = hashlib.sha256()
    for key, value in sorted(module.state_dict().items()):
        digest.update(key.encode())
        digest.update(value.detach().contiguous().numpy().tobytes())
    return digest.hexdigest()


def make_network(case: NetworkCase):
    """The network of ``case`` from its seed, BN randomised (so folding is exercised), masker
    at its init: calibrate it (here) or load the calibrated maskers (there)."""
    import torch

    from las_compiler.models import LASResNet, build_model, randomise_bn

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        if case.model == "tiny":
            net = LASResNet((1, 1, 1, 1), case.snet, num_classes=10, base_channels=16)
        else:
            options = {"out_stages": (1, 2, 3, 4)} if case.backbone else {}
            net = build_model(case.model, case.snet, **options)
    randomise_bn(net, SEED + 1)
    return net.eval()


def network_input(case: NetworkCase, count: int | None = None):
    import torch

    gen = torch.Generator().manual_seed(SEED + 3)
    return torch.randn(count or case.batch, 3, case.height, case.width, generator=gen)


def make_case_block(case: Case):
    """(block, its weights' SHA-256): the block of ``case`` from its seed, masker pinned (its
    weights then read channel 0 alone, so inputs choose the mask: ``models.pin_mask``)."""
    import torch

    from las_compiler.models import pin_mask

    from .peers import as_shape, make_block

    shape = as_shape(case.shape)
    block = make_block(shape, SEED)
    block.granularity = case.granularity
    grid = shape.grid(case.granularity)
    template = torch.zeros(case.batch, shape.in_channels, shape.height, shape.width)
    pin_mask(block, template, torch.zeros(case.batch, *grid))
    return block, _digest(block)


def make_case_input(case: Case, block):
    """(NCHW input with a random half of the patches pinned on, the mask it gives)."""
    import torch

    from las_compiler.models import pin_mask

    from .peers import as_shape

    shape = as_shape(case.shape)
    gen = torch.Generator().manual_seed(SEED + 7)
    x = torch.randn(case.batch, shape.in_channels, shape.height, shape.width,
                    generator=gen).relu()
    grid = shape.grid(case.granularity)
    mask = (torch.rand(case.batch, *grid, generator=gen) < RATE).float()
    return pin_mask(block, x, mask), mask


# -- build (here) -------------------------------------------------------------------------------


def build(target: str, out: Path, quick: bool = False, log=print) -> dict:
    """Compile and export every case for ``target``; write the manifest and the runtime."""
    from las_compiler.block_pipelines import get_pipeline
    from las_compiler.compiler import compile_block, resolve_target
    from las_compiler.schedules import pipeline_fits

    from .peers import as_shape

    tvm_target = resolve_target(target)
    if out.exists():
        shutil.rmtree(out)
    (out / "cases").mkdir(parents=True)
    entries, skipped = [], []
    for case in cases(quick):
        shape = as_shape(case.shape)
        geometry = dataclasses.replace(shape, batch=case.batch).geometry(case.granularity)
        if case.pipeline != "auto":
            pipeline = get_pipeline(case.pipeline)
            if not pipeline_fits(pipeline, geometry, tvm_target):  # applies, within limits
                skipped.append(case.name)
                continue
        block, weights = make_case_block(case)
        x, _ = make_case_input(case, block)
        started = time.perf_counter()
        compiled = compile_block(block, x.permute(0, 2, 3, 1), tvm_target, case.pipeline,
                                 tuning_logs=False)
        compiled.export(out / "cases" / case.name)
        chosen = compiled.metadata["blocks"][0]["pipeline"]
        log(f"{case.name}: {chosen}, {time.perf_counter() - started:.1f} s")
        entries.append({**asdict(case), "name": case.name, "chosen": chosen,
                        "weights_sha256": weights})
    network_entries = [build_network(case, tvm_target, out, log) for case in networks(quick)]
    runtime_note = bundle_runtime(out)
    manifest = {"target": str(tvm_target), "rate": RATE, "seed": SEED, "cases": entries,
                "networks": network_entries, "skipped": skipped, "runtime": runtime_note}
    (out / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    log(f"{len(entries)} blocks ({len(skipped)} pipelines that do not fit skipped), "
        f"{len(network_entries)} networks, "
        f"{size / 2**20:.1f} MiB in {out}")
    if size > SIZE_LIMIT:
        raise RuntimeError(f"{out} holds {size / 2**20:.0f} MiB, over the "
                           f"{SIZE_LIMIT >> 20} MiB that may travel to the GPU machine")
    return manifest


def build_network(case: NetworkCase, target, out: Path, log=print) -> dict:
    """Calibrate, compile code-only and export one network; its maskers beside it."""
    import numpy as np
    import torch

    import las_compiler
    from las_compiler.models import calibrate

    net = make_network(case)
    calibrate(net, RATE, network_input(case, 2))
    started = time.perf_counter()
    compiled = las_compiler.compile(net, network_input(case), target, tuning_logs=False,
                                    weights_as_inputs=True)
    directory = compiled.export(out / "cases" / case.name)
    with torch.no_grad():
        maskers = {k: v.numpy() for k, v in net.state_dict().items() if ".masker." in k}
    np.savez(directory / MASKERS, **maskers)
    log(f"{case.name}: {time.perf_counter() - started:.1f} s, code only")
    return {**asdict(case), "name": case.name, "weights_sha256": _digest(net)}


def bundle_runtime(out: Path) -> str:
    """The ``tvm`` package without its compiler library (and sources) under ``out/runtime``,
    and the GPU machine's ``apache-tvm-ffi`` wheel under ``out/wheels`` (when pip finds it)."""
    import subprocess

    import tvm

    package = Path(tvm.__file__).parent
    ignore = shutil.ignore_patterns("libtvm_compiler.so", "3rdparty", "src", "include",
                                    "__pycache__")
    shutil.copytree(package, out / "runtime" / "tvm", ignore=ignore)
    command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
               "--only-binary=:all:", "--python-version", DEVICE_PYTHON, "--implementation",
               "cp", *(f"--platform={p}" for p in ("manylinux_2_28_x86_64",
                                                   "manylinux_2_24_x86_64",
                                                   "manylinux_2_17_x86_64")),
               "-d", str(out / "wheels"), TVM_FFI]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        return (f"no {TVM_FFI} wheel for Python {DEVICE_PYTHON} ({result.stderr.strip()[-200:]}"
                "): install it on the GPU machine")
    return f"tvm runtime and {TVM_FFI} for Python {DEVICE_PYTHON}"


# -- run (on the machine with the GPU) ----------------------------------------------------------


def run(directory: Path, repeats: int = 50, log=print) -> list[dict]:
    """Check and time every case of a build; returns the table's rows."""
    import numpy as np
    import torch

    import las_compiler
    from las_compiler.models import sparse_block_forward

    from .peers import dense_block

    manifest = json.loads((directory / MANIFEST).read_text())
    import tvm

    if '"kind":"cuda"' in manifest["target"].replace(" ", "") and not tvm.cuda(0).exist:
        raise RuntimeError("the build is for a GPU, but TVM sees no CUDA device here (no GPU, "
                           "or libcuda.so / libcudart.so.13 not found by the loader)")
    rows = []
    for entry in manifest["cases"]:
        case = Case(entry["shape"], entry["granularity"], entry["pipeline"], entry["batch"])
        row = {"case": case.name, "pipeline": entry["chosen"], "batch": case.batch}
        block, weights = make_case_block(case)
        if weights != entry["weights_sha256"]:
            rows.append({**row, "error": "this torch rebuilt other weights from the seed"})
            log(f"{case.name}: weights differ from the build's; skipped")
            continue
        x, mask = make_case_input(case, block)
        compiled = las_compiler.load(directory / "cases" / case.name)
        nhwc = x.permute(0, 2, 3, 1).contiguous().numpy()
        out, (got_mask,) = compiled.run_with_masks(nhwc)
        with torch.no_grad():
            expected = sparse_block_forward(block, x).permute(0, 2, 3, 1).numpy()
        scale = float(np.abs(expected).max()) or 1.0
        row["max_rel_error"] = float(np.abs(out - expected).max()) / scale
        row["masks_equal"] = bool(np.array_equal(got_mask, mask.bool().numpy()))
        row["active"] = float(mask.mean())
        row["las_ms"] = compiled.benchmark(nhwc, repeat=repeats)["median_ms"]
        row["dense_torch_ms"] = time_dense_torch(dense_block(block), x, compiled.device,
                                                 repeats)
        row["ratio"] = row["las_ms"] / row["dense_torch_ms"]
        log(f"{case.name}: error {row['max_rel_error']:.1e}, LAS {row['las_ms']:.3f} ms, "
            f"dense {row['dense_torch_ms']:.3f} ms")
        rows.append(row)
    for entry in manifest.get("networks", []):
        rows.append(run_network(directory, entry, repeats, log))
    return rows


def run_network(directory: Path, entry: dict, repeats: int, log=print) -> dict:
    """Rebuild, check and time one compiled network (see the module docstring)."""
    import numpy as np
    import torch

    import las_compiler
    from las_compiler.dense_peers import dense_network
    from las_compiler.verify import compare_with_pytorch

    fields = {k: entry[k] for k in ("model", "snet", "height", "width", "batch", "backbone")}
    case = NetworkCase(**fields)
    row = {"case": case.name, "pipeline": "auto", "batch": case.batch}
    net = make_network(case)
    with np.load(directory / "cases" / case.name / MASKERS) as maskers:
        net.load_state_dict({k: torch.from_numpy(maskers[k]) for k in maskers.files},
                            strict=False)
    if _digest(net) != entry["weights_sha256"]:
        log(f"{case.name}: weights differ from the build's; skipped")
        return {**row, "error": "this torch rebuilt other weights from the seed"}
    x = network_input(case)
    compiled = las_compiler.load(directory / "cases" / case.name)
    compiled.set_weights(net.state_dict())
    agreement = compare_with_pytorch(compiled, net, x.numpy())
    row["max_rel_error"] = agreement.max_abs_error / (agreement.output_scale or 1.0)
    row["masks_equal"] = agreement.masks_equal
    row["active"] = float(np.mean(agreement.activation))
    row["las_ms"] = compiled.benchmark(x.numpy(), repeat=repeats)["median_ms"]
    row["dense_torch_ms"] = time_dense_torch(dense_network(net), x, compiled.device, repeats)
    row["ratio"] = row["las_ms"] / row["dense_torch_ms"]
    log(f"{case.name}: error {row['max_rel_error']:.1e}, LAS {row['las_ms']:.3f} ms, "
        f"dense {row['dense_torch_ms']:.3f} ms")
    return row


def time_dense_torch(model, x, device, repeats: int) -> float:
    """Median ms of ``model(x)`` in PyTorch on the artifact's device: on a GPU cuDNN with
    channels_last fp32 (TF32 off, cuDNN autotuning on), timed with CUDA events."""
    import numpy as np
    import torch

    on_gpu = device.dlpack_device_type() == 2  # kDLCUDA
    if on_gpu:
        torch.backends.cudnn.benchmark = True
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False
        model = model.to("cuda", memory_format=torch.channels_last)
        x = x.to("cuda", memory_format=torch.channels_last)
    times = []
    with torch.no_grad():
        for _ in range(3):
            model(x)
        for _ in range(repeats):
            if on_gpu:
                start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(
                    enable_timing=True)
                start.record()
                model(x)
                stop.record()
                stop.synchronize()
                times.append(start.elapsed_time(stop))
            else:
                began = time.perf_counter()
                model(x)
                times.append((time.perf_counter() - began) * 1e3)
    return float(np.median(times))


def runtime_only() -> bool:
    """Whether this process runs without TVM's compiler library (as the GPU machine must)."""
    with open("/proc/self/maps") as maps:
        return not any("libtvm_compiler" in line for line in maps)


def table(rows: list[dict], device: str) -> str:
    lines = [f"LAS blocks (r = {RATE}, pinned) and networks (maskers calibrated to r = {RATE}) on "
             f"{device}, fp32; dense = the same in PyTorch (cuDNN on GPUs, channels_last); "
             f"medians. TVM runtime only: {'yes' if runtime_only() else 'no'}.",
             "",
             "| case | pipeline | batch | active | max error / max abs | masks equal | "
             "LAS ms | dense ms | LAS / dense |", "|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        if "error" in row:
            lines.append(f"| {row['case']} | {row['pipeline']} | {row['batch']} | "
                         f"{row['error']} ||||||")
            continue
        lines.append(f"| {row['case']} | {row['pipeline']} | {row['batch']} | "
                     f"{row['active']:.2f} | {row['max_rel_error']:.1e} | "
                     f"{'yes' if row['masks_equal'] else 'NO'} | {row['las_ms']:.3f} | "
                     f"{row['dense_torch_ms']:.3f} | {row['ratio']:.2f} |")
    return "\n".join(lines)


def _device_name() -> str:
    import torch

    if torch.cuda.is_available():
        return torch.cuda.get_device_name()
    return f"this CPU ({os.cpu_count()} cores)"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    built = sub.add_parser("build", help="compile the cases here")
    built.add_argument("--target", default="nvidia/nvidia-h100",
                       help="the GPU's target (H100 code runs on an H200); 'host' for a dry "
                            "run on this CPU")
    built.add_argument("--out", type=Path, default=Path("gpu_check"))
    built.add_argument("--quick", action="store_true", help="two cases only")
    ran = sub.add_parser("run", help="check and time the cases (on the GPU machine)")
    ran.add_argument("directory", type=Path, nargs="?", default=Path("gpu_check"))
    ran.add_argument("--repeats", type=int, default=50)
    ran.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args = parser.parse_args(argv)

    def log(msg):
        print(msg, file=sys.stderr, flush=True)

    if args.command == "build":
        build(args.target, args.out, args.quick, log)
        return 0
    rows = run(args.directory, args.repeats, log)
    print(table(rows, _device_name()))
    if args.json is not None:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")
    bad = [r["case"] for r in rows if "error" in r or not r["masks_equal"]
           or r["max_rel_error"] > 1e-4]
    if bad:
        print(f"FAILED: {', '.join(bad)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
