"""ONNX in and out: the ``ai.las`` operator set (:mod:`.domain`), PyTorch -> ONNX
(:mod:`.export`), ONNX -> Relax (:mod:`.importer`) and the ONNX Runtime reference
(:mod:`.runtime`).

Each half imports only what it needs: the domain and the runtime reference need ``onnx``
(and ``onnxruntime``), the export torch and ONNX Script, the import TVM's compiler.
"""

_LAZY = {
    "export_onnx": "export", "to_onnx": "export",
    "import_onnx": "importer", "load_model": "importer",
    "run_reference": "runtime",
}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = sorted(_LAZY)
