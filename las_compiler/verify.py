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

    max_abs_error: float
    mask_cells_differing: int
    activation: tuple[float, ...]  # mean of each dynamic block's compiled mask

    @property
    def masks_equal(self) -> bool:
        return self.mask_cells_differing == 0


def compare_with_pytorch(compiled, model, x) -> Agreement:
    """Run ``compiled`` and ``model`` (eval) on ``x``; the static blocks of the compiled
    module (its metadata) run dense in the reference too."""
    import torch

    from .frontend import ExportableLASResNet

    static = [i for i, b in enumerate(compiled.metadata["blocks"]) if b["pipeline"] == "static"]
    logits, masks = compiled.run_with_masks(x)
    with torch.no_grad():
        reference = ExportableLASResNet(model, static)(torch.as_tensor(np.asarray(x)))
    differing = sum(int(np.count_nonzero(m != r.numpy())) for m, r in
                    zip(masks, reference[1:], strict=True))
    return Agreement(float(np.abs(logits - reference[0].numpy()).max()), differing,
                     tuple(float(m.mean()) for m in masks))
