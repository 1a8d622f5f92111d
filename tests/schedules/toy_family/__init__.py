"""A toy target family, the recipe of ``schedules/family.py`` followed from one folder: this
CPU under the name ``toy`` (targets ``{"kind": "llvm", "keys": ["toy", "cpu"]}``), reusing the
CPU family's code generation and rules, with a profile of its own (``profile.json``).

Nothing outside this folder is edited to add it: ``schedules.register_family(ToyFamily())``.
It records what the compiler asked it, so a test can tell the family was used, not the CPU
family that also serves the ``cpu`` key."""

from .family import ToyFamily

__all__ = ["ToyFamily"]
