"""Dense peers of a compiled LAS network: the same architecture, every block dense, in ONNX
Runtime, OpenVINO (CPU plugin) or PyTorch eager (channels_last).

Each peer runs in its own spawned interpreter: thread pools of different frameworks in one
process slow each other down severalfold. Dense latency does not depend on weight values, so
peers use random weights of the artifact's architecture; ONNX Runtime needs the ``bench``
extra (onnxruntime, onnxscript), OpenVINO the ``bench`` extra's ``openvino``. Which of ONNX
Runtime and OpenVINO is faster depends on the CPU, so speed goals hold against the best of them.
``las bench --vs dense`` and ``benchmarks/e2e.py`` use these.
"""

from __future__ import annotations

import multiprocessing
import os
import tempfile
from pathlib import Path

from .timing import median_ms

PEERS = ("onnxruntime", "openvino", "torch_eager")


def dense_network(model):
    """``model`` with every block static (dense), returning only its output (the logits, or
    a backbone's feature maps): a module."""
    import torch

    from .frontend import ExportableLASResNet

    outputs = len(model.output_names)

    class DenseNetwork(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = ExportableLASResNet(model,
                                           static_blocks=range(len(list(model.dynamic_blocks()))))

        def forward(self, x):
            out = self.net(x)
            return out[0] if outputs == 1 else out[:outputs]

    return DenseNetwork().eval()


def ort_session(path: str | os.PathLike, threads: int = 2):
    """An ONNX Runtime CPU session: ``threads`` intra-op threads, 1 inter-op, all graph
    optimisations."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def onnx_session(net, x, threads: int = 2):
    """``net`` exported to ONNX (dynamo exporter, opset 18) and loaded in ONNX Runtime."""
    import torch

    with tempfile.TemporaryDirectory(prefix="las-onnx-") as tmp:
        path = Path(tmp, "dense.onnx")
        torch.onnx.export(net, (x,), str(path), dynamo=True, opset_version=18, verbose=False)
        return ort_session(path, threads)  # reads the external weights now; tmp may go


def openvino_model(net, x, threads: int = 2):
    """``net`` exported to ONNX as for :func:`onnx_session`, compiled by OpenVINO's CPU plugin
    the way its latency guide says: f32 (no bf16/f16 inference precision), ``threads``
    inference threads, the LATENCY hint (one stream). Returns a callable taking a numpy input
    and returning the list of outputs."""
    import openvino as ov
    import torch

    core = ov.Core()
    config = {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY",
              "INFERENCE_PRECISION_HINT": "f32", "NUM_STREAMS": 1}
    with tempfile.TemporaryDirectory(prefix="las-openvino-") as tmp:
        path = Path(tmp, "dense.onnx")
        torch.onnx.export(net, (x,), str(path), dynamo=True, opset_version=18, verbose=False)
        compiled = core.compile_model(core.read_model(str(path)), "CPU", config)
    request = compiled.create_infer_request()

    def run(array):
        request.infer([array])
        return [request.get_output_tensor(i).data.copy()
                for i in range(len(compiled.outputs))]

    return run


def _architecture(metadata: dict):
    import torch

    from .models import build_model

    torch.manual_seed(0)
    out_stages = metadata.get("out_stages")
    options = {"out_stages": out_stages} if out_stages else {
        "num_classes": metadata["num_classes"]}
    model = build_model(metadata["model"], metadata["snet"], **options).eval()
    return dense_network(model), torch.randn(*metadata["input"]["shape"])


def _peer_child(peer: str, metadata: dict, repeats: int, threads: int) -> float:
    """Runs in a spawned process (fresh thread pools)."""
    import torch

    torch.set_num_threads(threads)
    net, x = _architecture(metadata)
    if peer == "torch_eager":
        net = net.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            return median_ms(lambda: net(x), repeats, warmup=3)
    if peer == "openvino":
        run = openvino_model(net, x, threads)
        array = x.numpy()
        return median_ms(lambda: run(array), repeats, warmup=3)
    session = onnx_session(net, x, threads)
    feed = {session.get_inputs()[0].name: x.numpy()}
    return median_ms(lambda: session.run(None, feed), repeats, warmup=3)


def measure_dense_peer(peer: str, metadata: dict, repeats: int = 20, threads: int = 2) -> float:
    """Median ms of the artifact's architecture, dense, in ``peer``, in a fresh process."""
    if peer not in PEERS:
        raise ValueError(f"unknown dense peer {peer!r}; choose from {PEERS}")
    if peer == "onnxruntime":
        try:
            import onnxruntime  # noqa: F401
            import onnxscript  # noqa: F401
        except ImportError:
            raise ValueError("the ONNX Runtime peer needs the bench extra: "
                             "pip install 'las-compiler[bench]'") from None
    if peer == "openvino":
        try:
            import onnxscript  # noqa: F401
            import openvino  # noqa: F401
        except ImportError:
            raise ValueError("the OpenVINO peer needs the bench extra: "
                             "pip install 'las-compiler[bench]'") from None
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "TVM_NUM_THREADS"):
        os.environ.setdefault(var, str(threads))
    context = multiprocessing.get_context("spawn")
    with context.Pool(1) as pool:
        return pool.apply(_peer_child, (peer, metadata, repeats, threads))
