"""The detection backbone: official LASNet ``ResNet_sd`` semantics, mmdetection checkpoints,
compiled end to end, any input size.

``official_backbone_forward`` re-states the official ``resnet_sd.py`` eval path over a
state_dict: its masker takes the grid from each input (``H_in // stride // S``), pools with
``adaptive_avg_pool2d`` and stretches the mask to ``H_in // stride`` with ``F.interpolate``;
the backbone returns the four stages' maps. Checkpoints are made in the mmdetection 2.x layout
(``{"meta": {"config": <config text>}, "state_dict": {"backbone.<key>": ..., "neck.<key>":
...}}``).
"""

import numpy as np
import pytest
import torch

import las_compiler
from las_compiler.models import load_checkpoint, parse_granularity, prepare_model
from las_compiler.models.las_resnet import STAGE_DEPTHS, build_model

from .helpers import official_bottleneck, official_stem
from .test_official import official_state_dict

CONFIG = """model = dict(
    type='FasterRCNN',
    backbone=dict(
        type='ResNet_sd',
        depth={depth},
        num_stages=4,
        out_indices=(0, 1, 2, 3),
        mask_channel_group={groups},
        mask_spatial_granularity={granularity},
        mask_target_sparsity={sparsity}),
    neck=dict(type='FPN', in_channels=[256, 512, 1024, 2048], out_channels=256))
"""


def mmdet_checkpoint(path, depth, per_block, seed=0):
    """A detector checkpoint: the official backbone's weights under ``backbone.``, an FPN's."""
    depths = STAGE_DEPTHS[f"las_resnet{depth}"]
    backbone = {k: v for k, v in official_state_dict(depths, seed).items()
                if not k.startswith("fc.")}
    state = {f"backbone.{k}": v for k, v in backbone.items()}
    state["neck.lateral_convs.0.conv.weight"] = torch.randn(256, 256, 1, 1)
    config = CONFIG.format(depth=depth, groups=[1] * len(per_block), granularity=per_block,
                           sparsity=[0.5] * len(per_block))
    torch.save({"meta": {"mmdet_version": "2.21.0", "config": config, "epoch": 12},
                "state_dict": state}, path)
    return backbone


def official_backbone_forward(sd, depths, per_block, x):
    """(C2..C5, masks) of the official ``ResNet_sd`` eval forward (mask_channel_group=1): the
    mask grid is the block *input* size // stride // S, per axis (``resnet_sd.Masker``)."""
    h, outs, masks, index = official_stem(sd, x), [], [], 0
    for stage, depth in enumerate(depths):
        for j in range(depth):
            stride, s = 2 if stage > 0 and j == 0 else 1, per_block[index]
            feature_size = (h.shape[2] // stride, h.shape[3] // stride)
            mask_size = (feature_size[0] // s, feature_size[1] // s)
            h, mask = official_bottleneck(sd, h, f"layer{stage + 1}.{j}", j == 0, stride,
                                          mask_size, feature_size)
            masks.append(mask)
            index += 1
        outs.append(h)
    return outs, masks


@pytest.fixture(scope="module")
def detector(tmp_path_factory):
    """An mmdetection LAS-ResNet-50 detector checkpoint, S_net 4-4-7-1 (the official 4471)."""
    per_block = parse_granularity("4-4-7-1", STAGE_DEPTHS["las_resnet50"])
    path = tmp_path_factory.mktemp("det") / "faster_rcnn_r50_4471.pth"
    return path, mmdet_checkpoint(path, 50, per_block, seed=2), per_block


def test_mmdet_checkpoint_gives_the_official_backbone_outputs(detector):
    """At 256x352 (stage maps 64x88, 32x44, 16x22, 8x11: S = 7 does not divide 16x22)."""
    path, sd, per_block = detector
    prepared = prepare_model(checkpoint=str(path), out_stages=(1, 2, 3, 4),
                             input_size=(256, 352))
    model = prepared.model
    assert model.granularity == per_block and model.output_names == ["C2", "C3", "C4", "C5"]
    assert any("keys of neck left out" in n for n in prepared.notes)
    x = torch.randn(1, 3, 256, 352)
    with torch.no_grad():
        expected, expected_masks = official_backbone_forward(sd, STAGE_DEPTHS["las_resnet50"],
                                                             per_block, x)
        features, stats = model.forward_with_stats(x)
    assert 0.1 < np.mean([float(m.float().mean()) for m in expected_masks]) < 0.9
    for stat, mask in zip(stats.blocks, expected_masks, strict=True):
        assert torch.equal(stat.mask.bool(), mask), stat.name
    for ours, theirs in zip(features, expected, strict=True):
        torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-4)
    compiled = las_compiler.compile(model, x, "host", tuning_logs=False)
    out, masks = compiled.run_with_masks(x.numpy())
    for got, want in zip(masks, expected_masks, strict=True):
        np.testing.assert_array_equal(got, want.numpy())
    for got, want in zip(out, expected, strict=True):
        assert np.abs(got - want.numpy()).max() <= 1e-5 * float(want.abs().max()) + 1e-4


@pytest.mark.parametrize("size", [pytest.param((250, 333), marks=pytest.mark.full_matrix),
                                  (97, 161)])
def test_any_input_size(size):
    """Sizes the official backbone refuses (odd maps before a stride-2 block): the grid of
    each map is its own floor grid; the compiled backbone equals PyTorch."""
    torch.manual_seed(0)
    prepared = prepare_model("las_resnet50", "4-4-2-1", input_size=size, out_stages=(2, 3, 4))
    model, x = prepared.model, prepared.example
    compiled = las_compiler.compile(model, x, "host", tuning_logs=False)
    out, masks = compiled.run_with_masks(x.numpy())
    with torch.no_grad():
        expected, stats = model.forward_with_stats(x)
    assert [o.shape for o in out] == [tuple(e.shape) for e in expected]
    assert compiled.output_names == ["C3", "C4", "C5"]
    for got, stat in zip(masks, stats.blocks, strict=True):
        np.testing.assert_array_equal(got, stat.mask.bool().numpy())
    for got, want in zip(out, expected, strict=True):
        assert np.abs(got - want.numpy()).max() <= 1e-5 * float(want.abs().max()) + 1e-4


def test_checkpoint_kinds_and_backbones(detector, tmp_path):
    path = detector[0]
    with pytest.raises(ValueError, match=r"a detector's checkpoint .* \(--backbone\)"):
        prepare_model(checkpoint=str(path))
    with pytest.raises(ValueError, match="--model las_resnet101 contradicts the checkpoint"):
        prepare_model("las_resnet101", checkpoint=str(path), out_stages=(1, 2, 3, 4))
    # a classification checkpoint initialises a backbone (as mmdetection's init_cfg does)
    classifier = build_model("las_resnet50", "4-4-2-1")
    backbone = build_model("las_resnet50", "4-4-2-1", out_stages=(1, 2, 3, 4))
    report = load_checkpoint(backbone, classifier.state_dict())
    assert report.left_out == ["fc.bias", "fc.weight"]
    with pytest.raises(ValueError, match="out_stages"):
        build_model("las_resnet50", out_stages=(0, 5))
