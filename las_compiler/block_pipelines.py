"""The block pipelines: which kernels a dynamic bottleneck block runs, in order. The only place
a block's kernel chain is written.

Each pipeline is a list of steps. A step names a registered kernel (``las_compiler.op``), how
its generator arguments follow from the block's geometry, which named values it reads, which it
produces, and which buffer it updates in place; a scan step also turns a count into a
symbolic length (a block's scans stand side by side: their lengths reach the host in one sync,
:func:`scan_runs`). Three readers share the table:

* ``transform.LowerLASOps`` emits one Relax call per step (:mod:`.transform.emit_steps`);
* the latency predictor models each step by its name and kernel (``predictor.block``);
* the block benchmark and the predictor's calibration compile one-block modules through the
  real compiler, so they time exactly these steps.

Values a step can read, besides those earlier steps produced:

``x``
    the block input, NHWC (N, H, W, C);
``shortcut``
    the identity branch, NHWC (N, Ho, Wo, K): ``x`` itself, or the downsample's result in a
    block with a projection (computed before the block, or by the block's own ``downsample``
    step where the geometry says ``shortcut_conv``). A step that updates it in place is given
    a buffer it may overwrite (a copy when the value is still needed after the block);
``ds_w``, ``ds_b``
    the downsample's 1x1 conv, BN folded, weights packed (only where ``shortcut_conv``);
``unused``
    a 1x1 zero tensor, for kernel parameters a variant does not read;
``masker_w``, ``masker_b``
    the masker's 1x1 conv (2, C) and its bias;
``w1`` .. ``b3``
    the three convs, BN folded, weights packed ``[K/16][kh][kw][C][16]``;
``w1_masker``, ``b1_masker``
    conv1 with the masker's two output channels as one more 16-channel tile.

The emitter reshapes a value to a kernel parameter's static shape when only the shape differs
(NHWC maps vs flat pixel rows), so the table lists no reshapes. A block's outputs are the last
step's result (its output map) and ``flags`` (the masker's per-cell decisions, returned as the
(N, gh, gw) mask).

Plain Python: the predictor reads this table without importing TVM.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from .geometry import BlockGeometry, PatchGeometry


def _always(_block: BlockGeometry) -> bool:
    return True


def multi_pixel(block: BlockGeometry) -> bool:
    """Patches of several pixels (S > 1): work lists of patches."""
    return block.granularity > 1


def single_pixel(block: BlockGeometry) -> bool:
    """One-pixel patches (S = 1): work lists of groups of 12 active cells, since a one-pixel
    patch would give the register micro-kernel a 1 x 16 tile that reloads every weight."""
    return block.granularity == 1


def projected(block: BlockGeometry) -> bool:
    """The shortcut is a downsample's output, not the block input."""
    return block.projected


def shortcut_conv(block: BlockGeometry) -> bool:
    """The block computes its projection itself (``BlockGeometry.shortcut_conv``)."""
    return block.projected and block.shortcut_conv


def relu_after(block: BlockGeometry) -> bool:
    """A projection that arrives finished: ReLU where the mask is off needs its own pass."""
    return block.projected and not block.shortcut_conv


def plain(block: BlockGeometry) -> bool:
    """The shortcut is the block input itself."""
    return not block.projected


def _single_pixel_stride1(block: BlockGeometry) -> bool:
    return block.granularity == 1 and block.stride == 1


@dataclass(frozen=True)
class Step:
    """One kernel call of a pipeline.

    ``name`` is the step's role in the block ("masker", "conv1", ...): profiles and
    predictions are labelled by it. ``kernel`` is a registered kernel name, ``args`` its
    generator's arguments from the block geometry. The kernel's parameters are ``inputs``
    (value names) followed by one output buffer per name in ``outputs``, except for an
    in-place step: ``updates`` names the value the kernel overwrites, its last parameter of
    that name (a kernel that reads and writes it as two parameters lists it twice), and the
    updated buffer is named ``outputs[0]`` or keeps its input's name. ``when`` says for which
    blocks the step exists.
    """

    name: str
    kernel: str
    args: Callable[[BlockGeometry], tuple]
    inputs: tuple[str, ...]
    outputs: tuple[str, ...] = ()
    updates: str | None = None
    when: Callable[[BlockGeometry], bool] = _always

    def __post_init__(self):
        if self.updates is not None and self.updates not in self.inputs:
            raise ValueError(f"step {self.name!r} updates {self.updates!r}, which is not one "
                             f"of its inputs {self.inputs}")

    @property
    def inplace(self) -> int | None:
        """The parameter position of the buffer the kernel overwrites (see ``updates``)."""
        if self.updates is None:
            return None
        return len(self.inputs) - 1 - self.inputs[::-1].index(self.updates)

    @property
    def result(self) -> str:
        """The value name this step leaves behind (its first output)."""
        if self.outputs:
            return self.outputs[0]
        if self.updates is None:
            raise ValueError(f"step {self.name!r} produces nothing")
        return self.updates

    def only(self, when: Callable[[BlockGeometry], bool]) -> Step:
        return Step(self.name, self.kernel, self.args, self.inputs, self.outputs, self.updates,
                    when)


@dataclass(frozen=True)
class Scan(Step):
    """A work-list scan: the kernel writes a list and its length (``count[1]``). The length
    becomes a symbolic size (one device-to-host read per scan) and the list's first ``count``
    entries the value ``prefix``; ``outputs[0]``, if given, names the whole list (the
    compaction's partition: active cells first, then the inactive ones)."""

    prefix: str = ""

    @property
    def result(self) -> str:
        return self.prefix

    def only(self, when: Callable[[BlockGeometry], bool]) -> Scan:
        return Scan(self.name, self.kernel, self.args, self.inputs, self.outputs, self.updates,
                    when, self.prefix)


def scan_runs(steps: Sequence[Step]) -> list[list[Step]]:
    """``steps`` cut into runs: each maximal run of consecutive scans together (the block
    reads their lengths in one device-to-host sync, the last scan carrying the others'), each
    other step alone. Pipelines list a block's scans side by side for this."""
    runs: list[list[Step]] = []
    for step in steps:
        if isinstance(step, Scan) and runs and isinstance(runs[-1][-1], Scan):
            runs[-1].append(step)
        else:
            runs.append([step])
    return runs


@dataclass(frozen=True)
class Pipeline:
    """A named kernel pipeline (see the module docstring)."""

    name: str
    summary: str
    steps: tuple[Step, ...]
    applies: Callable[[BlockGeometry], bool] = _always
    requirement: str = ""  # what ``applies`` demands, for error messages
    ablation: bool = False  # kept to measure what fusion buys; never chosen by "auto"
    notes: tuple[str, ...] = field(default=())

    def steps_for(self, block: BlockGeometry) -> list[Step]:
        """The steps this block runs (``ValueError`` if the pipeline does not apply)."""
        if not self.applies(block):
            raise ValueError(f"block pipeline {self.name!r} needs {self.requirement}; this "
                             f"block has S = {block.granularity}, stride = {block.stride}")
        return [step for step in self.steps if step.when(block)]

    def output(self, block: BlockGeometry) -> str:
        return self.steps_for(block)[-1].result

    @property
    def computes_shortcut(self) -> bool:
        """Whether a block with ``shortcut_conv`` computes its projection in this pipeline
        (others take the finished shortcut)."""
        return SHORTCUT_CONV in self.steps


# -- steps shared by several pipelines -------------------------------------------------------
def _cells(b: BlockGeometry) -> tuple:
    return (b.patches.num_cells,)


def _patches(b: BlockGeometry) -> tuple:
    return (b.patches,)


def _conv2_args(b: BlockGeometry) -> tuple:
    return (b.patches, b.width, b.width)


def _conv3_args(b: BlockGeometry) -> tuple:
    return (b.patches, b.width, b.out_channels)


MASKER = Step("masker", "masker", lambda b: (b.patches, b.in_channels),
              ("x", "masker_w", "masker_b"), ("flags",))
COMPACT = Scan("compact", "compact", _cells, ("flags",), ("partition",), prefix="idx")
DILATED_ROWS = Scan("dilate", "dilated_rows", _patches, ("flags",), prefix="conv1_rows")
CONV1_ROWS = Step("conv1", "conv1x1_rows", lambda b: (b.in_pixels, b.in_channels, b.width),
                  ("x", "conv1_rows", "w1", "b1"), ("h1",))
CELL_ROWS = Scan("cells", "active_rows", _patches, ("flags",), prefix="cell_rows")
GATHER_CONV2 = Step("conv2", "gather_conv3x3", _conv2_args, ("h1", "idx", "w2", "b2"), ("y2",))
GATHER_CONV2_ROWS = Step("conv2", "gather_conv3x3_rows", _conv2_args,
                         ("h1", "cell_rows", "w2", "b2"), ("y2",))
SCATTER_CONV3 = Step("conv3", "conv1x1_scatter_add", _conv3_args,
                     ("y2", "idx", "w3", "b3", "shortcut", "shortcut"), updates="shortcut")
SCATTER_CONV3_ROWS = Step("conv3", "conv1x1_scatter_add_rows", _conv3_args,
                          ("y2", "cell_rows", "w3", "b3", "shortcut", "shortcut"),
                          updates="shortcut")


def _pixels(b: BlockGeometry) -> PatchGeometry:
    """The block's map at S = 1: its cells are the output pixels ``pixel_rows`` lists."""
    return PatchGeometry(b.batch, b.height, b.map_width, 1, b.stride)


PIXEL_ROWS = Scan("pixels", "pixel_rows", _patches, ("flags",), prefix="pixel_rows")
GATHER_CONV2_PIXELS = Step("conv2", "gather_conv3x3_rows", lambda b: (_pixels(b), b.width,
                                                                      b.width),
                           ("h1", "pixel_rows", "w2", "b2"), ("y2",))
SCATTER_CONV3_PIXELS = Step("conv3", "conv1x1_scatter_add_rows",
                            lambda b: (_pixels(b), b.width, b.out_channels),
                            ("y2", "pixel_rows", "w3", "b3", "shortcut", "shortcut"),
                            updates="shortcut")
# Inactive pixels of a projected shortcut still need relu(identity) (the plain shortcut is a
# block input, already >= 0; active pixels get relu(shortcut + conv3) from the scatter). Where
# the block computes the projection, its epilogue does it (relu where the cell's flag is 0);
# otherwise relu, idempotent, runs over the whole map afterwards.
SHORTCUT_CONV = Step("downsample", "conv1x1",
                     lambda b: (b.batch, b.height, b.map_width, b.in_channels, b.out_channels,
                                b.stride, "masked_relu", b.patches),
                     ("x", "ds_w", "ds_b", "unused", "flags"), ("shortcut",), when=shortcut_conv)
RELU_SHORTCUT = Step("relu", "relu_inplace", lambda b: (b.out_size,), ("shortcut", "shortcut"),
                     updates="shortcut", when=relu_after)


PIPELINES: dict[str, Pipeline] = {p.name: p for p in (
    Pipeline(
        "fused",
        "masker, compaction, conv1 on the pixels active windows read, gather+conv3x3, "
        "conv1x1+scatter-add in place (S = 1: on groups of 12 active cells)",
        (MASKER, SHORTCUT_CONV, COMPACT.only(multi_pixel), DILATED_ROWS,
         CELL_ROWS.only(single_pixel), CONV1_ROWS, GATHER_CONV2.only(multi_pixel),
         GATHER_CONV2_ROWS.only(single_pixel), SCATTER_CONV3.only(multi_pixel),
         SCATTER_CONV3_ROWS.only(single_pixel), RELU_SHORTCUT)),
    Pipeline(
        "masker_conv1",
        "the masker's 1x1 conv as one more 16-channel tile of a dense conv1 (one read of x), "
        "then as fused on groups of 12 active cells",
        (Step("masker", "masker_conv1x1",
              lambda b: (b.batch, b.height, b.map_width, b.in_channels, b.width),
              ("x", "w1_masker", "b1_masker"), ("h1", "logits")),
         Step("flags", "masker_flags", _cells, ("logits",), ("flags",)),
         SHORTCUT_CONV, CELL_ROWS, GATHER_CONV2_ROWS, SCATTER_CONV3_ROWS, RELU_SHORTCUT),
        applies=_single_pixel_stride1,
        requirement="S = 1 and stride 1 (the masker and conv1 read the same pixels)"),
    Pipeline(
        "pixel_rows",
        "masker, conv1 on the pixels active windows read, then gather+conv3x3 and "
        "conv1x1+scatter-add on the active cells' output pixels in groups of 12: several "
        "small patches share a register tile (CPU) or a thread block (GPU)",
        (MASKER, SHORTCUT_CONV, DILATED_ROWS, PIXEL_ROWS, CONV1_ROWS, GATHER_CONV2_PIXELS,
         SCATTER_CONV3_PIXELS, RELU_SHORTCUT),
        applies=multi_pixel, requirement="S >= 2 (at S = 1, fused runs on the same lists)"),
    Pipeline(
        "halo",
        "masker, compaction, conv1+conv3x3 on each active patch's halo, conv1x1+scatter-add in "
        "place",
        (MASKER, SHORTCUT_CONV, COMPACT,
         Step("conv2", "halo_conv3x3", lambda b: (b.patches, b.in_channels, b.width),
              ("x", "idx", "w1", "b1", "w2", "b2"), ("y2",)),
         SCATTER_CONV3, RELU_SHORTCUT)),
    Pipeline(
        "whole",
        "masker, compaction, conv1+conv2+conv3 per active patch in one kernel, relu(shortcut) "
        "on the inactive cells",
        (MASKER, COMPACT,
         # the output cannot alias x (other patches read their halos from it)
         Step("block", "fused_block", lambda b: (b.patches, b.in_channels, b.width,
                                                 b.out_channels),
              ("x", "idx", "w1", "b1", "w2", "b2", "w3", "b3", "x"), ("out",), when=plain),
         Step("block", "fused_block", lambda b: (b.patches, b.in_channels, b.width,
                                                 b.out_channels),
              ("x", "idx", "w1", "b1", "w2", "b2", "w3", "b3", "shortcut", "shortcut"),
              ("out",), updates="shortcut", when=projected),
         Step("inactive", "copy_inactive", lambda b: (b.patches, b.out_channels),
              ("partition", "idx", "x", "out"), updates="out", when=plain),
         Step("inactive", "copy_inactive", lambda b: (b.patches, b.out_channels),
              ("partition", "idx", "out", "out"), updates="out", when=projected))),
    Pipeline(
        "unfused",
        "masker, compaction, dense conv1, gather into memory, conv3x3, conv1x1, scatter into a "
        "zero map, add+ReLU over the whole map",
        (MASKER, COMPACT,
         Step("conv1", "conv1x1",
              lambda b: (b.batch, b.height, b.map_width, b.in_channels, b.width, 1, "relu"),
              ("x", "w1", "b1", "unused"), ("h1",)),
         Step("gather", "gather_patches", lambda b: (b.patches, b.width), ("h1", "idx"),
              ("windows",)),
         Step("conv2", "gathered_conv3x3", _conv2_args, ("windows", "w2", "b2"), ("y2",)),
         Step("conv3", "patch_conv1x1",
              lambda b: (b.patches.tile_pixels, b.width, b.out_channels), ("y2", "w3", "b3"),
              ("z",)),
         Step("scatter", "scatter_patches", lambda b: (b.patches, b.out_channels),
              ("z", "partition"), ("scattered",)),
         Step("add", "add_relu", lambda b: (b.out_size,), ("shortcut", "scattered"),
              ("out",))),
        ablation=True),
    Pipeline(
        "dense",
        "masker, then every pixel with the dense kernels; conv3's epilogue is "
        "relu(shortcut + mask * branch), so the block's function is unchanged",
        (MASKER,
         Step("conv1", "conv1x1",
              lambda b: (b.batch, b.height, b.map_width, b.in_channels, b.width, 1, "relu"),
              ("x", "w1", "b1", "unused"), ("h1",)),
         Step("conv2", "conv2d",
              lambda b: (b.batch, b.height, b.map_width, b.width, b.width, 3, b.stride, 1,
                         "relu"),
              ("h1", "w2", "b2", "unused"), ("h2",)),
         Step("conv3", "conv1x1",
              lambda b: (b.batch, b.patches.out_height, b.patches.out_width, b.width,
                         b.out_channels, 1, "masked_add_relu", b.patches),
              ("h2", "w3", "b3", "shortcut", "flags"), ("out",)))),
)}

AUTO = "auto"
# What "auto" chooses from: the pipelines the predictor is calibrated for.
AUTO_CANDIDATES = ("fused", "halo", "dense")
# GPUs weigh pixel_rows too: a thread block tiles 16 pixel slots, which one 2x2 patch fills a
# quarter of and a 12-pixel group three quarters. On CPUs it measured the same as fused at
# S = 2 (0.99-1.04x, AVX2: the register tile already fits a small patch); at S = 7 one quick
# block round had it ahead at r = 0.25 and 1, so the CPU adds it once networks confirm that.
GPU_AUTO_CANDIDATES = (*AUTO_CANDIDATES, "pixel_rows")


def auto_candidates(device_kind: str) -> tuple[str, ...]:
    """What "auto" chooses from on a ``"cpu"`` or ``"gpu"`` (a hardware profile's kind)."""
    return GPU_AUTO_CANDIDATES if device_kind == "gpu" else AUTO_CANDIDATES


def get_pipeline(name: str) -> Pipeline:
    try:
        return PIPELINES[name]
    except KeyError:
        raise ValueError(f"unknown block pipeline {name!r}; choose from "
                         f"{[AUTO, *PIPELINES]}") from None


def check_pipelines(names: str | Sequence[str]) -> None:
    """``ValueError`` naming the valid choices for any unknown name ("auto" is valid)."""
    for name in [names] if isinstance(names, str) else names:
        if name != AUTO:
            get_pipeline(name)


def candidates_for(block: BlockGeometry, names: Sequence[str] = AUTO_CANDIDATES) -> list[str]:
    """The pipelines of ``names`` that apply to this block."""
    return [n for n in names if PIPELINES[n].applies(block)]
