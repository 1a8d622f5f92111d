"""Differential fuzzing: compiled modules against the PyTorch reference, over random
configurations.

    python -m las_compiler.fuzz --cases 10000 --json results/fuzz.json [--seed 0]
    python -m las_compiler.fuzz --cases 1000 --emulate-gpu nvidia/jetson-tx2

``--emulate-gpu TAG`` checks that GPU's schedules instead of the host's: every kernel on the
CUDA rules, run serially on this CPU (``transform.serialize_gpu``).

A *configuration* is one compile; each serves many *cases* (inputs and masks):

* **block** configurations: one bottleneck (channels, stride 1/2, S 1..8 including S that does
  not divide the map, odd and non-square maps, batch 1-3, projected or plain shortcut, every
  pipeline that applies) compiled with ``compile_block``. Its masker is pinned
  (``models.pin_mask``), so every case picks its mask: all off (r exactly 0), all on (exactly
  1), or random. Output and mask must equal ``sparse_block_forward``.
* **network** configurations: a small LAS-ResNet (1-3 blocks per stage; random S per block,
  or half the time one S dividing the stage's map, so plain blocks form masker chains
  (``las_compiler.masker_chain``); some blocks static,
  mixed pipelines, some maskers forced all on or all off; a third of them detection
  backbones returning random stages) compiled with ``compile``; cases are
  random images, masks come from the maskers. Outputs and every mask must equal PyTorch's,
  except where a mask cell differs because its two logits tie within float rounding (TVM
  sums in another order): such a *tie flip* is counted, not a mismatch, and everything after it
  is not compared.

Every mismatch is printed with a reproducer (``--reproduce '<json>'`` runs that one case).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass, field

import numpy as np

TIE = 1e-4  # |logit0 - logit1| / scale below which a flipped cell is a float tie
RTOL = ATOL = 1e-4  # block outputs (fp32, one block)
NET_TOL = 1e-3  # logits of a network (deeper accumulation)


@dataclass(frozen=True)
class FuzzBlock:
    in_channels: int
    planes: int
    stride: int
    height: int
    width: int
    granularity: int
    batch: int
    pipeline: str
    seed: int
    kind: str = "block"


@dataclass(frozen=True)
class NetworkConfig:
    snet: tuple[int, ...]
    depths: tuple[int, ...]
    height: int
    width: int
    batch: int
    pipelines: tuple[str, ...]
    static: tuple[int, ...]
    forced: tuple[int, ...]  # per dynamic block: 0 free, 1 all on, -1 all off
    seed: int
    kind: str = "network"
    backbone: tuple[int, ...] | None = None  # a detection backbone returning these stages


@dataclass
class Summary:
    cases: int = 0
    compiles: int = 0
    mismatches: list[dict] = field(default_factory=list)
    tie_flips: int = 0
    cases_by_pipeline: dict[str, int] = field(default_factory=dict)
    exact_rates: dict[str, int] = field(default_factory=lambda: {"0": 0, "1": 0})
    seconds: float = 0.0
    schedules: str = "host"  # or the GPU tag whose schedules were emulated
    unfit_configs: int = 0  # drawn configurations whose pipeline the GPU cannot hold (redrawn)


# -- drawing configurations ------------------------------------------------------------------
def _block_config(rng: np.random.Generator, seed: int) -> FuzzBlock:
    from .block_pipelines import PIPELINES
    from .geometry import BlockGeometry, PatchGeometry

    while True:
        planes = int(rng.choice([16, 32]))
        projected = rng.random() < 0.5
        stride = int(rng.choice([1, 2])) if projected else 1
        in_channels = int(rng.choice([16, 32, 48])) if projected else 4 * planes
        if projected and stride == 1 and in_channels == 4 * planes:
            continue
        height, width = (int(v) for v in rng.integers(5, 26, size=2))
        ho, wo = (height - 1) // stride + 1, (width - 1) // stride + 1
        s = int(rng.integers(1, min(8, ho, wo) + 1))
        block = BlockGeometry(PatchGeometry(1, height, width, s, stride), in_channels, planes,
                              4 * planes, projected)
        names = [n for n, p in PIPELINES.items() if p.applies(block)]
        return FuzzBlock(in_channels, planes, stride, height, width, s,
                           int(rng.integers(1, 4)), str(rng.choice(names)), seed)


def _at_granularity(s: int):
    """A block geometry at S = ``s`` (what the pipelines' ``applies`` look at: S, stride)."""
    from .geometry import BlockGeometry, PatchGeometry

    return BlockGeometry(PatchGeometry(1, s, s, s, 1), 64, 16, 64, False)


def _network_config(rng: np.random.Generator, seed: int) -> NetworkConfig:
    from .block_pipelines import PIPELINES

    depths = tuple(int(d) for d in rng.integers(1, 4, size=4))
    height, width = (int(v) for v in rng.integers(40, 90, size=2))
    sizes = [((height + 1) // 2 + 1) // 2, ((width + 1) // 2 + 1) // 2]  # after the stem
    snet = []
    for stage, depth in enumerate(depths):
        if stage:
            sizes = [(s - 1) // 2 + 1 for s in sizes]
        if rng.random() < 0.5:
            # one S dividing the stage's map: its plain blocks form masker chains
            divisors = [s for s in range(1, min(8, *sizes) + 1)
                        if sizes[0] % s == 0 and sizes[1] % s == 0]
            snet += [int(rng.choice(divisors))] * depth
        else:
            snet += [int(rng.integers(1, min(8, *sizes) + 1)) for _ in range(depth)]
    blocks = sum(depths)
    static = tuple(int(i) for i in range(blocks) if rng.random() < 0.2)
    dynamic = blocks - len(static)
    # per dynamic block, a pipeline that applies at its S (masker_conv1 needs stride 1 too,
    # which a stage's first block lacks: left to the block configurations)
    pipelines = tuple(str(rng.choice([n for n, p in PIPELINES.items() if n != "masker_conv1"
                                      and p.applies(_at_granularity(snet[i]))]))
                      for i in range(blocks) if i not in static)
    forced = tuple(int(rng.choice([0, 0, 0, 1, -1])) for _ in range(dynamic))
    backbone = None
    if rng.random() < 0.3:
        backbone = tuple(int(s) for s in np.flatnonzero(rng.random(4) < 0.6) + 1) or (4,)
    return NetworkConfig(tuple(snet), depths, height, width, int(rng.integers(1, 4)),
                         pipelines, static, forced, seed, backbone=backbone)


# -- running ----------------------------------------------------------------------------------
def _random_block(config: FuzzBlock):
    import torch

    from .models import Bottleneck, randomise_bn

    torch.manual_seed(config.seed)
    block = Bottleneck(config.in_channels, config.planes, config.stride,
                       config.granularity).eval()
    randomise_bn(block, config.seed)
    block.block_name = "fuzz"
    return block


def _grid(config: FuzzBlock) -> tuple[int, int]:
    from .geometry import patch_grid

    ho, wo = ((config.height - 1) // config.stride + 1, (config.width - 1) // config.stride + 1)
    return patch_grid(ho, wo, config.granularity)


def compile_target(emulate_gpu: str | None):
    """``"host"``, or a GPU tag's schedules emulated serially on this CPU
    (``target.EmulatedGPU``): the fuzzer then checks the CUDA rules' numbers."""
    if emulate_gpu is None:
        return "host"
    from .compiler import resolve_target
    from .target import EmulatedGPU

    return EmulatedGPU(resolve_target(emulate_gpu))


def run_block_config(config: FuzzBlock, cases: int, summary: Summary,
                     report=print, emulate_gpu: str | None = None) -> None:
    """Compile one block configuration and check ``cases`` inputs and masks on it."""
    import torch

    from .compiler import compile_block
    from .models import pin_mask

    block = _random_block(config)
    gh, gw = _grid(config)
    zeros = torch.zeros(config.batch, config.in_channels, config.height, config.width)
    template = pin_mask(block, zeros, torch.zeros(config.batch, gh, gw))
    compiled = compile_block(block, template.permute(0, 2, 3, 1), compile_target(emulate_gpu),
                             config.pipeline, tuning_logs=False)
    summary.compiles += 1
    for case in range(cases):
        _block_case(config, block, compiled, case, summary, report)


def _block_case(config, block, compiled, case: int, summary: Summary, report) -> None:
    import torch

    from .models import pin_mask, sparse_block_forward

    gh, gw = _grid(config)
    gen = torch.Generator().manual_seed(config.seed * 100_003 + case)
    kind = case % 4  # all off, all on, then random rates
    if kind == 0:
        mask = torch.zeros(config.batch, gh, gw)
    elif kind == 1:
        mask = torch.ones(config.batch, gh, gw)
    else:
        mask = (torch.rand(config.batch, gh, gw, generator=gen)
                < torch.rand(1, generator=gen)).float()
    scale = float(torch.rand(1, generator=gen) * 3 + 0.1)
    x = (torch.randn(config.batch, config.in_channels, config.height, config.width,
                     generator=gen) * scale).relu()
    x = pin_mask(block, x, mask)
    nhwc = x.permute(0, 2, 3, 1).contiguous().numpy()
    out, (got_mask,) = compiled.run_with_masks(nhwc)
    expected = sparse_block_forward(block, x).permute(0, 2, 3, 1).numpy()
    summary.cases += 1
    summary.cases_by_pipeline[config.pipeline] = summary.cases_by_pipeline.get(
        config.pipeline, 0) + 1
    if kind < 2:
        summary.exact_rates[str(kind)] += 1
    problem = None
    if not np.array_equal(got_mask, mask.bool().numpy()):
        problem = f"{int((got_mask != mask.bool().numpy()).sum())} mask cells differ"
    elif not np.allclose(out, expected, rtol=RTOL, atol=ATOL):
        problem = f"max |out - reference| {float(np.abs(out - expected).max()):.3g}"
    if problem:
        _mismatch(summary, config, case, problem, report)


def _network(config: NetworkConfig):
    import torch

    from .models import LASResNet, calibrate

    torch.manual_seed(config.seed)
    model = LASResNet(config.depths, list(config.snet), num_classes=10, base_channels=16,
                      out_stages=config.backbone).eval()
    images = torch.randn(2, 3, config.height, config.width)
    calibrate(model, 0.5, images)
    dynamic = [b for i, b in enumerate(model.dynamic_blocks()) if i not in config.static]
    with torch.no_grad():
        for block, forced in zip(dynamic, config.forced, strict=True):
            if forced:
                block.masker.conv2.weight.zero_()
                block.masker.conv2.bias.copy_(torch.tensor([9.0 * forced, 0.0]))
    return model


def run_network_config(config: NetworkConfig, cases: int, summary: Summary,
                       report=print, emulate_gpu: str | None = None) -> None:
    import torch

    import las_compiler

    model = _network(config)
    x = torch.zeros(config.batch, 3, config.height, config.width)
    compiled = las_compiler.compile(model, x, compile_target(emulate_gpu), tuning_logs=False,
                                    pipelines=list(config.pipelines),
                                    static_blocks=config.static)
    summary.compiles += 1
    for case in range(cases):
        _network_case(config, model, compiled, case, summary, report)


def _network_case(config, model, compiled, case: int, summary: Summary, report) -> None:
    import torch

    from .frontend import ExportableLASResNet

    gen = torch.Generator().manual_seed(config.seed * 100_003 + case)
    x = torch.randn(config.batch, 3, config.height, config.width, generator=gen)
    out, masks = compiled.run_with_masks(x.numpy())
    outputs = list(out) if isinstance(out, tuple) else [out]
    with torch.no_grad():
        reference = ExportableLASResNet(model, config.static)(x)
    expected, expected_masks = reference[:len(outputs)], reference[len(outputs):]
    summary.cases += 1
    summary.cases_by_pipeline["network"] = summary.cases_by_pipeline.get("network", 0) + 1
    dynamic = [b for i, b in enumerate(model.dynamic_blocks()) if i not in config.static]
    h = model.stem(x)
    static = set(config.static)
    for index, block in enumerate(model.dynamic_blocks()):
        if index not in static:
            position = sum(1 for i in range(index) if i not in static)
            got, want = masks[position], expected_masks[position].numpy()
            if not np.array_equal(got, want):
                with torch.no_grad():
                    logits_ = block.masker.logits(h, block.granularity, block.stride)
                margin = (logits_[:, 0] - logits_[:, 1]).abs().numpy()
                scale = float(np.abs(logits_.numpy()).max()) or 1.0
                if np.all(margin[got != want] <= TIE * scale):
                    summary.tie_flips += 1
                    return  # everything after a tie follows the flipped decision
                _mismatch(summary, config, case, f"block {block.block_name}: "
                          f"{int((got != want).sum())} mask cells differ", report)
                return
        with torch.no_grad():
            h = block(h) if index not in static else torch.relu(block.residual(h)
                                                                + block.identity(h))
    del dynamic
    for name, got, want in zip(model.output_names, outputs, expected, strict=True):
        want = want.numpy()
        scale = max(1.0, float(np.abs(want).max()))
        if not np.allclose(got, want, rtol=NET_TOL, atol=NET_TOL * scale):
            _mismatch(summary, config, case, f"max |{name} - reference| "
                      f"{float(np.abs(got - want).max()):.3g} (values up to {scale:.3g})", report)
            return


def _mismatch(summary: Summary, config, case: int, problem: str, report) -> None:
    record = {"config": asdict(config), "case": case, "problem": problem}
    summary.mismatches.append(record)
    gpu = f" --emulate-gpu {summary.schedules}" if summary.schedules != "host" else ""
    report(f"MISMATCH {problem}\n  reproduce: python -m las_compiler.fuzz --reproduce "
           f"'{json.dumps({'config': asdict(config), 'case': case})}'{gpu}")


def run(cases: int, seed: int = 0, per_compile: int = 20, network_share: float = 0.15,
        report=print, progress=None, emulate_gpu: str | None = None) -> Summary:
    """``cases`` cases in all, ``per_compile`` per configuration; about ``network_share`` of
    the configurations are whole networks. ``emulate_gpu``: a GPU tag whose schedules are
    checked instead of the host's (run serially on this CPU)."""
    rng = np.random.default_rng(seed)
    summary = Summary(schedules=emulate_gpu or "host")
    start = time.perf_counter()
    index = 0
    while summary.cases < cases:
        config_seed = seed * 1_000_003 + index
        index += 1
        count = min(per_compile, cases - summary.cases)
        network = rng.random() < network_share
        try:
            if network:
                run_network_config(_network_config(rng, config_seed), count, summary, report,
                                   emulate_gpu)
            else:
                run_block_config(_block_config(rng, config_seed), count, summary, report,
                                 emulate_gpu)
        except ValueError as err:  # a per-patch chain over the GPU's shared memory
            if emulate_gpu is None or "does not fit" not in str(err):
                raise
            summary.unfit_configs += 1
        if progress is not None:
            progress(summary)
    summary.seconds = round(time.perf_counter() - start, 1)
    return summary


def reproduce(spec: dict, report=print) -> Summary:
    """Run the one case a mismatch report names."""
    config = dict(spec["config"])
    kind = config.pop("kind")
    summary = Summary()
    if kind == "block":
        config = FuzzBlock(**config)
        block = _random_block(config)
        import torch

        from .compiler import compile_block
        from .models import pin_mask

        gh, gw = _grid(config)
        template = pin_mask(block, torch.zeros(config.batch, config.in_channels, config.height,
                                               config.width), torch.zeros(config.batch, gh, gw))
        compiled = compile_block(block, template.permute(0, 2, 3, 1),
                                 compile_target(spec.get("emulate_gpu")), config.pipeline,
                                 tuning_logs=False)
        _block_case(config, block, compiled, spec["case"], summary, report)
    else:
        config = NetworkConfig(**{k: tuple(v) if isinstance(v, list) else v
                                  for k, v in config.items()})
        import torch

        import las_compiler

        model = _network(config)
        compiled = las_compiler.compile(model, torch.zeros(config.batch, 3, config.height,
                                                           config.width),
                                        compile_target(spec.get("emulate_gpu")),
                                        tuning_logs=False, pipelines=list(config.pipelines),
                                        static_blocks=config.static)
        _network_case(config, model, compiled, spec["case"], summary, report)
    report("reproduced: " + ("mismatch" if summary.mismatches else "no mismatch"))
    return summary


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m las_compiler.fuzz", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=300, help="cases in all")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--per-compile", type=int, default=20,
                        help="cases per compiled configuration")
    parser.add_argument("--json", default=None, help="write the summary here")
    parser.add_argument("--reproduce", default=None, help="one case, as a mismatch printed it")
    parser.add_argument("--emulate-gpu", default=None, metavar="TAG",
                        help="check a GPU's schedules instead (e.g. nvidia/jetson-tx2), run "
                             "serially on this CPU")
    args = parser.parse_args(argv)
    if args.reproduce:
        spec = {**json.loads(args.reproduce), "emulate_gpu": args.emulate_gpu}
        return 1 if reproduce(spec).mismatches else 0

    def progress(summary: Summary) -> None:
        print(f"\r{summary.cases}/{args.cases} cases, {summary.compiles} compiles, "
              f"{len(summary.mismatches)} mismatches, {summary.tie_flips} tie flips",
              end="", file=sys.stderr, flush=True)

    summary = run(args.cases, args.seed, args.per_compile, progress=progress,
                  emulate_gpu=args.emulate_gpu)
    print(file=sys.stderr)
    result = {**asdict(summary), "seed": args.seed, "per_compile": args.per_compile}
    text = json.dumps(result, indent=1)
    if args.json:
        from pathlib import Path

        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(text + "\n")
        tmp.replace(path)
    print(f"{summary.cases} cases in {summary.compiles} compiles ({summary.seconds} s): "
          f"{len(summary.mismatches)} mismatches, {summary.tie_flips} tie flips; exact r=0: "
          f"{summary.exact_rates['0']}, r=1: {summary.exact_rates['1']}")
    return 1 if summary.mismatches else 0


if __name__ == "__main__":
    sys.exit(main())
