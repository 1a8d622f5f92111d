"""A target family: everything the compiler, the tuner, the CLI and the predictor ask about a
kind of target, in one object.

Why one object: before it, supporting CUDA meant a branch on ``"cuda"`` in the pass order, the
compiler, the CLI, the target parser, the predictor and the artifact writer. Now each family
lives in its own folder (``schedules/cpu/``, ``schedules/cuda/``) and hands out one
:class:`TargetFamily`; the rest of the code asks :func:`las_compiler.schedules.family_of` and
never names a family.

A family is chosen by the target's keys (TVM gives ``llvm`` targets ``("cpu",)`` and CUDA
targets ``("cuda", "gpu")``; a target JSON may give its own, e.g. ``["toy", "cpu"]``): the
first key that names a registered family wins, so a family can take over targets of a kind an
earlier family also serves.

Adding a family (the recipe the README's architecture section repeats):

1. a folder with its rules (dlight ``ScheduleRule`` s, :class:`~.base.LASRule` for our kernels)
   and a module that subclasses :class:`TargetFamily`, overriding what differs from the defaults
   (an LLVM CPU backend, no device code, no toolchain, no per-block limits);
2. ``schedules.register_family(MyFamily())`` (the built-in ones are listed in
   ``schedules/__init__.py``);
3. a predictor profile: :meth:`TargetFamily.hardware` returns it (a built-in name, a profile
   JSON, or one built from the target).

The runtime side (``deploy/``) must not import this: an artifact records what it needs to
run (``metadata["device"]``, the CPU flags of its host code) so loading needs only the TVM
runtime.
"""

from __future__ import annotations


class TargetFamily:
    """One kind of target. Subclasses set :attr:`name` and :attr:`description` and implement
    :meth:`rules`; every other method has the CPU-like default that says "nothing extra"."""

    #: the target key that selects the family (see the module docstring)
    name: str = ""
    #: what it compiles for, as error messages list it
    description: str = ""
    #: the TVM runtime device its kernels run on (``tvm.device(runtime_device, 0)``)
    runtime_device: str = "cpu"
    #: per-patch chains can exceed a per-block resource (a GPU's shared memory), so
    #: ``auto`` must schedule them before choosing them
    block_limited: bool = False
    #: masker chains may link blocks on different grids (``masker_chain.links``'
    #: ``across_grids``): where a masker costs its read of the map. The CPU rule's pooling of
    #: only the changed cells (a predicate per pixel) measured slower than a whole read.
    masker_links_across_grids: bool = False

    def rules(self) -> tuple:
        """Our rules for our kernels (``LASRule`` s), most specific first."""
        raise NotImplementedError

    def foreign_rules(self) -> list:
        """Rules for the legalised Relax operators around our kernels (pooling, classifier,
        reshapes), dlight's as TVM applies them for this kind of target."""
        return []

    def backend(self):
        """TVM's Relax backend for the family: an object with ``legalize_passes``,
        ``dataflow_lower_passes`` and ``finalize_passes`` (each ``target -> [Pass]``)."""
        from tvm.relax.backend.cpu_generic import pipeline

        return pipeline

    def tir_pipeline(self, target) -> str:
        """The ``tir_pipeline`` argument of ``tvm.compile`` (the name of a registered one)."""
        return "default"

    def complete(self, target):
        """``target`` with what a build for it needs and the user left out (a GPU's host CPU,
        say); ``ValueError`` for a target the family's rules do not serve."""
        return target

    def toolchain_problem(self, target) -> str | None:
        """What is missing on this machine to build device code for ``target`` (checked
        before a compile starts), or None."""
        return None

    def device_code_packer(self, target):
        """The ``fpack_imports`` of the export (device binaries into the library), or None."""
        return None

    def describe_device_code(self, summary: dict) -> str:
        """One line on the device code an export packed (its packer's summary)."""
        return ""

    def hardware(self, target):
        """The predictor's profile (``predictor.hardware.Hardware``) of the machine code for
        ``target`` runs on; ``HardwareError`` where the family knows none."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<target family {self.name}: {self.description}>"
