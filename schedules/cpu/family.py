"""The CPU family: LLVM targets (x86_64 AVX2 / AVX-512, aarch64 NEON), one rule list for all
of them (the rules read vector width and registers from the target's features)."""

from __future__ import annotations

import functools

from ..family import TargetFamily


class CPUFamily(TargetFamily):
    name = "cpu"
    description = "llvm CPU targets (x86_64 AVX2/AVX-512, aarch64 NEON)"

    @functools.cache  # noqa: B019 - one family object per process; rules are stateless
    def rules(self) -> tuple:
        from .elementwise import Elementwise
        from .masker import MaskerRule
        from .patch_chain import PatchChain
        from .serial_scan import SerialScan
        from .tiled_conv import TiledConv

        return (TiledConv(), PatchChain(), MaskerRule(), SerialScan(), Elementwise())

    def foreign_rules(self) -> list:
        from tvm.s_tir import dlight

        from .generic import Generic
        from .window_pool import WindowPool

        return [WindowPool(), dlight.cpu.GEMV(), dlight.cpu.Reduction(), Generic()]

    def hardware(self, target):
        """This machine's profile (calibrated when available) for a CPU target of this
        machine's architecture, with the vector width of the target's features (code built
        for another CPU of the same architecture runs its own tiles); the Jetson TX2's
        Cortex-A57 cluster for an aarch64 cross target."""
        from ...predictor.hardware import HardwareError
        from ...predictor.profiles import BUILTIN_NAMES, get_hardware, this_machine
        from ...target import architecture, target_features

        triple = str(target.attrs.get("mtriple", "") or "")
        if not triple or architecture(triple) == architecture():
            return this_machine(target_features(target))
        if triple.startswith("aarch64"):
            return get_hardware("tx2-cpu")
        raise HardwareError(f"no hardware profile for CPU target {triple}; pass one "
                            f"explicitly (built in: {', '.join(BUILTIN_NAMES)})")


FAMILY = CPUFamily()
