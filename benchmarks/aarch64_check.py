"""An aarch64 artifact, built here, run on an emulated board and compared with the x86 build.

    bash scripts/aarch64_check.sh [--board jetson-tx2-cpu] [--input-size 64] [--out DIR]
                                  [--json results/aarch64_check.json]

The board is Debian 12 arm64 under qemu-user (``scripts/emulated_board.sh``) with the aarch64
TVM runtime from PyPI's wheels and nothing else: it serves TVM RPC on 127.0.0.1, and the
artifact reaches it the way it reaches a real board, through ``las deploy``'s
``RemoteModel``. Steps:

1. build the default LAS-ResNet-50 (random weights from the seed, maskers calibrated to
   r = 0.5) and compile it twice: for the board (``--board``: its target, linked by zig cc
   against its glibc, stripped) and for this x86 CPU;
2. show that the CPU rules' NEON path is what the board runs: per conv kernel of the aarch64
   library, vector FMAs (``fmla v.4s``), vector loads and stack spills, from LLVM's assembly;
3. run the stored check input on the emulated board and on this CPU, and compare: outputs
   (max |diff|) and every block's mask, also against PyTorch's stored outputs.

Timings under emulation say nothing about a board's speed and are not reported as such.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

_CONV_KERNELS = ("conv1x1", "conv2d", "gather_conv3x3", "halo_conv3x3", "conv1x1_scatter_add",
                 "conv1x1_rows", "dilated_rows", "fused_block")


def kernel_instructions(asm: str) -> dict[str, dict[str, int]]:
    """Per kernel family (``conv1x1``, ``gather_conv3x3``, ...) of an aarch64 LLVM assembly
    listing: vector FMAs, vector loads and stack spills/reloads of vector registers."""
    rows: dict[str, dict[str, int]] = {}
    for name, body in re.findall(r"\n([A-Za-z_][\w.]*):\n(.*?)(?=\n[A-Za-z_][\w.]*:\n|\Z)",
                                 asm, re.S):
        base = re.sub(r"^__tvm_ffi_", "", name)
        base = re.sub(r"_compute_.*$|_\d+$", "", re.sub(r"_compute_$", "", base))
        base = re.sub(r"_\d+$", "", base)
        if base not in _CONV_KERNELS:
            continue
        row = rows.setdefault(base, {"fmla_vector": 0, "vector_loads": 0, "spills": 0})
        row["fmla_vector"] += len(re.findall(r"\tfmla\tv\d+\.4s", body))
        row["vector_loads"] += len(re.findall(r"\t(?:ldr\tq\d+|ldp\tq\d+|ld1r?\t)", body))
        row["spills"] += len(re.findall(r"\t(?:str|ldr|stp|ldp)\tq\d+.*\[sp", body))
    return rows


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_board(root: Path, port: int, log) -> subprocess.Popen:
    """TVM's RPC server in the emulated board (a chroot run by qemu through binfmt_misc)."""
    server = subprocess.Popen(
        ["chroot", str(root), "env", "TVM_USE_RUNTIME_LIB=1", "PYTHONPATH=/opt/tvm", "python3",
         "-m", "tvm.exec.rpc_server", "--host", "127.0.0.1", "--port", str(port),
         "--port-end", str(port + 1)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 180
    while time.time() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"the emulated board's RPC server exited ({server.returncode})")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return server
        except OSError:
            time.sleep(0.5)
    server.kill()
    raise RuntimeError("the emulated board's RPC server did not start within 180 s")


def check(root: Path, board_name: str, size: tuple[int, int], out: Path, log) -> dict:
    import las_compiler
    from las_compiler.deploy.boards import get_board
    from las_compiler.deploy.remote import Board, RemoteModel
    from las_compiler.models import prepare_model

    board = get_board(board_name)
    prepared = prepare_model(input_size=size)  # the default LAS-ResNet-50 4-4-2-1, seed 0
    model, x = prepared.model, prepared.example
    result: dict = {"board": board.name, "target": board.target, "glibc": board.glibc,
                    "model": "las_resnet50", "snet": model.granularity_spec,
                    "input": list(x.shape)}
    log(f"compiling for {board.name} (aarch64)")
    start = time.perf_counter()
    arm = las_compiler.compile(model, x, board.target, tuning_logs=False,
                               metadata={"board": board.name, "glibc": board.glibc})
    asm = arm._executable.mod.imports[0].inspect_source("asm")
    arm_path = arm.export(out / "aarch64")
    result["aarch64_compile_s"] = time.perf_counter() - start
    result["kernels"] = kernel_instructions(asm)
    library = json.loads((arm_path / "metadata.json").read_text())["library"]
    result["library"] = library
    log("compiling for this CPU (x86_64)")
    host = las_compiler.compile(model, x, "host", tuning_logs=False)
    check_data = arm.check_data
    here_out, here_masks = host.run_with_masks(check_data.input)
    port = _free_port()
    log(f"starting the emulated board ({root}) on 127.0.0.1:{port}")
    start = time.perf_counter()
    server = start_board(root, port, log)
    result["board_start_s"] = time.perf_counter() - start
    try:
        log("uploading, loading and running on the emulated board")
        start = time.perf_counter()
        with RemoteModel(arm_path, Board(rpc=f"127.0.0.1:{port}", timeout=600)) as remote:
            board_out, board_masks = remote.run_with_masks(check_data.input)
        result["board_run_s"] = time.perf_counter() - start
    finally:
        os.killpg(server.pid, 9)
        server.wait()
    result["max_abs_diff_vs_x86"] = float(np.abs(board_out - here_out).max())
    result["masks_equal_vs_x86"] = all(np.array_equal(a, b) for a, b in
                                       zip(board_masks, here_masks, strict=True))
    result["mask_cells"] = int(sum(m.size for m in board_masks))
    agreement = check_data.compare([board_out], board_masks)
    result["max_abs_diff_vs_pytorch"] = agreement.max_abs_error
    result["masks_equal_vs_pytorch"] = agreement.masks_equal
    result["output_scale"] = agreement.output_scale
    result["activation"] = list(agreement.activation)
    return result


def table(result: dict) -> str:
    lines = [f"LAS-ResNet-50 {result['snet']} at {result['input']} for {result['board']} "
             f"({json.dumps(result['target'])}), glibc {result['glibc']}",
             f"library: {result['library']['bytes'] / 2**20:.1f} MiB of "
             f"{result['library']['machine']} code, stripped={result['library']['stripped']}, "
             f"needs GLIBC_{result['library']['glibc']}",
             "| kernel | vector FMAs (fmla .4s) | vector loads | FMAs per load | q spills |",
             "|---|---|---|---|---|"]
    for name, row in sorted(result["kernels"].items()):
        per = row["fmla_vector"] / max(row["vector_loads"], 1)
        lines.append(f"| {name} | {row['fmla_vector']} | {row['vector_loads']} | {per:.1f} | "
                     f"{row['spills']} |")
    lines += [
        f"emulated board vs x86 build: max |diff| {result['max_abs_diff_vs_x86']:.2e} "
        f"(logits up to {result['output_scale']:.3g}), masks "
        f"{'identical' if result['masks_equal_vs_x86'] else 'DIFFER'} "
        f"({result['mask_cells']} cells)",
        f"emulated board vs PyTorch: max |diff| {result['max_abs_diff_vs_pytorch']:.2e}, masks "
        f"{'identical' if result['masks_equal_vs_pytorch'] else 'DIFFER'}",
        f"(board start {result['board_start_s']:.0f} s and run {result['board_run_s']:.0f} s "
        "under qemu: emulation, not the board's speed)"]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    from las_compiler.cli.common import input_size
    from las_compiler.deploy.boards import BOARDS

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, required=True,
                        help="the emulated board's root (scripts/emulated_board.sh)")
    parser.add_argument("--board", default="jetson-tx2-cpu",
                        choices=[n for n, b in BOARDS.items() if isinstance(b.target, dict)])
    parser.add_argument("--input-size", type=input_size, default=(64, 64))
    parser.add_argument("--out", type=Path, default=Path("build/aarch64_check"),
                        help="where the two artifacts go (about 100 MB each)")
    parser.add_argument("--json", type=Path, default=Path("results/aarch64_check.json"),
                        help="the result record")
    args = parser.parse_args(argv)

    def log(msg):
        print(f"[aarch64] {msg}", file=sys.stderr, flush=True)

    args.out.mkdir(parents=True, exist_ok=True)
    result = check(args.root, args.board, args.input_size, args.out, log)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=1) + "\n")
    print(table(result))
    passed = result["masks_equal_vs_x86"] and result["max_abs_diff_vs_x86"] <= \
        1e-4 * max(result["output_scale"], 1.0) and result["masks_equal_vs_pytorch"]
    if not passed:
        print("FAILED: the emulated board's run differs", file=sys.stderr)
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
