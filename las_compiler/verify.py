"""Check a compiled LAS network against the PyTorch model it came from.

What a user deciding whether to ship a compiled module needs: the largest logit difference,
and how many patch-mask cells the compiled maskers decided differently. Masks can differ only
where a patch's two logits tie within float rounding (~1e-6: TVM sums the pooled dot product
in another order); everything after such a cell follows the flipped decision.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Agreement:
    """Compiled vs PyTorch on one input."""

    max_abs_error: float  # over every output (a backbone's feature maps: all of them)
    mask_cells_differing: int
    activation: tuple[float, ...]  # mean of each dynamic block's compiled mask
    output_scale: float = 1.0  # the largest |output| of the reference, for a relative view

    @property
    def masks_equal(self) -> bool:
        return self.mask_cells_differing == 0


# outputs larger than this are stored as a fixed sample of their values (a detection
# backbone's C2 at 800x1333 is 68 MB); masks are always stored whole
_FULL_OUTPUT_VALUES = 1 << 20
_SAMPLED_VALUES = 1 << 16
CHECK_FILE = "check.npz"


@dataclass
class CheckData:
    """An input and what the model must give for it: every output (whole, or the values at
    fixed flat indices ``samples[i]`` when large) and every dynamic block's mask. Stored in an
    artifact (``check.npz``) so that a board that runs it can be checked without torch."""

    input: np.ndarray
    outputs: list[np.ndarray]
    masks: list[np.ndarray]
    samples: list[np.ndarray | None]

    @classmethod
    def of(cls, x, outputs, masks, sample: bool = True) -> CheckData:
        """``sample``: keep large outputs as a sample of their values (for storing)."""
        kept, samples = [], []
        for out in outputs:
            out = np.asarray(out, dtype=np.float32)
            if not sample or out.size <= _FULL_OUTPUT_VALUES:
                kept.append(out)
                samples.append(None)
            else:
                index = np.linspace(0, out.size - 1, _SAMPLED_VALUES).astype(np.int64)
                kept.append(out.reshape(-1)[index])
                samples.append(index)
        return cls(np.ascontiguousarray(x, dtype=np.float32), kept,
                   [np.asarray(m) for m in masks], samples)

    def save(self, path) -> None:
        arrays = {"input": self.input}
        for i, (out, index) in enumerate(zip(self.outputs, self.samples, strict=True)):
            arrays[f"output_{i}"] = out
            if index is not None:
                arrays[f"output_{i}_index"] = index
        arrays.update({f"mask_{i}": m for i, m in enumerate(self.masks)})
        with open(path, "wb") as f:
            np.savez(f, **arrays)

    @classmethod
    def load(cls, path) -> CheckData:
        with np.load(path, allow_pickle=False) as data:
            count = sum(1 for k in data.files if k.startswith("output_") and
                        not k.endswith("_index"))
            masks = sum(1 for k in data.files if k.startswith("mask_"))
            return cls(data["input"], [data[f"output_{i}"] for i in range(count)],
                       [data[f"mask_{i}"] for i in range(masks)],
                       [data[f"output_{i}_index"] if f"output_{i}_index" in data.files
                        else None for i in range(count)])

    def compare(self, outputs, masks) -> Agreement:
        """How ``outputs`` and ``masks`` (of a run on :attr:`input`) agree with the stored
        ones."""
        outputs = list(outputs)
        if len(outputs) != len(self.outputs) or len(masks) != len(self.masks):
            raise ValueError(f"the run gave {len(outputs)} outputs and {len(masks)} masks, the "
                             f"check data has {len(self.outputs)} and {len(self.masks)}")
        error = 0.0
        for out, expected, index in zip(outputs, self.outputs, self.samples, strict=True):
            got = np.asarray(out).reshape(-1)[index] if index is not None else np.asarray(out)
            error = max(error, float(np.abs(got - expected).max()))
        differing = sum(int(np.count_nonzero(np.asarray(m) != e))
                        for m, e in zip(masks, self.masks, strict=True))
        scale = max(float(np.abs(e).max()) for e in self.outputs)
        return Agreement(error, differing, tuple(float(np.mean(m)) for m in masks), scale)


def reference_check(model, x, static_blocks=(), sample: bool = True) -> CheckData:
    """PyTorch's outputs and masks for ``x`` (the static blocks computed dense, as in the
    compiled module); ``sample``: see :meth:`CheckData.of`."""
    import torch

    from .frontend import ExportableLASResNet

    x = np.ascontiguousarray(x.detach().cpu().numpy() if hasattr(x, "detach") else x,
                             dtype=np.float32)
    with torch.no_grad():
        reference = ExportableLASResNet(model, list(static_blocks))(torch.as_tensor(x))
    count = len(model.output_names)
    return CheckData.of(x, [r.numpy() for r in reference[:count]],
                        [r.numpy() for r in reference[count:]], sample)


def onnx_reference_check(model, x, outputs: list[str], sample: bool = True) -> CheckData:
    """ONNX Runtime's outputs and masks for ``x`` on an ONNX file (every ``ai.las`` op through
    its standard-op body); ``outputs``: the compiled module's output names (``mask:...`` ones
    are masks), in the file's output order. Needs onnxruntime (RuntimeError without)."""
    from .frontend.onnx import run_reference

    results = run_reference(model, x)
    values = [r for r, name in zip(results, outputs, strict=True)
              if not name.startswith("mask:")]
    masks = [r for r, name in zip(results, outputs, strict=True) if name.startswith("mask:")]
    return CheckData.of(np.ascontiguousarray(x, dtype=np.float32), values, masks, sample)


def compare_with_pytorch(compiled, model, x) -> Agreement:
    """Run ``compiled`` and ``model`` (eval) on ``x``; the static blocks of the compiled
    module (its metadata) run dense in the reference too."""
    static = [i for i, b in enumerate(compiled.metadata["blocks"]) if b["pipeline"] == "static"]
    check = reference_check(model, x, static, sample=False)
    out, masks = compiled.run_with_masks(check.input)
    return check.compare(out if isinstance(out, tuple) else [out], masks)
