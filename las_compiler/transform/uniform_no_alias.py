"""UniformNoAlias: give the VM's generated host functions ``tirx.noalias``, so every PrimFunc
of the module carries it.

TVM 0.27's LLVM codegen (``CodeGenLLVM::DeclareFunctionInternal``) sets its ``is_restricted_``
flag while *declaring* the module's functions, all of them before the first is emitted, so the
last-declared function's ``tirx.noalias`` decides whether every function's buffer pointers are
``noalias``. Relax's shape lowering adds ``shape_func`` host functions without the attribute;
when one of them is declared last (a one-block module; any network whose function names sort
that way), every kernel loses ``noalias`` and LLVM reloads operands after each store: measured
2-3x slower kernels (gather+conv3x3 0.39 -> 0.77 ms on a stage-1 block here).

Sound for the functions it marks: a ``shape_func`` reads and writes one buffer (the VM's
shape heap), so it has no pair of pointers that could alias. A function without the attribute
and with several buffer parameters is left alone and reported, since nothing says its
buffers are distinct.
"""

from __future__ import annotations

import tvm

NO_ALIAS = "tirx.noalias"


def _pointer_params(func: tvm.tirx.PrimFunc) -> int:
    return sum(1 for p in func.params if getattr(p, "shape", None) is not None
               or str(p.dtype) == "handle")


@tvm.transform.module_pass(opt_level=0, name="UniformNoAlias")
class UniformNoAlias:
    def transform_module(self, mod: tvm.IRModule, _ctx) -> tvm.IRModule:
        unsafe = []
        for gvar, func in list(mod.functions_items()):
            if not isinstance(func, tvm.tirx.PrimFunc) or (
                    func.attrs is not None and func.attrs.get(NO_ALIAS)):
                continue
            if _pointer_params(func) <= 1:
                mod[gvar] = func.with_attr(NO_ALIAS, True)
            else:
                unsafe.append(gvar.name_hint)
        if unsafe:
            import warnings

            warnings.warn(f"PrimFuncs without {NO_ALIAS} and several buffers: {unsafe}; TVM's "
                          "LLVM codegen may drop noalias for every kernel of this module",
                          stacklevel=2)
        return mod
