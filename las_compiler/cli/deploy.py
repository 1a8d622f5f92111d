"""``las deploy``: run an artifact on a board over TVM RPC, check it, time it, and say what the
latency predictor expected there."""

from __future__ import annotations

import argparse
import json
import time

from .common import Progress, add_board, add_json, board_of, positive_int, subcommand


def predicted_ms(metadata: dict) -> tuple[float | None, str]:
    """The predictor's latency for the artifact's network on its target's profile, and the
    profile's name (or None and why not)."""
    from ..compiler import resolve_target
    from ..predictor.network import predict_network
    from ..schedules import check_target

    target = resolve_target(metadata["target"])
    try:
        hardware = check_target(target).hardware(target)
    except ValueError as err:
        return None, str(err)
    model = metadata["model"]
    n, _, h, w = metadata["input"]["shape"]
    blocks = metadata["blocks"]
    try:
        prediction = predict_network(
            hardware, model.removesuffix(" backbone"), [b["S"] for b in blocks],
            float(metadata.get("rate") or 0.5), h, w, n,
            pipelines=sorted({b["pipeline"] for b in blocks} - {"static"}) or ("dense",),
            backbone=any(not str(o).startswith(("logits", "mask:"))
                         for o in metadata["outputs"]))
    except (KeyError, ValueError) as err:
        return None, f"no prediction for {model} ({err})"
    return prediction.dynamic_ms, hardware.name


def deploy(args: argparse.Namespace) -> int:
    from ..deploy.remote import RemoteError, RemoteModel

    board = board_of(args, required=True)
    progress = Progress(not args.json)
    progress(f"uploading and loading {args.artifact} on the {board}")
    start = time.perf_counter()
    with RemoteModel(args.artifact, board) as remote:
        loaded_s = time.perf_counter() - start
        check = remote.check_data
        if check is None:
            raise RemoteError(f"{args.artifact} has no check data (check.npz): export it "
                              "again with this version")
        progress("running the stored check input on the board")
        out, masks = remote.run_with_masks(check.input)
        agreement = check.compare(out if isinstance(out, tuple) else [out], masks)
        progress(f"timing on the board ({args.repeats} runs)")
        timing = remote.benchmark(check.input, repeat=args.repeats)
    progress("predicting the latency for the target's profile")
    predicted, profile = predicted_ms(remote.metadata)
    progress.done()
    passed = agreement.masks_equal and \
        agreement.max_abs_error <= 1e-4 * max(agreement.output_scale, 1.0)
    result = {"board": str(board), "artifact": str(args.artifact),
              "target": remote.metadata["target"], "load_seconds": loaded_s,
              "check_passed": passed, "max_abs_error": agreement.max_abs_error,
              "output_scale": agreement.output_scale,
              "mask_cells_differing": agreement.mask_cells_differing,
              "activation": list(agreement.activation),
              "measured_ms": timing["median_ms"], "runs": timing["runs"],
              "predicted_ms": predicted, "profile": profile}
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        from ..target import describe_target

        meta = remote.metadata
        print(f"{meta['model']}  S_net={meta['snet']}  input={meta['input']['shape']}  "
              f"target={describe_target(meta['target'])}")
        print(f"board: {board} (upload and load {loaded_s:.1f} s)")
        masks = "masks identical" if agreement.masks_equal else \
            f"masks differ at {agreement.mask_cells_differing} patch cells"
        print(f"check against PyTorch's stored outputs: max |diff| {agreement.max_abs_error:.2e} "
              f"(outputs up to {agreement.output_scale:.3g}), {masks}: "
              f"{'passed' if passed else 'FAILED'}")
        estimate = f"{predicted:.2f} ms predicted ({profile} profile)" if predicted is not None \
            else f"no prediction: {profile}"
        print(f"latency on the board: {timing['median_ms']:.2f} ms measured (median of "
              f"{timing['runs']}), {estimate}")
    return 0 if passed else 1


def register(sub) -> None:
    parser = subcommand(sub, "deploy", "run an artifact on a board over TVM RPC: check it "
                                       "against its stored outputs, time it, compare with "
                                       "the predictor")
    parser.add_argument("artifact", help="directory written by `las compile`")
    add_board(parser, required=True)
    parser.add_argument("--repeats", type=positive_int, default=10, help="timed runs")
    add_json(parser)
    parser.set_defaults(func=deploy)
