"""The compile pipeline: the only place that orders passes (per target, in phases).

Phase 1. import cleanup      - drop what the importer left unused.
Phase 2. BN folding, layout  - fold eval BN into dense convs; dense convs (and the pooling and
                               elementwise ops around them) to NHWC / OHWI.
Phase 3. LAS op lowering     - ``las.*`` calls -> our kernels (one dispatch pass).
Phase 4. dense rest          - dense conv chains -> our kernels; cancel NCHW<->NHWC round trips;
                               legalise and fuse what is left (pooling, classifier, reshapes).
Phase 5. schedule            - tuning-log records where present, then our rules for the target.
Phase 6. build               - Relax VM lowering (TVM's CPU backend passes).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import tvm
from tvm import relax
from tvm.relax.backend.cpu_generic import pipeline as cpu_backend

from .transform import ApplyScheduleRules, CancelTransposePairs, LowerDenseConv, LowerLASOps

NHWC_LAYOUTS = {"relax.nn.conv2d": ["NHWC", "OHWI"]}


@tvm.transform.module_pass(opt_level=0, name="DumpIR")
class DumpIR:
    """Write the module's TVMScript to ``<directory>/<index>-<phase>.py`` (debugging aid)."""

    def __init__(self, directory: Path, index: int, phase: str):
        self.path = Path(directory) / f"{index:02d}-{phase}.py"

    def transform_module(self, mod: tvm.IRModule, _ctx) -> tvm.IRModule:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(mod.script(show_meta=False))
        return mod


def _phases(target: tvm.target.Target, pipelines, tuning_log) -> list[tuple[str, list]]:
    return [
        # Phase 1. import cleanup
        ("import", [relax.transform.DeadCodeElimination(),
                    relax.transform.CanonicalizeBindings()]),
        # Phase 2. BN folding and layout
        ("layout", [relax.transform.FoldBatchnormToConv2D(), relax.transform.FoldConstant(),
                    relax.transform.ConvertLayout(NHWC_LAYOUTS), relax.transform.FoldConstant()]),
        # Phase 3. LAS op lowering per target
        ("las-ops", [LowerLASOps(target, pipelines)]),
        # Phase 4. dense rest
        ("dense", [LowerDenseConv(target), CancelTransposePairs(),
                   relax.transform.CanonicalizeBindings(), relax.transform.RemoveRedundantReshape(),
                   relax.transform.DeadCodeElimination(),
                   *cpu_backend.legalize_passes(target), relax.transform.DeadCodeElimination()]),
        # Phase 5. schedules: rules, with tuned knobs where the tuning log has them
        ("schedule", [ApplyScheduleRules(target, tuning_log)]),
        # Phase 6. build
        ("vm", [*cpu_backend.dataflow_lower_passes(target),
                *cpu_backend.finalize_passes(target)]),
    ]


def lowering_passes(target: tvm.target.Target, pipelines) -> tvm.transform.Pass:
    """Phases 1-4 only: every kernel lowered, nothing scheduled (tuning extracts tasks here)."""
    phases = _phases(target, pipelines, None)
    return tvm.transform.Sequential(
        [p for name, passes in phases if name not in ("schedule", "vm") for p in passes],
        name="las_lowering")


def relax_pipeline(target: tvm.target.Target, pipelines: str | Sequence[str] = "fused",
                   tuning_log=None, dump_dir: Path | None = None) -> tvm.transform.Pass:
    """The pass list for ``tvm.compile(..., relax_pipeline=...)``.

    ``tuning_log``: a :class:`las_compiler.tuning.TuningLog` whose best knobs replace the
    rules' defaults for the kernels it covers. ``dump_dir``: write the IR after each phase.
    """
    passes = []
    for index, (phase, phase_passes) in enumerate(_phases(target, pipelines, tuning_log)):
        passes.extend(phase_passes)
        if dump_dir is not None:
            passes.append(DumpIR(dump_dir, index + 1, phase))
    seq = tvm.transform.Sequential(passes, name="las_compile")

    @tvm.transform.module_pass(opt_level=0, name="LASPipeline")
    def _run(mod, _ctx):
        with target:
            return seq(mod)

    return _run
