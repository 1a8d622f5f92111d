"""Argument types and option groups shared by the ``las`` subcommands."""

from __future__ import annotations

import argparse


def input_size(text: str) -> tuple[int, int]:
    parts = text.lower().replace("x", ",").split(",")
    try:
        values = tuple(int(p) for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"input size {text!r} is not 'N' or 'HxW'") from None
    if len(values) == 1:
        values = values * 2
    if len(values) != 2 or min(values) < 1:
        raise argparse.ArgumentTypeError(f"input size {text!r} is not 'N' or 'HxW'")
    return values


def rate(text: str) -> float | str:
    """A masker calibration rate, or 'none' (keep the maskers)."""
    return text if text == "none" else fraction(text)


def fraction(text: str) -> float:
    """An activation rate in [0, 1]."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"rate {text!r} is not a number") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"rate {text} is not in [0, 1]")
    return value


def add_model_args(parser: argparse.ArgumentParser, checkpoint: bool = True) -> None:
    """--model, --snet, --rate, [--checkpoint], --input-size, --backbone, --outputs, --batch,
    --seed."""
    from ..models import DEFAULT_GRANULARITY, MODELS
    from ..models.prepare import DEFAULT_INPUT, DEFAULT_MODEL, DEFAULT_RATE

    recorded = " or what the checkpoint records" if checkpoint else ""
    parser.add_argument("--model", default=None, choices=sorted(MODELS),
                        help=f"architecture (default: {DEFAULT_MODEL}{recorded})")
    parser.add_argument("--snet", default=None,
                        help="S per stage ('4-4-2-1') or per block ('4-4-4-...-1') (default: "
                             f"{DEFAULT_GRANULARITY}{recorded}; one contradicting the "
                             "checkpoint's record is an error)")
    keep = "; with --checkpoint: keep its maskers" if checkpoint else ""
    parser.add_argument("--rate", type=rate, default=None,
                        help="calibrate maskers to this activation rate, 'none': keep them "
                             f"(default: {DEFAULT_RATE}{keep})")
    if checkpoint:
        parser.add_argument("--checkpoint", default=None,
                            help="our, torchvision or LASNet state_dict")
    parser.add_argument("--input-size", type=input_size, default=None,
                        help=f"N or HxW (default: {DEFAULT_INPUT[0]}x{DEFAULT_INPUT[1]}"
                             f"{recorded}; with --backbone 800x1333)")
    parser.add_argument("--backbone", action="store_true",
                        help="the detection backbone (LASNet's ResNet_sd): feature maps out, "
                             "no classifier; loads mmdetection checkpoints' backbone")
    parser.add_argument("--outputs", type=feature_levels, default="C2,C3,C4,C5",
                        help="with --backbone: the feature maps it returns")
    parser.add_argument("--batch", type=positive_int, default=1, help="images per run")
    parser.add_argument("--seed", type=int, default=0, help="seed of weights and images")


def feature_levels(text: str) -> tuple[int, ...]:
    """'C2,C3,C4,C5' -> the stages (1..4) whose outputs a backbone returns."""
    levels = [p.strip().upper() for p in text.split(",") if p.strip()]
    bad = [p for p in levels if p not in ("C2", "C3", "C4", "C5")]
    if bad or not levels:
        raise argparse.ArgumentTypeError(f"outputs {text!r}: name feature maps C2..C5, e.g. "
                                         "'C3,C4,C5'")
    return tuple(sorted({int(p[1]) - 1 for p in levels}))


def out_stages(args: argparse.Namespace) -> tuple[int, ...] | None:
    """The backbone's output stages, or None for the classifier."""
    return args.outputs if args.backbone else None


def add_json(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print the result as JSON")


class _Defaults(argparse.ArgumentDefaultsHelpFormatter):
    """``--help`` with each option's default, except where there is none to show."""

    def _get_help_string(self, action):
        text = action.help or ""
        if action.default is None or action.default is False \
                or action.default == argparse.SUPPRESS or "default:" in text:
            return text
        return f"{text} (default: %(default)s)"


def subcommand(sub, name: str, help_text: str) -> argparse.ArgumentParser:
    """A subcommand parser whose ``--help`` shows every option's default."""
    return sub.add_parser(name, help=help_text, description=help_text,
                          formatter_class=_Defaults)


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not a positive number")
    return value


def add_threads(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--threads", type=positive_int, default=None,
                        help="TVM runtime threads (default: TVM_NUM_THREADS, else the cores the "
                             "target was compiled for)")


class Progress:
    """``[  4.2 s] step`` lines on stderr: what a long command is doing, as it does it, and
    how long each step took (``... 3.1 s`` when the next one starts; :meth:`done` closes the
    last)."""

    def __init__(self, enabled: bool = True):
        import time

        self.enabled, self._clock = enabled, time.perf_counter
        self.start = self._last = self._clock()
        self._step: str | None = None

    def _close_step(self, now: float) -> None:
        import sys

        if self._step is not None:
            print(f"{'':10}... {now - self._last:.1f} s", file=sys.stderr, flush=True)

    def __call__(self, step: str) -> None:
        if self.enabled:
            import sys

            now = self._clock()
            self._close_step(now)
            print(f"[{now - self.start:6.1f} s] {step}", file=sys.stderr, flush=True)
            self._step, self._last = step, now

    def done(self) -> None:
        """Close the last step and print the total."""
        if self.enabled:
            import sys

            now = self._clock()
            self._close_step(now)
            print(f"[{now - self.start:6.1f} s] done", file=sys.stderr, flush=True)
            self._step = None


def add_weights(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--weights", default=None, metavar="FILE",
                        help="weights of a code-only artifact (`las compile "
                             "--weights-as-inputs`): a PyTorch state_dict or checkpoint file")


def add_board(parser: argparse.ArgumentParser, required: bool = False) -> None:
    """Where the artifact runs: on a board over TVM RPC (default: here)."""
    group = parser.add_argument_group(
        "board" if not required else "board (one of --rpc / --tracker)",
        "run on a board that serves TVM RPC (`python -m tvm.exec.rpc_server` there)")
    group.add_argument("--rpc", default=None, metavar="HOST:PORT",
                       help="the board's RPC server")
    group.add_argument("--tracker", default=None, metavar="HOST:PORT",
                       help="an RPC tracker the board registered with (with --key)")
    group.add_argument("--key", default=None, help="the board's device key at the tracker")
    group.add_argument("--timeout", type=float, default=60.0, metavar="SECONDS",
                       help="longest wait for any one step on the board")


def board_of(args: argparse.Namespace, required: bool = False):
    """The ``deploy.remote.Board`` the options name, or None to run here."""
    from ..deploy.remote import Board

    if args.rpc is None and args.tracker is None and not required:
        if args.key is not None:
            raise ValueError("--key goes with --tracker")
        return None
    return Board(args.rpc, args.tracker, args.key, args.timeout)


def load_with_weights(args: argparse.Namespace):
    """The artifact of ``args.artifact``, here or (``--rpc`` / ``--tracker``) loaded on a
    board; a code-only one gets ``args.weights`` (an error naming the option when it is
    missing)."""
    from ..deploy import load

    board = board_of(args)
    if board is not None:
        from ..deploy.remote import RemoteModel

        if args.weights is not None:
            raise ValueError("--weights is for code-only artifacts run here; a board takes "
                             "them from the artifact (`las compile --weights-beside`)")
        return RemoteModel(args.artifact, board)

    compiled = load(args.artifact, args.threads)
    if compiled.takes_weights and not (compiled.weights_set and args.weights is None):
        if args.weights is None:
            raise ValueError(f"{args.artifact} is code only (compiled with --weights-as-inputs): "
                             "give its weights with --weights FILE (a PyTorch state_dict)")
        import torch

        state = torch.load(args.weights, map_location="cpu", weights_only=True)
        if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
            state = state["state_dict"]
        compiled.set_weights(state)
    elif args.weights is not None:
        raise ValueError(f"{args.artifact} carries its weights; --weights is for code-only "
                         "artifacts")
    return compiled
