"""Load weights into a LAS network from the checkpoint layouts users have.

* our own state_dicts (``model.state_dict()``);
* dense torchvision ResNets (no masker keys: maskers keep their all-on initialisation, so the
  LAS network computes exactly the dense network until it is fine-tuned or calibrated);
* official LASNet checkpoints (``dyn_resnet50/101``): ``module.`` prefixes from DataParallel
  are stripped and training wrappers (``{"state_dict": ...}``) unwrapped.

Anything else fails with one message naming the keys and shapes that do not fit.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

import torch

from .las_resnet import LASResNet

_WRAPPER_KEYS = ("state_dict", "model", "model_state_dict", "net")


@dataclass
class LoadReport:
    """What a checkpoint provided."""

    layout: str  # "las" (masker weights present) or "dense" (torchvision)
    maskers_initialised: list[str]  # blocks whose masker kept its initial all-on weights


def read_state_dict(source: str | os.PathLike | Mapping) -> dict[str, torch.Tensor]:
    """A flat ``{name: tensor}`` dict from a file or mapping, unwrapped and de-prefixed."""
    if isinstance(source, str | os.PathLike):
        try:
            obj = torch.load(source, map_location="cpu", weights_only=True)
        except FileNotFoundError:
            raise FileNotFoundError(f"checkpoint {os.fspath(source)!r} does not exist") from None
        except Exception as err:  # corrupt or foreign file: say which and why
            raise ValueError(f"cannot read checkpoint {os.fspath(source)!r}: {err}") from err
    else:
        obj = source
    while isinstance(obj, Mapping) and not _is_flat(obj):
        inner = next((obj[k] for k in _WRAPPER_KEYS if isinstance(obj.get(k), Mapping)), None)
        if inner is None:
            raise ValueError(
                "checkpoint holds no state_dict: expected tensors or one of the keys "
                f"{list(_WRAPPER_KEYS)}, found keys {sorted(obj)[:8]}"
            )
        obj = inner
    if not isinstance(obj, Mapping):
        raise ValueError(f"checkpoint holds a {type(obj).__name__}, not a state_dict")
    return {k.removeprefix("module."): v for k, v in obj.items()}


def _is_flat(obj: Mapping) -> bool:
    return bool(obj) and all(isinstance(v, torch.Tensor) for v in obj.values())


def load_checkpoint(model: LASResNet, source: str | os.PathLike | Mapping) -> LoadReport:
    """Load a checkpoint (our, torchvision or official LASNet layout) into ``model``.

    Raises
    ------
    ValueError
        If keys are unexpected, non-masker keys are missing, or shapes differ.
    """
    state = read_state_dict(source)
    expected = model.state_dict()
    unexpected = sorted(set(state) - set(expected))
    missing = sorted(set(expected) - set(state))
    missing_other = [k for k in missing if ".masker." not in k]
    mismatched = [
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in state
        if k in expected and state[k].shape != expected[k].shape
    ]
    problems = []
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected keys (e.g. {unexpected[:3]})")
    if missing_other:
        problems.append(f"{len(missing_other)} missing keys (e.g. {missing_other[:3]})")
    if mismatched:
        problems.append(f"{len(mismatched)} shape mismatches (e.g. {mismatched[:2]})")
    if problems:
        depths = "-".join(map(str, model.stage_depths))
        raise ValueError(
            f"checkpoint does not fit LAS-ResNet with stages {depths} and "
            f"{model.num_classes} classes: " + "; ".join(problems)
        )
    model.load_state_dict(state, strict=False)
    initialised = sorted({k.split(".masker.")[0] for k in missing})
    all_blocks = len(list(model.dynamic_blocks()))
    layout = "dense" if initialised and len(initialised) == all_blocks else "las"
    return LoadReport(layout, initialised)
