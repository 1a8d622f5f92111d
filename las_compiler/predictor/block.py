"""Block latency = the sum of its pipeline's steps, each modelled by its kernel, plus the dense
downsample shortcut a projected block computes before them and one host sync per run of scans
(each block has one: ``block_pipelines.scan_runs``).

The steps are the compiler's own (``las_compiler.block_pipelines``): a step's kernel name picks
its model here, and the model reads the same generator arguments the compiler passes, so the
predictor cannot drift from what is emitted. Predictions are labelled by step name; each
kernel's work carries the kernel's name as its kind (what calibration fits efficiencies to).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ..block_pipelines import Scan, auto_candidates, candidates_for, get_pipeline, scan_runs
from ..geometry import PatchGeometry
from ..masker_chain import ALONE, ChainPosition, chained_step
from . import kernels as K
from .hardware import Hardware
from .layers import BlockLayer

F32 = K.F32


@dataclass(frozen=True)
class BlockPrediction:
    layer: BlockLayer
    granularity: int | None
    rate: float
    pipeline: str
    kernels: tuple[tuple[str, float], ...]  # (step label, microseconds)
    sync_us: float

    @property
    def total_us(self) -> float:
        return sum(t for _, t in self.kernels) + self.sync_us

    @property
    def total_ms(self) -> float:
        return self.total_us / 1e3


@dataclass(frozen=True)
class _Context:
    """What a step's model needs beyond the kernel's arguments."""

    hw: Hardware
    tile: K.TileModel
    layer: BlockLayer
    patches: PatchGeometry
    active: float  # active cells (expected or exact)
    dilated: float  # input pixels the active windows read
    before_rate: float = 1.0  # a masker chain's update: the cells its predecessor activated


def _dense_conv1x1(c: _Context, n, h, w, cin, cout, stride=1, epilogue="relu", _s=1) -> K.Work:
    ho, wo = (h - 1) // stride + 1, (w - 1) // stride + 1
    return K.dense_conv1x1(c.hw, c.tile, c.layer, cin, cout, n * ho * wo, "conv1x1",
                           float(n * h * w * cin * F32), residual=epilogue in
                           ("add_relu", "masked_add_relu"), stride=stride)


def _dense_conv2d(c: _Context, n, h, w, cin, cout, kernel, stride=1, padding=0,
                  epilogue="relu") -> K.Work:  # op.conv2d's parameters, by name
    if kernel != 3:
        raise ValueError(f"no model for a dense {kernel}x{kernel} conv in a block")
    return K.dense_conv3x3(c.hw, c.tile, c.layer)


def _stream(kind: str, nbytes: Callable[[_Context], float], map_bytes: Callable,
            tasks: Callable) -> Callable:
    return lambda c, *_: K.streaming(c.hw, kind, nbytes(c), map_bytes(c), tasks(c))


def _out_map(c: _Context) -> float:
    return K._map_bytes(c.layer, c.layer.out_channels, out=True)


def _fused_block(c: _Context, *_args) -> K.Work:
    block = K.gather_conv3x3(c.hw, c.tile, c.layer, c.patches, c.active, True, "fused_block")
    block.merge(K.conv1x1_scatter_add(c.hw, c.tile, c.layer, c.patches, c.active, "fused_block"))
    return block


def _listed(c: _Context, g: PatchGeometry) -> float:
    """Entries of a row kernel's list: the active cells, or (``pixel_rows``: the kernel runs
    on the map at S = 1) the active cells' output pixels."""
    if g.granularity == c.patches.granularity:
        return c.active
    return c.active / c.patches.num_cells * g.batch * g.out_height * g.out_width


def _inactive_bytes(c: _Context) -> float:
    return (c.patches.num_cells - c.active) * c.patches.tile_pixels * c.layer.out_channels * F32


# kernel name -> model(context, *generator arguments)
MODELS: dict[str, Callable[..., K.Work]] = {
    "masker": lambda c, g, cin, consumers=1, update=False, fine=None: K.masker(
        c.hw, c.tile, c.layer, c.patches, max(consumers, 1),
        c.before_rate if update else 1.0, update),
    "compact": lambda c, cells: K.scan(c.hw, "compact", cells),
    "dilated_rows": lambda c, g: K.scan(c.hw, "dilated_rows", g.batch * g.height * g.width),
    "active_rows": lambda c, g: K.scan(c.hw, "active_rows", g.num_cells),
    "pixel_rows": lambda c, g: K.scan(c.hw, "pixel_rows",
                                      g.batch * g.out_height * g.out_width),
    "conv1x1_rows": lambda c, *_: K.conv1_rows(c.hw, c.tile, c.layer, c.dilated),
    "gather_conv3x3": lambda c, *_: K.gather_conv3x3(c.hw, c.tile, c.layer, c.patches, c.active),
    "gather_conv3x3_rows":
        lambda c, g, *_: K.gather_conv3x3_rows(c.hw, c.tile, c.layer, _listed(c, g)),
    "conv1x1_scatter_add":
        lambda c, *_: K.conv1x1_scatter_add(c.hw, c.tile, c.layer, c.patches, c.active),
    "conv1x1_scatter_add_rows":
        lambda c, g, *_: K.conv1x1_scatter_add_rows(c.hw, c.tile, c.layer, _listed(c, g)),
    "relu_inplace": _stream("relu_inplace", lambda c: 2 * _out_map(c), _out_map,
                            lambda c: _out_map(c) / 256),
    "masker_conv1x1": lambda c, *_: K.dense_conv1x1(
        c.hw, c.tile, c.layer, c.layer.in_channels, c.layer.planes + K.CHANNEL_BLOCK,
        c.layer.batch * c.layer.height * c.layer.width, "masker_conv1x1",
        K._map_bytes(c.layer, c.layer.in_channels)),
    "masker_flags": _stream("masker_flags", lambda c: c.patches.num_cells * 16 * F32,
                            lambda c: c.patches.num_cells * 16 * F32,
                            lambda c: c.patches.num_cells / 256),
    "halo_conv3x3": lambda c, *_: K.gather_conv3x3(c.hw, c.tile, c.layer, c.patches, c.active, True,
                                                   "halo_conv3x3"),
    "fused_block": _fused_block,
    "copy_inactive": _stream("copy_inactive", lambda c: 2 * _inactive_bytes(c), _out_map,
                             lambda c: max(c.patches.num_cells - c.active, 1)),
    "conv1x1": _dense_conv1x1,
    "conv2d": _dense_conv2d,
    "gather_patches": _stream(
        "gather_patches",
        lambda c: 2 * c.active * c.patches.window_pixels * c.layer.planes * F32,
        lambda c: K._map_bytes(c.layer, c.layer.planes), lambda c: max(c.active, 1)),
    "gathered_conv3x3": lambda c, *_: K.gather_conv3x3(c.hw, c.tile, c.layer, c.patches, c.active,
                                                       kind="gathered_conv3x3"),
    "patch_conv1x1": lambda c, *_: K.conv1x1_scatter_add(c.hw, c.tile, c.layer, c.patches, c.active,
                                                         "patch_conv1x1", scatter=False),
    "scatter_patches": _stream(
        "scatter_patches",
        lambda c: 2 * c.patches.num_cells * c.patches.tile_pixels * c.layer.out_channels * F32,
        _out_map,
        lambda c: c.patches.num_cells),
    "add_relu": _stream("add_relu", lambda c: 3 * _out_map(c), _out_map,
                        lambda c: _out_map(c) / 256),
}


def _downsample(hw, tile, layer: BlockLayer) -> list[tuple[str, K.Work]]:
    if not layer.downsample:
        return []
    pixels = layer.batch * layer.out_height * layer.out_width
    return [("downsample", K.dense_conv1x1(hw, tile, layer, layer.in_channels,
                                           layer.out_channels, pixels, "conv1x1",
                                           K._map_bytes(layer, layer.in_channels),
                                           stride=layer.stride))]


def _dense_block(hw, tile, layer: BlockLayer) -> list[tuple[str, K.Work]]:
    """A static block (no masker, every pixel): conv1, conv2, conv3 + residual."""
    c, w, k = layer.in_channels, layer.planes, layer.out_channels
    pixels_in = layer.batch * layer.height * layer.width
    pixels_out = layer.batch * layer.out_height * layer.out_width
    return [("conv1", K.dense_conv1x1(hw, tile, layer, c, w, pixels_in, "conv1x1",
                                      K._map_bytes(layer, c))),
            ("conv2", K.dense_conv3x3(hw, tile, layer)),
            *_downsample(hw, tile, layer),
            ("conv3", K.dense_conv1x1(hw, tile, layer, w, k, pixels_out, "conv1x1",
                                      K._map_bytes(layer, w), residual=True))]


def block_work(hw: Hardware, layer: BlockLayer, granularity: int | None, pipeline: str,
               active: float, dilated_pixels: float, footprint_bytes: float | None = None,
               chain: ChainPosition = ALONE, before_rate: float = 1.0
               ) -> tuple[list[tuple[str, K.Work]], int]:
    """(labelled kernels, number of host syncs) of one block; ``granularity`` None: the static
    dense block. ``active`` cells (expected or exact), ``dilated_pixels``: input pixels the
    active windows read. ``footprint_bytes``: what runs between two runs of the block
    touches (default: the block itself, run over and over); each kernel's first pass over
    its weights comes from the level that holds it. ``chain``: the block's place in a masker
    chain (``las_compiler.masker_chain``), ``before_rate`` its predecessor's active rate."""
    footprint = layer.footprint_bytes() if footprint_bytes is None else footprint_bytes
    tile = K.TileModel.for_hardware(hw)
    if granularity is None:
        work, syncs = _dense_block(hw, tile, layer), 0
    else:
        block = layer.geometry(granularity)
        context = _Context(hw, tile, layer, block.patches, active, dilated_pixels,
                           before_rate)
        steps = get_pipeline(pipeline).steps_for(block)
        if chain.chained:
            steps = [chained_step(s, chain) if s.name == "masker" else s for s in steps]
        # the projection: a step of the pipeline, or a dense conv before the block
        work = [] if any(step.name == "downsample" for step in steps) \
            else _downsample(hw, tile, layer)
        for step in steps:
            if step.kernel not in MODELS:
                raise ValueError(f"no latency model for kernel {step.kernel!r} (step "
                                 f"{step.name!r} of pipeline {pipeline!r})")
            work.append((step.name, MODELS[step.kernel](context, *step.args(block))))
        syncs = sum(isinstance(run[0], Scan) for run in scan_runs(steps))
    return [(label, K.with_cold_weights(hw, w, footprint)) for label, w in work], syncs


def predict_block(hw: Hardware, layer: BlockLayer, granularity: int | None, rate: float,
                  pipeline: str = "fused", active_cells: Sequence[int] | None = None,
                  footprint_bytes: float | None = None, chain: ChainPosition = ALONE,
                  before_rate: float = 1.0) -> BlockPrediction:
    """Predicted latency of one block. ``rate``: expected fraction of active patches (cells
    active independently); ``active_cells``: an exact patch list instead. ``granularity``
    None (or pipeline "static"): the static dense block. ``footprint_bytes``, ``chain``,
    ``before_rate``: see :func:`block_work` (a network passes its whole footprint: every
    block's weights arrive cold)."""
    if pipeline == "static" or granularity is None:
        work, syncs = block_work(hw, layer, None, "static", 0.0, 0.0, footprint_bytes)
        pipeline, granularity = "static", None
    else:
        if not layer.fits(granularity):
            raise ValueError(f"S={granularity} does not fit the {layer.out_height}x"
                             f"{layer.out_width} output map of {layer.name or 'the block'}")
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"activation rate must lie in [0, 1], got {rate}")
        pixels = layer.batch * layer.height * layer.width
        if active_cells is not None:
            active = float(len(active_cells))
            rate = active / layer.cells(granularity)
            dilated = layer.dilated_fraction_of(granularity, active_cells) * pixels
        else:
            active = rate * layer.cells(granularity)
            dilated = layer.dilated_fraction(granularity, rate) * pixels
        work, syncs = block_work(hw, layer, granularity, pipeline, active, dilated,
                                 footprint_bytes, chain, before_rate)
    times = tuple((label, K.kernel_time_us(hw, item)) for label, item in work)
    return BlockPrediction(layer, granularity, rate, pipeline, times, syncs * hw.sync_us)


def best_pipeline(hw: Hardware, layer: BlockLayer, granularity: int, rate: float,
                  pipelines: Sequence[str] | None = None,
                  footprint_bytes: float | None = None) -> BlockPrediction:
    """The fastest of ``pipelines`` (those that apply to the block; default: what "auto"
    weighs on this kind of device) for this S and r."""
    pipelines = auto_candidates(hw.kind) if pipelines is None else pipelines
    names = candidates_for(layer.geometry(granularity), pipelines)
    if not names:
        raise ValueError(f"none of the pipelines {list(pipelines)} applies to "
                         f"{layer.name or 'the block'} at S = {granularity}")
    return min((predict_block(hw, layer, granularity, rate, p, footprint_bytes=footprint_bytes)
                for p in names), key=lambda pred: pred.total_us)


