"""A ready-to-run model: built, a checkpoint loaded, maskers calibrated or kept (seeded).

The rules a user with a trained checkpoint relies on:

* a checkpoint's maskers are what it was trained to do: they are kept unless a rate is asked
  for, and a rate that overrides trained maskers says so loudly (the compiled module's
  self-check would otherwise compare against the re-fitted model and look fine);
* what the checkpoint records (official ``hyper_set``: S_net, input size; the architecture)
  is the default, and an S_net or architecture that contradicts it is an error: masker
  weights fit every S, so a wrong S_net would load and silently compute other masks;
* without a checkpoint the maskers are random, so they are calibrated (r = 0.5 unless told).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from .calibrate import calibrate
from .checkpoint import CheckpointInfo, load_checkpoint, read_checkpoint
from .granularity import format_granularity, parse_granularity
from .las_resnet import DEFAULT_GRANULARITY, STAGE_DEPTHS, LASResNet, build_model

DEFAULT_MODEL = "las_resnet50"
DEFAULT_INPUT = (224, 224)
DEFAULT_DETECTION_INPUT = (800, 1333)  # COCO: shorter side 800, longer at most 1333
DEFAULT_RATE = 0.5
KEEP_MASKERS = "none"  # the ``rate`` that keeps whatever maskers the model has


@dataclass
class PreparedModel:
    model: LASResNet
    example: torch.Tensor  # (batch, 3, H, W)
    rate: float | None  # the rate maskers were calibrated to (None: kept)
    notes: list[str] = field(default_factory=list)  # what was decided and why
    warnings: list[str] = field(default_factory=list)  # what the user should not miss


@torch.no_grad()
def prepare_model(model_name: str | None = None, granularity=None,
                  rate: float | str | None = None, input_size: tuple[int, int] | None = None,
                  batch: int = 1, checkpoint: str | None = None, seed: int = 0,
                  out_stages=None) -> PreparedModel:
    """Build ``model_name`` at ``granularity``, load ``checkpoint``, then calibrate maskers to
    ``rate`` (``"none"``: keep them; None: keep a checkpoint's, else calibrate to 0.5), with
    an example input of ``input_size``. None for the model, S_net or input size: the
    checkpoint's record, else the defaults. ``out_stages``: build a detection backbone
    returning those stages' maps (1..4: C2..C5; default input 800x1333). Seeded by ``seed``.

    Raises
    ------
    ValueError
        If the model or S_net contradicts what the checkpoint records, or the checkpoint does
        not fit the network.
    """
    torch.manual_seed(seed)
    info = read_checkpoint(checkpoint) if checkpoint is not None else None
    notes, warnings = [], []
    name = _model_name(model_name, info)
    depths = STAGE_DEPTHS[name] if name in STAGE_DEPTHS else None
    per_block = _granularity(granularity, info, depths, name, notes, warnings)
    if info is not None and info.detection and out_stages is None:
        raise ValueError("this is a detector's checkpoint (its backbone under 'backbone.'): "
                         "compile the backbone (--backbone)")
    size = _input_size(input_size, info, notes, out_stages is not None)
    model = build_model(name, per_block, out_stages=out_stages).eval()
    if info is not None:
        report = load_checkpoint(model, info.state)
        trained = report.layout == "las"
        parts = sorted({k.split(".")[0] for k in report.left_out})
        notes.append(f"checkpoint {checkpoint}: {'LAS' if trained else 'dense'} weights"
                     + ("" if trained else ", maskers all on until calibrated")
                     + (f"; {len(report.left_out)} keys of {', '.join(parts)} left out"
                        if report.left_out else ""))
    else:
        trained = False
    if rate is None:
        rate = KEEP_MASKERS if info is not None else DEFAULT_RATE
    if rate == KEEP_MASKERS:
        calibrated = None
        if info is not None:
            notes.append("maskers kept as the checkpoint has them")
    else:
        calibrated = float(rate)
        if trained:
            warnings.append(f"--rate {calibrated} re-fits the checkpoint's trained maskers: the "
                            "masks, and with them the logits, are no longer the checkpoint's "
                            "(leave --rate out to keep them)")
        # 8 images at classification sizes; 2 (about 2000 cells a block) at detection sizes
        images = max(batch, 8 if size[0] * size[1] <= 4 * 224 * 224 else 2)
        calibrate(model, calibrated, torch.randn(images, 3, *size))
    x = torch.randn(batch, 3, *size)
    return PreparedModel(model, x, calibrated, notes, warnings)


def _model_name(requested: str | None, info: CheckpointInfo | None) -> str:
    recorded = info.model if info is not None else None
    if requested is not None and recorded is not None and requested != recorded:
        raise ValueError(f"--model {requested} contradicts the checkpoint, which is a "
                         f"{recorded} ({', '.join(info.recorded)})")
    return requested or recorded or DEFAULT_MODEL


def _granularity(requested, info, depths, name, notes, warnings) -> list[int] | str:
    recorded = info.granularity if info is not None else None
    if recorded is not None and depths is not None and len(recorded) != sum(depths):
        raise ValueError(f"the checkpoint records {len(recorded)} per-block S values "
                         f"(mask_spatial_granularity) but {name} has {sum(depths)} blocks")
    if requested is None:
        if recorded is not None:
            notes.append(f"S_net {format_granularity(recorded, depths)} from the checkpoint")
            return recorded
        if info is not None:
            warnings.append(f"the checkpoint does not record its S_net; assuming "
                            f"{DEFAULT_GRANULARITY} (pass --snet if it was trained with "
                            "another: a wrong S_net loads without error and gives other masks)")
        return DEFAULT_GRANULARITY
    if recorded is not None and depths is not None:
        wanted = parse_granularity(requested, depths)
        if wanted != recorded:
            raise ValueError(
                f"--snet {requested} contradicts the checkpoint's S_net "
                f"{format_granularity(recorded, depths)} (hyper_set mask_spatial_granularity): "
                "masker weights fit every S, so the wrong S_net would load and compute other "
                "masks; leave --snet out to use the checkpoint's")
    return requested


def _input_size(requested, info, notes, backbone: bool) -> tuple[int, int]:
    recorded = info.image_size if info is not None else None
    if requested is None:
        if recorded is not None and not backbone:
            notes.append(f"input {recorded}x{recorded} from the checkpoint")
            return recorded, recorded
        return DEFAULT_DETECTION_INPUT if backbone else DEFAULT_INPUT
    if recorded is not None and not backbone and tuple(requested) != (recorded, recorded):
        notes.append(f"the checkpoint was trained at {recorded}x{recorded}; running at "
                     f"{requested[0]}x{requested[1]} (masks follow the official grid rule of "
                     "each map)")
    return tuple(requested)
