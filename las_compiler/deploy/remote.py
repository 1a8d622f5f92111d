"""An artifact run on a board over TVM RPC: ``las deploy``, ``las run --rpc``, ``las bench --rpc``.

The board runs TVM's stock RPC server (``python -m tvm.exec.rpc_server``, directly or through a
tracker) and needs only the TVM runtime. The host uploads the artifact's library into the
server's session folder, loads it there and drives a Relax VM whose tensors live on the board:
inputs go over with ``set_input``, results come back one tensor at a time (``get_outputs``:
an RPC call cannot return a tuple) and timing runs on the board (``time_evaluator``).

Every step waits a bounded time (``timeout``). TVM's RPC client blocks in C++ without a
deadline, so each step runs in a helper thread and the caller stops waiting when the
deadline passes: a board that died or hangs is an error naming the step, never a hang. The
library is uploaded under a name of its own and removed again when the session closes; the
server deletes its session folder when the connection ends in any case, so nothing is left
half-written on the board. Nothing is written on the host.
"""

from __future__ import annotations

import gc
import socket
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import artifact
from .compiled_model import host_input


class RemoteError(RuntimeError):
    """The board could not be reached, or could not load or run the artifact."""


def parse_address(text: str, what: str) -> tuple[str, int]:
    host, _, port = str(text).rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{what} must be host:port, got {text!r}")
    return host, int(port)


def check_tracker(host: str, port: int, key: str) -> None:
    """``ValueError`` when the tracker is not there or has no device with ``key``."""
    from tvm import rpc

    try:
        socket.create_connection((host, port), timeout=5).close()  # TVM retries for 60 s
        summary = rpc.connect_tracker(host, port).summary()
    except (RuntimeError, OSError) as err:
        raise ValueError(f"cannot reach the RPC tracker at {host}:{port} ({err})") from None
    keys = set(summary.get("queue_info", {}))
    if key not in keys:
        raise ValueError(f"no device with key {key!r} at the RPC tracker {host}:{port} "
                         f"(registered: {sorted(keys) or 'none'})")


@dataclass(frozen=True)
class Board:
    """Where the artifact runs: an RPC server (``rpc``) or a tracker and a device key."""

    rpc: str | None = None
    tracker: str | None = None
    key: str | None = None
    timeout: float = 60.0  # seconds any one step may take

    def __post_init__(self):
        if (self.rpc is None) == (self.tracker is None):
            raise ValueError("give either --rpc host:port or --tracker host:port with --key")
        if self.tracker is not None and not self.key:
            raise ValueError("--tracker needs --key, the device key the board registered")
        parse_address(self.rpc or self.tracker, "--rpc" if self.rpc else "--tracker")
        if self.timeout <= 0:
            raise ValueError(f"--timeout must be positive, got {self.timeout}")

    def __str__(self) -> str:
        return f"RPC server {self.rpc}" if self.rpc else \
            f"device {self.key!r} of the RPC tracker {self.tracker}"

    def connect(self):
        """A TVM RPC session with the board (bounded by ``timeout``)."""
        from tvm import rpc

        if self.rpc is not None:
            host, port = parse_address(self.rpc, "--rpc")
            try:  # TVM's connect retries a refused connection for a minute: ask once first
                socket.create_connection((host, port), timeout=min(self.timeout, 10)).close()
            except OSError as err:
                why = err.strerror or str(err)
                raise RemoteError(f"cannot reach the RPC server at {self.rpc} ({why}): is "
                                  "`python -m tvm.exec.rpc_server` running there?") from None
            return bounded("connecting to " + str(self), self.timeout,
                           lambda: rpc.connect(host, port, session_timeout=0))
        host, port = parse_address(self.tracker, "--tracker")
        check_tracker(host, port, self.key)
        return bounded(f"waiting for {self}", self.timeout,
                       lambda: rpc.connect_tracker(host, port).request(self.key, max_retry=1))


def bounded(step: str, timeout: float, call):
    """``call()``, or ``RemoteError`` naming ``step`` when it has not returned within
    ``timeout`` seconds (the helper thread is a daemon: a stuck call dies with the process)."""
    result: dict = {}

    def work():
        try:
            result["value"] = call()
        except BaseException as err:  # noqa: BLE001 - handed to the caller
            result["error"] = err

    thread = threading.Thread(target=work, name=f"las-rpc: {step}", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise RemoteError(f"{step}: no answer from the board within {timeout:g} s (the server "
                          "died or hangs; a slow board needs a larger --timeout)")
    if "error" in result:
        err = result["error"]
        if isinstance(err, RemoteError | ValueError):
            raise err
        first = str(err).strip().splitlines()
        raise RemoteError(f"{step}: {first[-1] if first else type(err).__name__}") from None
    return result["value"]


def _load_problem(message: str, metadata: dict, library: Path) -> str:
    """What a failed remote load most likely means, from the loader's message."""
    from ..target import describe_target
    from .cross import CrossLinkError, read_elf

    try:
        machine = read_elf(library).machine
    except (CrossLinkError, OSError, ValueError):
        machine = "unknown"
    built = (f"{machine} code for {describe_target(metadata['target'])}, built with TVM "
             f"{metadata.get('versions', {}).get('tvm', '?')}")
    text = message.lower()
    if "undefined symbol" in text or "version" in text:
        why = "the board's TVM runtime is another version: it needs the one that built it"
    elif any(s in text for s in ("elf", "wrong", "exec format", "cannot open shared object")):
        why = f"the board is not {machine}, or its C library is older than the library needs"
    else:
        why = "see the loader's message"
    return f"the board cannot load the library ({built}): {why} (loader: {message})"


class RemoteModel:
    """An artifact loaded on a board: ``run_with_masks`` and ``benchmark`` as
    ``CompiledModel``'s, executed there. Use it as a context manager (or call ``close``)."""

    def __init__(self, path: str | Path, board: Board):
        self.path = Path(path)
        self.board = board
        self.metadata = artifact.read_metadata(self.path)
        library = artifact.check_library(self.path, self.metadata)
        if "weights" in self.metadata:
            # its main_transform_params takes the weights as one tuple, and TVM's RPC cannot
            # pass a tuple of tensors: code-only modules prepare their weights where they load
            raise RemoteError("this artifact is code only (compiled with --weights-as-inputs): "
                              "over RPC TVM cannot hand its weights to the module; deploy a "
                              "weight-carrying build, or run it on the board with `las run` "
                              "(weights beside it: `las compile --weights-beside`)")
        self._session = self._vm = None
        self._name = f"las-{self.metadata['library']['sha256'][:16]}.so" \
            if "library" in self.metadata else "las-model.so"
        self._session = board.connect()
        try:
            self._open(library)
        except BaseException:
            self.close()
            raise

    def _open(self, library: Path) -> None:
        import tvm.runtime.vm

        session, timeout = self._session, self.board.timeout
        kind = str(artifact.runtime_device(self.metadata)).split(":")[0]
        self.device = bounded("asking the board for its device", timeout,
                              lambda: session.device(tvm.device(kind).dlpack_device_type(), 0))
        if not bounded("asking the board for its device", timeout, lambda: self.device.exist):
            raise RemoteError(f"the board has no {kind.upper()} device, and the artifact is "
                              f"compiled for one ({self.metadata['target_kind']})")
        memory = bounded("asking the board for its memory", timeout,
                         lambda: self.device.total_global_memory)
        needed = 2 * library.stat().st_size
        if memory and memory < needed:
            raise RemoteError(f"the board's {kind} device has {memory / 2**20:.0f} MiB of "
                              f"memory; loading this artifact takes about {needed / 2**20:.0f} "
                              "MiB")
        bounded(f"uploading {library.name}", max(timeout, library.stat().st_size / 1e6),
                lambda: session.upload(str(library), self._name))
        try:
            module = bounded("loading the library on the board", timeout,
                             lambda: session.load_module(self._name))
        except RemoteError as err:
            raise RemoteError(_load_problem(str(err).split(": ", 1)[-1], self.metadata,
                                            library)) from None
        self._vm = bounded("starting the Relax VM on the board", timeout,
                           lambda: tvm.runtime.vm.VirtualMachine(module, self.device))

    # -- the CompiledModel interface, run on the board -------------------------------------
    @property
    def output_names(self) -> list[str]:
        return [o for o in self.metadata["outputs"] if not str(o).startswith("mask:")]

    @property
    def threads_in_effect(self) -> str:
        return "the board's"

    @property
    def check_data(self):
        return artifact.read_check_data(self.path, self.metadata)

    def _input(self, x, check_finite: bool = True):
        import tvm

        array = host_input(x, self.metadata["input"], check_finite)
        return bounded("sending the input", self.board.timeout,
                       lambda: tvm.runtime.tensor(array, self.device))

    def run_with_masks(self, x, check_finite: bool = True):
        data = self._input(x, check_finite)
        vm = self._vm

        def run():
            vm.set_input("main", data)
            vm.invoke_stateful("main")
            return [o.numpy() for o in vm.get_outputs("main")]

        outputs = bounded("running the network on the board", self.board.timeout, run)
        count = len(self.output_names)
        return (outputs[0] if count == 1 else tuple(outputs[:count])), outputs[count:]

    def run(self, x, check_finite: bool = True):
        return self.run_with_masks(x, check_finite)[0]

    def benchmark(self, x=None, repeat: int = 30, number: int = 1, warmup: int = 3) -> dict:
        """Latency on the board (``time_evaluator`` there; median of ``repeat`` runs)."""
        if x is None:
            x = np.random.default_rng(0).standard_normal(
                self.metadata["input"]["shape"]).astype(np.float32)
        data, vm = self._input(x), self._vm

        def measure():
            vm.set_input("main", data)
            for _ in range(warmup):
                vm.invoke_stateful("main")
            timer = vm.time_evaluator("invoke_stateful", self.device, number=number,
                                      repeat=repeat)
            return np.array(timer("main").results) * 1e3

        runs = bounded("timing on the board", self.board.timeout * (1 + repeat / 10), measure)
        return {"median_ms": float(np.median(runs)), "mean_ms": float(runs.mean()),
                "min_ms": float(runs.min()), "max_ms": float(runs.max()), "runs": len(runs)}

    # -- closing ------------------------------------------------------------------------------
    def close(self) -> None:
        """Remove the uploaded library from the board (best effort) and end the session.

        The connection ends when the last object holding the session (the VM, the remote
        module, remote tensors) is freed; a server serves one session at a time, so one
        left open keeps the next client waiting."""
        session, self._session = self._session, None
        self._vm = None
        if session is None:
            return
        try:
            bounded("removing the library from the board", 10, lambda: session.remove(self._name))
        except Exception:  # noqa: BLE001 - the server removes its session folder anyway
            pass
        session = None
        gc.collect()  # the VM and module reference each other: free them now

    def __enter__(self) -> RemoteModel:
        return self

    def __exit__(self, *_exc) -> None:
        self.close()
