"""Official LASNet checkpoints give the official numbers: PyTorch model and compiled module.

``official_forward`` re-states the eval path of the official ``dyn_resnet.py`` over a
state_dict (its masker pools to ``output_size // S`` with ``output_size = input_size // 4 ..
// 32`` fixed at construction, square, and stretches the mask with ``F.interpolate``), written
from the official code, not from our model. Checkpoints are made in the official ``main.py``
format: ``{"epoch", "model", "hyper_set": str(args), "state_dict": {"module.<key>": ...}}``.
"""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import las_compiler
from las_compiler.models import parse_granularity, prepare_model
from las_compiler.models.las_resnet import STAGE_DEPTHS

from .helpers import official_bottleneck, official_stem
from .test_checkpoint import torchvision_resnet_state_dict


def official_state_dict(depths, seed=0):
    """Random weights in the official layout (torchvision names + ``masker.conv2``), maskers
    random enough that about half the patches are on."""
    sd = torchvision_resnet_state_dict(depths, seed=seed)
    gen = torch.Generator().manual_seed(seed + 1)
    in_c = 64
    for stage, depth in enumerate(depths):
        for j in range(depth):
            c = in_c if j == 0 else 64 * 2**stage * 4
            sd[f"layer{stage + 1}.{j}.masker.conv2.weight"] = \
                torch.randn(2, c, 1, 1, generator=gen) * 4 / c**0.5
            sd[f"layer{stage + 1}.{j}.masker.conv2.bias"] = torch.randn(2, generator=gen) * 0.1
        in_c = 64 * 2**stage * 4
    return sd


def official_checkpoint(path, arch, depths, per_block, image_size, seed=0):
    sd = official_state_dict(depths, seed)
    spec = "-".join(map(str, per_block))
    hyper = (f"Namespace(IMAGE_SIZE={image_size}, T_kd=1.0, alpha_kd=0.5, arch='{arch}', "
             f"mask_channel_group='{'-'.join('1' * len(per_block))}', "
             f"mask_spatial_granularity='{spec}', list_mask_spatial_granularity={per_block}, "
             "print_custom=<bound method Logger.log of <utils.utils.Logger object>>)")
    torch.save({"epoch": 100, "model": arch, "hyper_set": hyper, "best_acc1": 77.0,
                "state_dict": {f"module.{k}": v for k, v in sd.items()}}, path)
    return sd


def official_forward(sd, depths, per_block, input_size, x):
    """(logits, masks) of the official ``dyn_resnet`` eval forward (mask_channel_group=1):
    the mask grid is the block's *output* size (input size / 2^(stage+2)) floor-divided by S."""
    h, masks, index = official_stem(sd, x), [], 0
    for stage, depth in enumerate(depths):
        output_size = input_size // 2 ** (stage + 2)
        for j in range(depth):
            stride = 2 if stage > 0 and j == 0 else 1
            grid = output_size // per_block[index]
            h, mask = official_bottleneck(sd, h, f"layer{stage + 1}.{j}", j == 0, stride,
                                          (grid, grid), (output_size, output_size))
            masks.append(mask)
            index += 1
    return F.linear(h.mean(dim=(2, 3)), sd["fc.weight"], sd["fc.bias"]), masks


# (architecture, S_net, input size): S divides every map in the first one; the others are the
# cases a ceil grid got wrong (S = 7 on 16x16 and 12x12, S = 3 on 14x14)
CASES = [("dyn_resnet50", "4-4-2-1", 224), ("dyn_resnet101", "4-4-7-1", 256),
         ("dyn_resnet101", "4-4-7-1", 192), ("dyn_resnet50", "4-4-3-1", 224)]


@pytest.mark.parametrize("arch, snet, size", CASES)
def test_official_checkpoint_gives_the_official_logits_and_masks(tmp_path, arch, snet, size):
    name = {"dyn_resnet50": "las_resnet50", "dyn_resnet101": "las_resnet101"}[arch]
    depths = STAGE_DEPTHS[name]
    per_block = parse_granularity(snet, depths)
    path = tmp_path / "checkpoint.pth.tar"
    sd = official_checkpoint(path, arch, depths, per_block, size)
    prepared = prepare_model(checkpoint=str(path))  # everything from the checkpoint
    model, x = prepared.model, prepared.example
    assert model.granularity == per_block and tuple(x.shape) == (1, 3, size, size)
    assert prepared.rate is None and not prepared.warnings  # trained maskers kept
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        expected, expected_masks = official_forward(sd, depths, per_block, size, x)
        ours, stats = model.forward_with_stats(x)
    rates = [float(m.float().mean()) for m in expected_masks]
    assert 0.1 < np.mean(rates) < 0.9  # masks are mixed, so they are really compared
    for stat, mask in zip(stats.blocks, expected_masks, strict=True):
        assert torch.equal(stat.mask.bool(), mask), stat.name
    torch.testing.assert_close(ours, expected, rtol=0, atol=1e-5)


@pytest.mark.full_matrix  # compiled S that does not divide: small networks and the fuzzer
def test_compiled_official_checkpoint_where_s_does_not_divide(tmp_path):
    """LAS-ResNet-50 4-4-7-1 at 256: stage 3 runs S = 7 on 16x16 maps (2x2 cells of 8x8)."""
    depths = STAGE_DEPTHS["las_resnet50"]
    per_block = parse_granularity("4-4-7-1", depths)
    path = tmp_path / "checkpoint.pth.tar"
    sd = official_checkpoint(path, "dyn_resnet50", depths, per_block, 256, seed=5)
    model = prepare_model(checkpoint=str(path)).model
    x = torch.randn(1, 3, 256, 256)
    compiled = las_compiler.compile(model, x, "host", tuning_logs=False)
    logits, masks = compiled.run_with_masks(x.numpy())
    with torch.no_grad():
        expected, expected_masks = official_forward(sd, depths, per_block, 256, x)
    for got, want in zip(masks, expected_masks, strict=True):
        np.testing.assert_array_equal(got, want.numpy())
    assert np.abs(logits - expected.numpy()).max() < 6e-5


def test_checkpoint_rules(tmp_path):
    depths = STAGE_DEPTHS["las_resnet50"]
    per_block = parse_granularity("4-4-2-1", depths)
    path = tmp_path / "checkpoint.pth.tar"
    sd = official_checkpoint(path, "dyn_resnet50", depths, per_block, 224)
    # a rate re-fits trained maskers: done, and said loudly
    prepared = prepare_model(checkpoint=str(path), rate=0.5, input_size=(64, 64))
    assert prepared.rate == 0.5 and "re-fits the checkpoint's trained maskers" in \
        prepared.warnings[0]
    assert any("trained at 224x224; running at 64x64" in n for n in prepared.notes)
    with pytest.raises(ValueError, match=r"--snet 8-4-2-1 contradicts the checkpoint's S_net "
                                         r"4-4-2-1 \(hyper_set mask_spatial_granularity\)"):
        prepare_model(granularity="8-4-2-1", checkpoint=str(path))
    prepare_model(granularity="4-4-2-1", checkpoint=str(path), input_size=(64, 64))  # agrees
    with pytest.raises(ValueError, match="--model las_resnet101 contradicts the checkpoint, "
                                         "which is a las_resnet50"):
        prepare_model("las_resnet101", checkpoint=str(path))
    # a bare state_dict records nothing: the S_net is assumed, with a warning
    bare = tmp_path / "bare.pth"
    torch.save(sd, bare)
    prepared = prepare_model(checkpoint=str(bare), input_size=(64, 64))
    assert prepared.rate is None
    assert "does not record its S_net; assuming 4-4-2-1" in prepared.warnings[0]
