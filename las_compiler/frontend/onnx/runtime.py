"""An ONNX file run by ONNX Runtime: the reference a model compiled from ONNX is checked against.

ONNX Runtime does not know ``ai.las``; it runs each ``SparseBottleneck`` through the file's
reference body (:func:`.domain.reference_function`), i.e. densely, with the mask applied as
the official LASNet code applies it. Same outputs and masks as the sparse compiled module,
up to float rounding (a mask cell whose two logits tie within rounding may differ).
"""

from __future__ import annotations

import os

import numpy as np
import onnx

from . import domain


def session(model: onnx.ModelProto | str | os.PathLike, threads: int = 1):
    """An ONNX Runtime CPU session of the file, with our op's body attached if it lacks one
    (a file written by another tool)."""
    try:
        import onnxruntime as ort
    except ImportError as err:
        raise RuntimeError("running an ONNX file needs onnxruntime (pip install onnxruntime)"
                           ) from err
    from .importer import load_model

    proto = load_model(model)
    if any(n.domain == domain.DOMAIN for n in proto.graph.node) and \
            not domain.has_reference(proto):
        proto = onnx.ModelProto.FromString(proto.SerializeToString())
        domain.attach_reference(proto)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(proto.SerializeToString(), options,
                                providers=["CPUExecutionProvider"])


def run_reference(model, x: np.ndarray, threads: int = 1) -> list[np.ndarray]:
    """Every graph output of the file for image batch ``x``, in the file's order."""
    sess = session(model, threads)
    (name,) = [i.name for i in sess.get_inputs()]
    return sess.run(None, {name: np.ascontiguousarray(x, dtype=np.float32)})
