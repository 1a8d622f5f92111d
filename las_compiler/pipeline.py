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


def _phases(target: tvm.target.Target, pipelines, database) -> list[tuple[str, list]]:
    apply_database = ([relax.transform.MetaScheduleApplyDatabase(enable_warning=False)]
                      if database is not None else [])
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
        # Phase 5. schedules: tuning logs first, then rules for everything else
        ("schedule", [*apply_database, ApplyScheduleRules(target)]),
        # Phase 6. build
        ("vm", [*cpu_backend.dataflow_lower_passes(target),
                *cpu_backend.finalize_passes(target)]),
    ]


def relax_pipeline(target: tvm.target.Target, pipelines: str | Sequence[str] = "fused",
                   database=None, dump_dir: Path | None = None) -> tvm.transform.Pass:
    """The pass list for ``tvm.compile(..., relax_pipeline=...)``.

    ``database``: a meta_schedule database whose records win over the rules (it must be the
    current database when the pipeline runs; see ``compiler.compile``). ``dump_dir``: write the
    IR after each phase.
    """
    passes = []
    for index, (phase, phase_passes) in enumerate(_phases(target, pipelines, database)):
        passes.extend(phase_passes)
        if dump_dir is not None:
            passes.append(DumpIR(dump_dir, index + 1, phase))
    seq = tvm.transform.Sequential(passes, name="las_compile")

    @tvm.transform.module_pass(opt_level=0, name="LASPipeline")
    def _run(mod, _ctx):
        with target:
            return seq(mod)

    return _run
