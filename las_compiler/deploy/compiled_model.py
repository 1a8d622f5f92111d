"""``CompiledModel``: a compiled LAS network (or block) to run, time, profile and export.

It needs only the TVM runtime: a model loaded from an artifact runs without torch or the
compiler library. The device is the one the artifact records (``artifact.runtime_device``).
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from pathlib import Path

import numpy as np

from . import artifact
from .threads import default_threads, use_threads


class CompiledModel:
    """A compiled LAS network: run it, time it, export it.

    ``run(x)`` returns the network's output (logits; a backbone's feature maps, a tuple in
    ``metadata["outputs"]`` order); ``run_with_masks(x)`` also returns each dynamic block's
    patch mask (bool, (N, gh, gw)). Inputs are checked against the compiled
    shape, and by default rejected when they hold NaN or infinite values (``check_finite``:
    a NaN reaching a masker compares false and gives plausible, wrong masks). A module that
    *donates* its input (``metadata["donates_input"]``, one-block modules for benchmarks)
    updates the input tensor in place; ``run`` always hands it a fresh copy, and
    ``benchmark``/``profile`` refresh it before every call.

    Thread safety: one ``CompiledModel`` may be shared by any number of threads. Each thread
    that runs it gets its own Relax VM (a VM's registers and memory pool are per call state,
    so two threads in one VM crash), made on the thread's first call (about a millisecond;
    the memory of one set of activations per thread), and its own TVM thread pool of
    ``threads`` workers (see :mod:`.threads`).
    """

    def __init__(self, module, metadata: dict, artifact_dir: Path | None = None,
                 threads: int | None = None, device_code_packer=None):
        self.metadata = metadata
        # the compiler's packer of a GPU module's device code into the exported library
        # (``TargetFamily.device_code_packer``): the runtime side never builds device code
        self._device_code_packer = device_code_packer
        self._module = module
        self._artifact_dir = artifact_dir
        self._executable = module  # what an export links (the module that runs may change)
        self._library: tuple[Path, str] | None = None  # (library, sha256) an export wrote
        self._machines_made = False
        self._local = threading.local()
        self._prepared = None  # a code-only module's weights, prepared (set_weights)
        self._check_data = None  # see check_data
        self.source_weights = None  # a code-only build's weights at compile time (export)
        self.threads = threads if threads is not None else default_threads(
            metadata.get("target"))
        if self.threads < 1:
            raise ValueError(f"threads must be >= 1, got {self.threads}")

    # -- running ----------------------------------------------------------------------------
    @property
    def runnable(self) -> bool:
        """Whether this machine can run the module (see :attr:`unrunnable_reason`)."""
        return self.unrunnable_reason is None

    @property
    def unrunnable_reason(self) -> str | None:
        """Why this machine cannot run the module (its CPU lacks the instruction sets the code
        uses, another architecture, no GPU for a GPU module), or None."""
        from .host_fit import unfit_reason

        if not artifact.runtime_device(self.metadata).exist:
            return (f"it is compiled for {self.metadata['target_kind']} and this machine has no "
                    "such device")
        return unfit_reason(self.metadata["target"], self.metadata.get("cpu_flags", ()))

    @property
    def device(self):
        return artifact.runtime_device(self.metadata)

    def _machine(self):
        """This thread's VM (made, and the thread's pool sized, on its first call)."""
        vm = getattr(self._local, "vm", None)
        if vm is None:
            reason = self.unrunnable_reason
            if reason is not None:
                raise RuntimeError(f"this module cannot run on this machine: {reason}")
            import tvm.runtime.vm

            self._local.threads = use_threads(self.threads)
            vm = self._local.vm = tvm.runtime.vm.VirtualMachine(self._module, self.device)
            self._machines_made = True
        return vm

    @property
    def threads_in_effect(self) -> int:
        """The TVM threads this thread's calls use (``threads``, unless the thread had made a
        smaller pool before its first call here)."""
        self._machine()
        return self._local.threads

    def _host_input(self, x, check_finite: bool = True) -> np.ndarray:
        return host_input(x, self.metadata["input"], check_finite)

    def _input(self, x, check_finite: bool = True):
        import tvm

        return tvm.runtime.tensor(self._host_input(x, check_finite), self.device)

    def _example(self, x, check_finite: bool = True):
        if x is None:
            return np.random.default_rng(0).standard_normal(
                self.metadata["input"]["shape"]).astype(np.float32)
        return self._host_input(x, check_finite)

    # -- weights given at run time --------------------------------------------------------
    @property
    def takes_weights(self) -> bool:
        """Whether the module was compiled code-only (``weights_as_inputs``): it runs after
        :meth:`set_weights`."""
        return "weights" in self.metadata

    def set_weights(self, state_dict) -> None:
        """Prepare the weights of a code-only module on its device: ``state_dict`` maps the
        names in ``metadata["weights"]`` (a PyTorch ``state_dict``, tensors or arrays) to
        values; BN folding and packing run once, in the module's ``main_transform_params``."""
        import tvm

        if not self.takes_weights:
            raise ValueError("this module carries its weights (compiled without "
                             "weights_as_inputs); there are none to set")
        names, shapes = self.metadata["weights"], self.metadata.get("weight_shapes")
        missing = [n for n in names if n not in state_dict]
        if missing:
            raise ValueError(f"state_dict lacks {len(missing)} of the module's weights, e.g. "
                             f"{', '.join(missing[:3])}")
        arrays = []
        for index, name in enumerate(names):
            value = state_dict[name]
            array = _array(value)
            if shapes is not None and list(array.shape) != list(shapes[index]):
                raise ValueError(f"weight {name} has shape {tuple(array.shape)}, the module "
                                 f"was compiled for {tuple(shapes[index])}")
            if not np.isfinite(array).all():
                raise ValueError(f"weight {name} holds NaN or infinite values")
            arrays.append(tvm.runtime.tensor(array, self.device))
        self._prepared = list(self._machine()["main_transform_params"](arrays))
        self.source_weights = state_dict

    @property
    def weights_set(self) -> bool:
        """Whether a code-only module has its weights (:meth:`set_weights`, or a weights
        file beside the artifact, prepared at load)."""
        return self._prepared is not None

    def _weight_args(self) -> list:
        if not self.takes_weights:
            return []
        prepared = self._prepared
        if prepared is None:
            raise RuntimeError("this module takes its weights at run time: call "
                               "set_weights(state_dict) first")
        return prepared

    @property
    def output_names(self) -> list[str]:
        """The network's outputs (``["logits"]``, a backbone's ``["C2", ..., "C5"]``)."""
        return [o for o in self.metadata["outputs"] if not str(o).startswith("mask:")]

    def run_with_masks(self, x, check_finite: bool = True):
        """(output, each dynamic block's mask); the output is one array, or a tuple of
        arrays for a network with several (a backbone). ``check_finite=False`` skips the
        NaN/Inf check of the input (a pass over it)."""
        outputs = self._machine()["main"](self._input(x, check_finite), *self._weight_args())
        outputs = [o.numpy() for o in (list(outputs) if not hasattr(outputs, "numpy")
                                       else [outputs])]
        count = len(self.output_names)
        out = outputs[0] if count == 1 else tuple(outputs[:count])
        return out, outputs[count:]

    def run(self, x, check_finite: bool = True):
        return self.run_with_masks(x, check_finite)[0]

    @property
    def donates_input(self) -> bool:
        return bool(self.metadata.get("donates_input", False))

    def benchmark(self, x=None, repeat: int = 30, number: int = 1, warmup: int = 3) -> dict:
        """Latency of one forward pass (ms): median, mean, min, max over ``repeat`` runs
        (TVM's ``time_evaluator``; for a module that donates its input, a timed loop that
        refreshes the input before each call, outside the timed part)."""
        if repeat < 1 or number < 1 or warmup < 0:
            raise ValueError(f"benchmark needs repeat >= 1, number >= 1 and warmup >= 0, got "
                             f"{repeat}, {number}, {warmup}")
        vm = self._machine()
        host = self._example(x)
        data = self._input(host)
        for _ in range(warmup):
            if self.donates_input:
                data.copyfrom(host)
            vm["main"](data, *self._weight_args())
        if self.donates_input:
            main, runs = vm["main"], []
            for _ in range(repeat):
                data.copyfrom(host)
                self.device.sync()  # a GPU runs kernels asynchronously: time them finished
                start = time.perf_counter()
                for _ in range(number):
                    main(data)
                self.device.sync()
                runs.append((time.perf_counter() - start) / number * 1e3)
            runs = np.array(runs)
        else:
            timer = vm.time_evaluator("main", self.device, number=number, repeat=repeat)
            runs = np.array(timer(data, *self._weight_args()).results) * 1e3
        return {"median_ms": float(np.median(runs)), "mean_ms": float(runs.mean()),
                "min_ms": float(runs.min()), "max_ms": float(runs.max()), "runs": len(runs)}

    def profile(self, x=None, runs: int = 10) -> dict[str, float]:
        """Milliseconds per forward pass spent in each kernel / VM builtin (mean over ``runs``),
        from the Relax VM's instrument hook. Per-call overhead of the hook (~10 us) is included,
        so the sum exceeds :meth:`benchmark`'s latency a little."""
        totals: dict[str, float] = {}
        for name, ms, _shapes in self.trace(x, runs):
            totals[name] = totals.get(name, 0.0) + ms / runs
        return dict(sorted(totals.items(), key=lambda item: -item[1]))

    def trace(self, x=None, runs: int = 1) -> list[tuple[str, float, tuple]]:
        """Every VM call of ``runs`` instrumented forward passes (after an uninstrumented
        warm-up), in order: ``(name, ms, shapes)``, where ``shapes`` are the shapes of the
        call's tensor arguments (what a symbolic patch count was on this input). Per-call
        overhead of the hook (~10 us) is included in each ``ms``."""
        if runs < 1:
            raise ValueError(f"profile needs runs >= 1, got {runs}")
        vm = self._machine()
        host = self._example(x)
        data = self._input(host)
        calls: list[tuple[str, float, tuple]] = []
        started: list[tuple[float, tuple]] = []

        def instrument(_func, name, before_run, _ret, *args):
            if before_run:
                shapes = tuple(tuple(int(d) for d in a.shape) for a in args
                               if hasattr(a, "shape"))
                started.append((time.perf_counter(), shapes))
            else:
                start, shapes = started.pop()
                calls.append((name, (time.perf_counter() - start) * 1e3, shapes))
            return 0

        vm["main"](data, *self._weight_args())  # warm-up, uninstrumented
        vm.set_instrument(instrument)
        try:
            for _ in range(runs):
                if self.donates_input:
                    data.copyfrom(host)
                vm["main"](data, *self._weight_args())
        finally:
            vm.set_instrument(lambda *_args: 0)
        return calls

    @property
    def check_data(self):
        """The input, outputs and masks this module must reproduce (``verify.CheckData``):
        PyTorch's, recorded at compile time and stored in the artifact (``check.npz``), so a
        board can be checked without torch; None for modules compiled without a model."""
        if self._check_data is None and self._artifact_dir is not None:
            self._check_data = artifact.read_check_data(self._artifact_dir, self.metadata)
        return self._check_data

    @check_data.setter
    def check_data(self, value) -> None:
        self._check_data = value

    # -- artifacts --------------------------------------------------------------------------
    def export(self, path: str | os.PathLike, weights_beside: bool = False) -> Path:
        """Write the artifact directory (library + metadata) atomically; returns its path.

        ``weights_beside``: a code-only module's weights go into ``weights.params`` beside
        the code, and :func:`load` prepares them at start (the weights it was compiled from,
        else the ones given to :meth:`set_weights`).

        Machine code is generated once: the export's library is what a later run here
        loads (before it, a compiled module's first run generated the same code again in
        LLVM's JIT: 46 of the 75 s ``las compile`` spent on LAS-ResNet-50 at 224), and a
        second export copies it."""
        weights = None
        if weights_beside:
            if not self.takes_weights:
                raise ValueError("weights_beside is for code-only modules (weights_as_inputs); "
                                 "this one carries its weights")
            weights = self.source_weights
            if weights is None:
                raise ValueError("no weights to store beside the code: compile it from a "
                                 "model, or load an artifact that has them")
            weights = {name: _array(weights[name]) for name in self.metadata["weights"]}
        linked = None
        if self._artifact_dir is not None:  # loaded from disk: the library file as it is
            linked = Path(self._artifact_dir) / artifact.LIBRARY_FILE
        elif self._library is not None and self._library[0].exists() and \
                artifact.file_sha256(self._library[0]) == self._library[1]:
            linked = self._library[0]
        if linked is not None:
            metadata = {k: v for k, v in self.metadata.items()
                        if k not in ("format", "library", "check", "weights_file")}
            return artifact.write_artifact(path, _CopiedLibrary(linked), metadata,
                                           check=self.check_data, weights=weights)
        linker = artifact.cross_linker(self.metadata["target"], self.metadata.get("glibc"))
        packer = self._device_code_packer
        written = artifact.write_artifact(path, self._executable, self.metadata, linker, packer,
                                          check=self.check_data, weights=weights)
        if packer is not None:
            self.metadata["device_code"] = packer.summary
        self._library = (Path(written) / artifact.LIBRARY_FILE,
                         artifact.read_metadata(written)["library"]["sha256"])
        if self.runnable and not self._machines_made:
            self._module = artifact.load_private_copy(self._library[0])
        return written


def host_input(x, spec: dict, check_finite: bool = True) -> np.ndarray:
    """``x`` (array or tensor) checked against the compiled input ``spec`` (shape, numbers,
    floating point, and finite unless ``check_finite`` is false), as contiguous float32."""
    array = x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)
    if array.dtype == object or not np.issubdtype(array.dtype, np.number):
        raise TypeError(f"input of dtype {array.dtype} is not an array of numbers")
    if list(array.shape) != list(spec["shape"]):
        raise ValueError(f"input shape {tuple(array.shape)} does not match the compiled "
                         f"shape {tuple(spec['shape'])} ({spec.get('layout', 'NCHW')}); "
                         "recompile for other sizes")
    if array.dtype != np.float32:
        if not np.issubdtype(array.dtype, np.floating):
            raise TypeError(f"input dtype {array.dtype} is not floating point; the model "
                            "takes float32 images")
        array = array.astype(np.float32)
    if check_finite and not np.isfinite(array).all():
        nan, inf = int(np.isnan(array).sum()), int(np.isinf(array).sum())
        raise ValueError(f"input holds {nan} NaN and {inf} infinite values: the maskers "
                         "would decide on them (a NaN logit compares false) and the "
                         "output would look plausible; pass check_finite=False to skip "
                         "this check")
    return np.ascontiguousarray(array)


def _array(value) -> np.ndarray:
    return np.ascontiguousarray(value.detach().cpu().numpy() if hasattr(value, "detach")
                                else np.asarray(value), dtype=np.float32)


class _CopiedLibrary:
    """``export_library`` of an already linked library: a file copy."""

    def __init__(self, path: Path):
        self.path = path

    def export_library(self, dest: str) -> None:
        shutil.copyfile(self.path, dest)


def load(path: str | os.PathLike, threads: int | None = None) -> CompiledModel:
    """Load an exported artifact (needs only the TVM runtime, not torch or the compiler).

    ``threads``: TVM threads per calling thread (default: ``TVM_NUM_THREADS``, else the cores
    the target was compiled for, at most the CPUs this process may use)."""
    module, metadata = artifact.load_artifact(path)
    compiled = CompiledModel(module, metadata, artifact_dir=Path(path), threads=threads)
    weights = artifact.read_weights(path, metadata)  # code only, its weights beside it
    if weights is not None:
        compiled.source_weights = weights
        if compiled.runnable:
            compiled.set_weights(weights)
    return compiled
