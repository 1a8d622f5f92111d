"""Loading torchvision, official LASNet and our own checkpoints; clear errors otherwise."""

import pytest
import torch
import torch.nn.functional as F

from las_compiler.models import las_resnet50, las_resnet101, load_checkpoint


def torchvision_resnet_state_dict(depths, num_classes=1000, seed=0):
    """A dense torchvision-layout ResNet state_dict, written from torchvision's naming rules
    (independently of our model code), with random weights and BN statistics."""
    gen = torch.Generator().manual_seed(seed)
    sd = {}

    def conv(name, out_c, in_c, k):
        scale = (2 / (in_c * k * k)) ** 0.5
        sd[f"{name}.weight"] = torch.randn(out_c, in_c, k, k, generator=gen) * scale

    def bn(name, c):
        sd[f"{name}.weight"] = torch.rand(c, generator=gen) * 0.5 + 0.5
        sd[f"{name}.bias"] = torch.randn(c, generator=gen) * 0.1
        sd[f"{name}.running_mean"] = torch.randn(c, generator=gen) * 0.1
        sd[f"{name}.running_var"] = torch.rand(c, generator=gen) + 0.5
        sd[f"{name}.num_batches_tracked"] = torch.tensor(100)

    conv("conv1", 64, 3, 7)
    bn("bn1", 64)
    in_c = 64
    for stage, depth in enumerate(depths):
        planes = 64 * 2**stage
        for j in range(depth):
            p = f"layer{stage + 1}.{j}"
            conv(f"{p}.conv1", planes, in_c, 1)
            bn(f"{p}.bn1", planes)
            conv(f"{p}.conv2", planes, planes, 3)
            bn(f"{p}.bn2", planes)
            conv(f"{p}.conv3", planes * 4, planes, 1)
            bn(f"{p}.bn3", planes * 4)
            if j == 0:
                conv(f"{p}.downsample.0", planes * 4, in_c, 1)
                bn(f"{p}.downsample.1", planes * 4)
            in_c = planes * 4
    sd["fc.weight"] = torch.randn(num_classes, in_c, generator=gen) * in_c**-0.5
    sd["fc.bias"] = torch.randn(num_classes, generator=gen) * 0.1
    return sd


def dense_resnet_forward(sd, depths, x):
    """A functional dense ResNet-v1.5 forward over a state_dict: the oracle a torchvision
    ResNet would be, without torchvision."""

    def bn(h, name):
        return F.batch_norm(h, sd[f"{name}.running_mean"], sd[f"{name}.running_var"],
                            sd[f"{name}.weight"], sd[f"{name}.bias"], False, 0.0, 1e-5)

    h = F.relu(bn(F.conv2d(x, sd["conv1.weight"], stride=2, padding=3), "bn1"))
    h = F.max_pool2d(h, 3, 2, 1)
    for stage, depth in enumerate(depths):
        for j in range(depth):
            p = f"layer{stage + 1}.{j}"
            stride = 2 if stage > 0 and j == 0 else 1
            out = F.relu(bn(F.conv2d(h, sd[f"{p}.conv1.weight"]), f"{p}.bn1"))
            out = F.relu(bn(F.conv2d(out, sd[f"{p}.conv2.weight"], stride=stride, padding=1),
                            f"{p}.bn2"))
            out = bn(F.conv2d(out, sd[f"{p}.conv3.weight"]), f"{p}.bn3")
            if j == 0:
                h = bn(F.conv2d(h, sd[f"{p}.downsample.0.weight"], stride=stride),
                       f"{p}.downsample.1")
            h = F.relu(out + h)
    return F.linear(h.mean(dim=(2, 3)), sd["fc.weight"], sd["fc.bias"])


def test_torchvision_resnet50_layout_loads_and_computes_the_dense_network():
    sd = torchvision_resnet_state_dict([3, 4, 6, 3])
    assert len(sd) == 320  # torchvision's resnet50().state_dict() has 320 entries
    model = las_resnet50("4-4-2-1").eval()
    assert {k for k in model.state_dict() if ".masker." not in k} == set(sd)
    report = load_checkpoint(model, sd)
    assert report.layout == "dense" and len(report.maskers_initialised) == 16
    x = torch.randn(2, 3, 96, 128)
    with torch.no_grad():
        ours, stats = model.forward_with_stats(x)
    assert all(float(b.activation) == 1.0 for b in stats.blocks)  # masker init: all on
    torch.testing.assert_close(ours, dense_resnet_forward(sd, [3, 4, 6, 3], x),
                               rtol=1e-4, atol=1e-4)


def test_official_lasnet_layout_with_dataparallel_prefix(tmp_path):
    source = las_resnet101("8-4-7-1")
    with torch.no_grad():
        for block in source.dynamic_blocks():
            block.masker.conv2.bias.normal_()
    wrapped = {"epoch": 3, "state_dict": {f"module.{k}": v for k, v in source.state_dict().items()}}
    path = tmp_path / "dyn_resnet101.pth.tar"
    torch.save(wrapped, path)
    model = las_resnet101("8-4-7-1")
    report = load_checkpoint(model, path)
    assert report.layout == "las" and report.maskers_initialised == []
    for (k, a), b in zip(model.state_dict().items(), source.state_dict().values(), strict=True):
        assert torch.equal(a, b), k


def test_wrong_architecture_is_a_clear_error():
    sd = torchvision_resnet_state_dict([3, 4, 23, 3])
    with pytest.raises(ValueError, match=r"stages 3-4-6-3.*306 unexpected keys"):
        load_checkpoint(las_resnet50(), sd)


def test_wrong_class_count_names_the_shapes():
    sd = torchvision_resnet_state_dict([3, 4, 6, 3], num_classes=10)
    message = r"fc.weight: checkpoint \(10, 2048\) vs model \(1000, 2048\)"
    with pytest.raises(ValueError, match=message):
        load_checkpoint(las_resnet50(), sd)


def test_corrupt_and_missing_files(tmp_path):
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="cannot read checkpoint"):
        load_checkpoint(las_resnet50(), bad)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_checkpoint(las_resnet50(), tmp_path / "nope.pth")
    with pytest.raises(ValueError, match="holds no state_dict"):
        load_checkpoint(las_resnet50(), {"epoch": 1, "optimizer": "sgd"})
