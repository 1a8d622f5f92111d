"""Pictures of what a compiled LAS network skips: each stage's active patches over the input.

The paper's visualisation: the image, and on it the regions each stage computes. A stage has
several blocks, each with its own mask; a panel shows, per pixel, the fraction of the stage's
dynamic blocks that computed it (masks stretched to the block's output map by the official
nearest rule, then to the image), the cell grid of the stage's first block, and the stage's
activation (the mean over its blocks of the pixel fraction computed) in its title.

Needs matplotlib (``pip install 'las-compiler[viz]'``); runs with the TVM runtime only.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .deploy.inputs import IMAGENET_MEAN, IMAGENET_STD
from .geometry import PatchGeometry


@dataclass
class StagePanel:
    stage: int
    granularities: list[int]
    coverage: np.ndarray | None  # (H, W) in [0, 1] at the image's size; None: all static
    activation: float | None
    grid_rows: list[int]  # cell boundaries of the stage's first dynamic block, in image pixels
    grid_cols: list[int]


def stage_panels(metadata: dict, masks: list[np.ndarray], image: int = 0) -> list[StagePanel]:
    """One :class:`StagePanel` per stage, for batch item ``image`` of a run's ``masks``."""
    _, _, height, width = metadata["input"]["shape"]
    dynamic = [b for b in metadata["blocks"] if b["pipeline"] != "static"]
    if len(dynamic) != len(masks):
        raise ValueError(f"{len(masks)} masks for {len(dynamic)} dynamic blocks")
    by_stage: dict[int, list] = {}
    for block in metadata["blocks"]:
        by_stage.setdefault(_stage_of(block["name"]), [])
    for block, mask in zip(dynamic, masks, strict=True):
        by_stage[_stage_of(block["name"])].append((block, mask[image]))
    panels = []
    for stage, entries in sorted(by_stage.items()):
        all_s = sorted({b["S"] for b in metadata["blocks"] if _stage_of(b["name"]) == stage})
        if not entries:
            panels.append(StagePanel(stage, all_s, None, None, [], []))
            continue
        maps = [_upsampled(block, mask) for block, mask in entries]
        to_image = [_resize_nearest(m, height, width) for m in maps]
        rows, cols = _cell_bounds(entries[0][0], height, width)
        panels.append(StagePanel(stage, all_s, np.mean(to_image, axis=0),
                                 float(np.mean([m.mean() for m in maps])), rows, cols))
    return panels


def _stage_of(name: str) -> int:
    head = name.split(".")[0]
    if not head.startswith("layer") or not head[5:].isdigit():
        raise ValueError(f"block name {name!r} does not say its stage (layerK.J)")
    return int(head[5:])


def _geometry(block: dict) -> PatchGeometry:
    if "in_hw" not in block:
        raise ValueError(f"the artifact's metadata does not give the map size of block "
                         f"{block['name']} (compiled by an older version): recompile it")
    return PatchGeometry(1, *block["in_hw"], block["S"], block["stride"])


def _upsampled(block: dict, mask: np.ndarray) -> np.ndarray:
    """A cell mask stretched to the block's output map: the official nearest upsampling."""
    g = _geometry(block)
    return mask[np.ix_(g.rows.cell_of_pixels, g.cols.cell_of_pixels)].astype(np.float32)


def _resize_nearest(array: np.ndarray, height: int, width: int) -> np.ndarray:
    rows = np.minimum(np.arange(height) * array.shape[0] // height, array.shape[0] - 1)
    cols = np.minimum(np.arange(width) * array.shape[1] // width, array.shape[1] - 1)
    return array[np.ix_(rows, cols)]


def _cell_bounds(block: dict, height: int, width: int) -> tuple[list[int], list[int]]:
    g = _geometry(block)
    scale_r, scale_c = height / g.out_height, width / g.out_width
    return ([round(s * scale_r) for s in g.rows.starts[1:-1]],
            [round(s * scale_c) for s in g.cols.starts[1:-1]])


def display_image(x: np.ndarray, image: int = 0) -> np.ndarray:
    """An (H, W, 3) picture in [0, 1] of an ImageNet-normalised NCHW input."""
    picture = x[image].transpose(1, 2, 0) * np.array(IMAGENET_STD) + np.array(IMAGENET_MEAN)
    if picture.min() < -0.5 or picture.max() > 1.5:  # not a normalised photo: stretch it
        picture = (picture - picture.min()) / max(float(np.ptp(picture)), 1e-12)
    return np.clip(picture, 0.0, 1.0)


def mask_figure(picture: np.ndarray, panels: list[StagePanel], path: str | os.PathLike,
                title: str = "") -> Path:
    """Write the picture with one panel per stage to ``path`` (PNG, written atomically)."""
    try:
        import matplotlib
    except ImportError:
        raise ValueError("pictures need matplotlib: pip install 'las-compiler[viz]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels) + 1, figsize=(3.2 * (len(panels) + 1), 3.6),
                             squeeze=False)
    axes = axes[0]
    axes[0].imshow(picture)
    axes[0].set_title("input")
    gray = picture.mean(axis=2, keepdims=True).repeat(3, axis=2)
    tint = np.array([0.15, 0.65, 1.0])
    for ax, panel in zip(axes[1:], panels, strict=True):
        s = "/".join(map(str, panel.granularities))
        if panel.coverage is None:
            ax.imshow(gray)
            ax.set_title(f"stage {panel.stage} (S={s}): static")
            continue
        # computed pixels: the picture tinted; skipped ones: dimmed gray
        weight = panel.coverage[..., None]
        ax.imshow(np.clip(weight * (0.45 * picture + 0.55 * tint) + (1 - weight) * 0.3 * gray,
                          0, 1))
        for r in panel.grid_rows:
            ax.axhline(r - 0.5, color="white", lw=0.4, alpha=0.5)
        for c in panel.grid_cols:
            ax.axvline(c - 0.5, color="white", lw=0.4, alpha=0.5)
        ax.set_title(f"stage {panel.stage} (S={s}): {panel.activation:.0%} active")
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp.png")
    try:
        fig.savefig(tmp, dpi=110)
        tmp.replace(out)
    finally:
        plt.close(fig)
        tmp.unlink(missing_ok=True)
    return out
