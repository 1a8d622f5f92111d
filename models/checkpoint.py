"""Load weights into a LAS network from the checkpoint layouts users have.

* our own state_dicts (``model.state_dict()``);
* dense torchvision ResNets (no masker keys: maskers keep their all-on initialisation, so the
  LAS network computes exactly the dense network until it is fine-tuned or calibrated);
* official LASNet checkpoints (``dyn_resnet50/101``): ``module.`` prefixes from DataParallel
  are stripped and training wrappers (``{"state_dict": ...}``) unwrapped;
* official LASNet detection checkpoints (mmdetection 2.x, ``ResNet_sd`` backbone): into a
  backbone model, the ``backbone.`` keys load and the neck and heads are left out (a
  classification checkpoint into a backbone likewise leaves out ``fc``).

Anything else fails with one message naming the keys and shapes that do not fit.

Masker weights have the same shape for every S, so a checkpoint loads into a network of any
S_net and silently computes other masks. Official ``main.py`` checkpoints record how they were
trained in ``hyper_set`` (``str(args)``: ``mask_spatial_granularity='4-4-4-...'``,
``IMAGE_SIZE=224``) and ``model`` (``'dyn_resnet50'``), mmdetection ones in ``meta["config"]``
(the config's text: ``depth=101``, ``mask_spatial_granularity=[4, 4, ...]``);
:func:`read_checkpoint` reads them so callers can default to them and refuse a contradicting
S_net.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

import torch

from .las_resnet import LASResNet

_WRAPPER_KEYS = ("state_dict", "model", "model_state_dict", "net")


@dataclass
class LoadReport:
    """What a checkpoint provided."""

    layout: str  # "las" (masker weights present) or "dense" (torchvision)
    maskers_initialised: list[str]  # blocks whose masker kept its initial all-on weights
    left_out: list[str] = field(default_factory=list)  # keys not for this model (neck, fc)


# official architecture names (``main.py --arch``; mmdetection ``ResNet_sd`` depth) -> ours
OFFICIAL_ARCHS = {"dyn_resnet50": "las_resnet50", "dyn_resnet101": "las_resnet101"}
DETECTION_DEPTHS = {"50": "las_resnet50", "101": "las_resnet101"}
BACKBONE_PREFIX = "backbone."


@dataclass
class CheckpointInfo:
    """A checkpoint's weights and what it says about how it was trained (None: not recorded)."""

    state: dict[str, torch.Tensor]
    model: str | None = None  # our architecture name
    granularity: list[int] | None = None  # S per block (``mask_spatial_granularity``)
    image_size: int | None = None  # ``IMAGE_SIZE``: the square input it was trained at
    recorded: list[str] = field(default_factory=list)  # where each field came from

    @property
    def detection(self) -> bool:
        """Whether this is a detector's checkpoint (its backbone under ``backbone.``)."""
        return any(k.startswith(BACKBONE_PREFIX) for k in self.state)


def _load(source: str | os.PathLike | Mapping):
    if not isinstance(source, str | os.PathLike):
        return source
    try:
        return torch.load(source, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise FileNotFoundError(f"checkpoint {os.fspath(source)!r} does not exist") from None
    except Exception as err:  # corrupt or foreign file: say which and why
        raise ValueError(f"cannot read checkpoint {os.fspath(source)!r}: {err}") from err


def read_checkpoint(source: str | os.PathLike | Mapping) -> CheckpointInfo:
    """The state_dict of a checkpoint plus its training record (official ``hyper_set``)."""
    obj = _load(source)
    info = CheckpointInfo(read_state_dict(obj))
    if not isinstance(obj, Mapping):
        return info
    arch = obj.get("model")
    hyper = obj.get("hyper_set")
    if isinstance(hyper, str):
        arch = arch if isinstance(arch, str) else _field(hyper, r"\barch='(\w+)'")
        spec = _field(hyper, r"\bmask_spatial_granularity='([\d-]+)'")
        if spec:
            info.granularity = [int(v) for v in spec.split("-")]
            info.recorded.append(f"S_net from hyper_set (mask_spatial_granularity={spec})")
        size = _field(hyper, r"\bIMAGE_SIZE=(\d+)")
        if size:
            info.image_size = int(size)
            info.recorded.append(f"input size from hyper_set (IMAGE_SIZE={size})")
    if isinstance(arch, str) and arch in OFFICIAL_ARCHS:
        info.model = OFFICIAL_ARCHS[arch]
        info.recorded.append(f"architecture {arch!r} -> {info.model}")
    meta = obj.get("meta")
    config = meta.get("config") if isinstance(meta, Mapping) else None
    if isinstance(config, str) and "ResNet_sd" in config:  # an mmdetection LASNet detector
        spec = _field(config, r"\bmask_spatial_granularity=\[([\d,\s]+)\]")
        if spec:
            info.granularity = [int(v) for v in spec.replace(" ", "").split(",") if v]
            info.recorded.append("S_net from meta.config (mask_spatial_granularity)")
        depth = _field(config, r"type='ResNet_sd',\s*depth=(\d+)") or _field(
            config, r"\bdepth=(\d+)")
        if depth in DETECTION_DEPTHS:
            info.model = DETECTION_DEPTHS[depth]
            info.recorded.append(f"ResNet_sd depth={depth} -> {info.model}")
    return info


def _field(text: str, pattern: str) -> str | None:
    match = re.search(pattern, text)
    return match.group(1) if match else None


def read_state_dict(source: str | os.PathLike | Mapping) -> dict[str, torch.Tensor]:
    """A flat ``{name: tensor}`` dict from a file or mapping, unwrapped and de-prefixed."""
    obj = _load(source)
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
    left_out = []
    if any(k.startswith(BACKBONE_PREFIX) for k in state):
        if not model.is_backbone:
            raise ValueError("this is a detector's checkpoint (its backbone under 'backbone.'): "
                             "build the model as a backbone (out_stages; --backbone)")
        left_out = sorted(k for k in state if not k.startswith(BACKBONE_PREFIX))
        state = {k[len(BACKBONE_PREFIX):]: v for k, v in state.items()
                 if k.startswith(BACKBONE_PREFIX)}
    if model.is_backbone:  # a classifier's checkpoint initialising a backbone: no fc
        left_out += sorted(k for k in state if k.startswith("fc."))
        state = {k: v for k, v in state.items() if not k.startswith("fc.")}
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
        head = "as a backbone" if model.is_backbone else f"and {model.num_classes} classes"
        raise ValueError(
            f"checkpoint does not fit LAS-ResNet with stages {depths} {head}: "
            + "; ".join(problems)
        )
    model.load_state_dict(state, strict=False)
    initialised = sorted({k.split(".masker.")[0] for k in missing})
    all_blocks = len(list(model.dynamic_blocks()))
    layout = "dense" if initialised and len(initialised) == all_blocks else "las"
    return LoadReport(layout, initialised, left_out)
