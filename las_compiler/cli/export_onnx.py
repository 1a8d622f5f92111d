"""``las export-onnx``: a LAS-ResNet as an ONNX file with ``ai.las`` operators.

The file runs unchanged in ONNX Runtime (each LAS op through its standard-op body, densely)
and compiles with ``las compile model.onnx`` (the LAS ops sparse). The command checks both
ends before it reports: ONNX Runtime on the file against PyTorch, outputs and masks.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .common import Progress, add_json, add_model_args, out_stages, subcommand


@dataclass
class ExportReport:
    model: str
    snet: str
    input_shape: tuple[int, ...]
    path: str
    megabytes: float
    las_nodes: int
    opset: int
    max_abs_error: float | None = None  # ONNX Runtime on the file vs PyTorch
    mask_cells_differing: int | None = None
    notes: list[str] = field(default_factory=list)

    def format(self) -> str:
        lines = [f"{self.model}  S_net={self.snet}  input={list(self.input_shape)}",
                 f"wrote {self.path} ({self.megabytes:.1f} MB): opset {self.opset}, "
                 f"{self.las_nodes} ai.las SparseBottleneck nodes with their reference body"]
        if self.max_abs_error is not None:
            masks = "masks identical" if not self.mask_cells_differing else \
                f"masks differ at {self.mask_cells_differing} patch cells (float ties)"
            lines.append(f"ONNX Runtime on the file vs PyTorch: max |diff| "
                         f"{self.max_abs_error:.2e}, {masks}")
        return "\n".join(lines + self.notes)


def export_report(args: argparse.Namespace) -> ExportReport:
    from ..frontend.onnx import export_onnx, run_reference
    from ..models import model_name, prepare_model
    from ..verify import reference_check

    progress = Progress(not args.json)
    output = Path(args.output)
    if output.exists() and output.is_dir():
        raise ValueError(f"{output} is a directory; give a file name such as model.onnx")
    progress("building the model" + (f" from {Path(args.checkpoint).name}" if args.checkpoint
                                     else ""))
    prepared = prepare_model(args.model, args.snet, args.rate, args.input_size, args.batch,
                             args.checkpoint, args.seed, out_stages(args))
    model, x = prepared.model, prepared.example
    progress(f"exporting to {output} (torch.onnx, dynamo)")
    proto = export_onnx(model, x, output)
    report = ExportReport(
        model=model_name(model) + (" backbone" if model.is_backbone else ""),
        snet=model.granularity_spec, input_shape=tuple(x.shape), path=str(output),
        megabytes=output.stat().st_size / 1e6,
        las_nodes=sum(n.domain == "ai.las" for n in proto.graph.node),
        opset=max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")),
        notes=list(prepared.notes))
    if not args.no_check:
        progress("checking the file in ONNX Runtime against PyTorch")
        check = reference_check(model, x, sample=False)
        results = run_reference(proto, check.input)
        count = len(check.outputs)
        agreement = check.compare(results[:count], results[count:])
        report.max_abs_error = agreement.max_abs_error
        report.mask_cells_differing = agreement.mask_cells_differing
    progress.done()
    return report


def run(args: argparse.Namespace) -> int:
    report = export_report(args)
    print(json.dumps(asdict(report), indent=1) if args.json else report.format())
    return 0


def register(sub) -> None:
    parser = subcommand(sub, "export-onnx",
                        "export a LAS-ResNet to ONNX with ai.las operators (runs in ONNX "
                        "Runtime as is; compiles sparse with `las compile model.onnx`)")
    add_model_args(parser)
    parser.add_argument("-o", "--output", required=True, help="the ONNX file to write")
    parser.add_argument("--no-check", action="store_true",
                        help="skip running the file in ONNX Runtime against PyTorch")
    add_json(parser)
    parser.set_defaults(func=run)
