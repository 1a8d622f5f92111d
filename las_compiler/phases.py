"""Compile phases: the only place that orders passes (per target family).

Phase 1. import cleanup      - drop what the importer left unused; choose every block's
                               pipeline (``"auto"``: the latency predictor's choice).
Phase 2. BN folding, layout  - fold eval BN into dense convs; dense convs (and the pooling and
                               elementwise ops around them) to NHWC / OHWI; constant weights
                               folded with numpy where it can (FoldConstantsOnHost).
Phase 3. LAS op lowering     - ``las.*`` calls -> the kernels of each block's pipeline.
Phase 4. dense rest          - dense conv chains -> our kernels; cancel NCHW<->NHWC round trips;
                               legalise and fuse what is left (pooling, classifier, reshapes).
Phase 5. schedule            - tuning-log knobs where present, then the family's rules.
Phase 6. build               - Relax VM lowering (TVM's backend passes for the family); every
                               PrimFunc noalias (a TVM codegen bug drops it otherwise).

The target's family (``schedules.family_of``) contributes its TVM backend's legalise and
lowering passes (``TargetFamily.backend``); the order of the phases is the same for every
family.
"""

from __future__ import annotations

from pathlib import Path

import tvm
from tvm import relax

from .schedules import check_target
from .transform import (
    ApplyScheduleRules,
    CancelTransposePairs,
    ChooseBlockPipelines,
    FoldBatchNorm,
    FoldConstantsOnHost,
    LowerDenseConv,
    LowerLASOps,
    UniformNoAlias,
)

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


@tvm.transform.module_pass(opt_level=0, name="ReportPhase")
class ReportPhase:
    """Tell ``progress`` that a phase starts (what ``las compile`` prints as it works)."""

    def __init__(self, progress, phase: str):
        self.progress, self.phase = progress, phase

    def transform_module(self, mod: tvm.IRModule, _ctx) -> tvm.IRModule:
        self.progress(PHASE_NAMES.get(self.phase, self.phase))
        return mod


PHASE_NAMES = {"import": "choosing block pipelines", "layout": "folding BN, NHWC layout",
               "las-ops": "lowering LAS ops to kernels", "dense": "lowering dense convs",
               "schedule": "scheduling kernels", "vm": "building"}


def phases(target: tvm.target.Target, tuning_log=None, expected_rate: float = 0.5,
           donate_params: bool = False) -> list[tuple[str, list]]:
    """The named phases for ``target`` (``ValueError`` for a target family without rules)."""
    backend = check_target(target).backend()
    return [
        # Phase 1. import cleanup, block pipelines chosen
        ("import", [relax.transform.DeadCodeElimination(),
                    relax.transform.CanonicalizeBindings(),
                    ChooseBlockPipelines(target, expected_rate)]),
        # Phase 2. BN folding and layout
        ("layout", [FoldBatchNorm(), FoldConstantsOnHost(), relax.transform.FoldConstant(),
                    relax.transform.ConvertLayout(NHWC_LAYOUTS), FoldConstantsOnHost(),
                    relax.transform.FoldConstant()]),
        # Phase 3. LAS op lowering
        # (dead-code elimination: the downsample chains blocks now compute themselves)
        ("las-ops", [LowerLASOps(target, donate_params), relax.transform.DeadCodeElimination()]),
        # Phase 4. dense rest
        ("dense", [LowerDenseConv(target), CancelTransposePairs(),
                   relax.transform.CanonicalizeBindings(), relax.transform.RemoveRedundantReshape(),
                   relax.transform.DeadCodeElimination(),
                   # weights as inputs: their preparation into main_transform_params
                   relax.transform.LiftTransformParams(),
                   *backend.legalize_passes(target), relax.transform.DeadCodeElimination()]),
        # Phase 5. schedules: rules, with tuned knobs where the tuning log has them
        ("schedule", [ApplyScheduleRules(target, tuning_log)]),
        # Phase 6. build (UniformNoAlias works around a TVM codegen bug: see its docstring)
        ("vm", [*backend.dataflow_lower_passes(target), *backend.finalize_passes(target),
                UniformNoAlias()]),
    ]


def _in_target(target: tvm.target.Target, seq: tvm.transform.Pass, name: str):
    @tvm.transform.module_pass(opt_level=0, name=name)
    def _run(mod, _ctx):
        with target:
            return seq(mod)

    return _run


def lowering_passes(target: tvm.target.Target, expected_rate: float = 0.5,
                    donate_params: bool = False) -> tvm.transform.Pass:
    """Phases 1-4 only: every kernel lowered, nothing scheduled (tuning extracts tasks here)."""
    passes = [p for name, group in phases(target, None, expected_rate, donate_params)
              if name not in ("schedule", "vm") for p in group]
    return _in_target(target, tvm.transform.Sequential(passes), "LASLowering")


def emulation_pipeline(gpu: tvm.target.Target, host: tvm.target.Target,
                       expected_rate: float = 0.5, donate_params: bool = False,
                       dump_dir: Path | None = None) -> tvm.transform.Pass:
    """Phases 1-5 for the GPU target ``gpu`` (its rules schedule every kernel), then each
    scheduled kernel as a serial CPU program (``SerializeGPUSchedule``), then phase 6 for
    ``host``: a whole network with the GPU's schedules, run on this CPU to check numbers.
    ``dump_dir``: write the IR after each of the GPU's phases."""
    from .transform.serialize_gpu import SerializeGPUSchedule

    gpu_passes = []
    for index, (name, group) in enumerate(phases(gpu, None, expected_rate, donate_params)):
        if name == "vm":
            continue
        gpu_passes.extend(group)
        if dump_dir is not None:
            gpu_passes.append(DumpIR(dump_dir, index + 1, name))
    host_build = dict(phases(host, None, expected_rate, donate_params))["vm"]
    return tvm.transform.Sequential([
        _in_target(gpu, tvm.transform.Sequential(gpu_passes), "LASGPUPhases"),
        SerializeGPUSchedule(),
        _in_target(host, tvm.transform.Sequential(host_build), "LASHostBuild"),
    ], name="las_emulate_gpu")


def relax_pipeline(target: tvm.target.Target, tuning_log=None, dump_dir: Path | None = None,
                   expected_rate: float = 0.5, donate_params: bool = False,
                   progress=None) -> tvm.transform.Pass:
    """The pass list for ``tvm.compile(..., relax_pipeline=...)``.

    ``tuning_log``: a :class:`las_compiler.tuning.TuningLog` whose best knobs replace the
    rules' defaults for the kernels it covers. ``dump_dir``: write the IR after each phase.
    ``expected_rate``: the activation rate ``"auto"`` pipelines are chosen for.
    ``donate_params``: blocks may update function parameters in place (see ``LowerLASOps``).
    ``progress``: called with each phase's name as it starts.
    """
    passes = []
    for index, (phase, group) in enumerate(phases(target, tuning_log, expected_rate,
                                                  donate_params)):
        if progress is not None:
            passes.append(ReportPhase(progress, phase))
        passes.extend(group)
        if dump_dir is not None:
            passes.append(DumpIR(dump_dir, index + 1, phase))
    return _in_target(target, tvm.transform.Sequential(passes, name="las_compile"),
                      "LASPipeline")
