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


def compare_with_pytorch(compiled, model, x) -> Agreement:
    """Run ``compiled`` and ``model`` (eval) on ``x``; the static blocks of the compiled
    module (its metadata) run dense in the reference too."""
    import torch

    from .frontend import ExportableLASResNet

    static = [i for i, b in enumerate(compiled.metadata["blocks"]) if b["pipeline"] == "static"]
    out, masks = compiled.run_with_masks(x)
    outputs = list(out) if isinstance(out, tuple) else [out]
    with torch.no_grad():
        reference = ExportableLASResNet(model, static)(torch.as_tensor(np.asarray(x)))
    expected, expected_masks = reference[:len(outputs)], reference[len(outputs):]
    differing = sum(int(np.count_nonzero(m != r.numpy())) for m, r in
                    zip(masks, expected_masks, strict=True))
    error = max(float(np.abs(o - e.numpy()).max()) for o, e in zip(outputs, expected,
                                                                    strict=True))
    scale = max(float(e.abs().max()) for e in expected)
    return Agreement(error, differing, tuple(float(m.mean()) for m in masks), scale)
