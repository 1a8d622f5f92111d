"""``las run`` and ``las bench``: use an exported artifact.

``las bench --vs dense`` times the artifact and the same architecture as a dense network in
ONNX Runtime and PyTorch eager (channels_last). Each peer runs in its own spawned interpreter:
thread pools of different frameworks in one process slow each other down severalfold. Dense
latency does not depend on weight values, so peers use random weights of the artifact's
architecture; they need the ``bench`` extra (onnxruntime, onnxscript).
"""

from __future__ import annotations

import multiprocessing
import os
import tempfile
from pathlib import Path

import numpy as np

from .timing import median_ms

PEERS = ("onnxruntime", "torch_eager")


def read_input(path: str | None, shape: list[int], seed: int = 0) -> np.ndarray:
    """An input batch: a ``.npy`` file (NCHW batch, CHW or HWC image), an image file
    (resized, ImageNet-normalised; needs Pillow), or seeded random data when ``path`` is None."""
    if path is None:
        return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"input file {file} does not exist")
    n, c, h, w = shape
    if file.suffix == ".npy":
        try:
            array = np.load(file, allow_pickle=False)
        except ValueError as err:
            raise ValueError(f"{file}: not a valid .npy array ({err})") from None
        if array.ndim == 3 and array.shape[-1] == c and array.shape[0] != c:
            array = array.transpose(2, 0, 1)  # HWC -> CHW
        if array.ndim == 3:
            array = np.broadcast_to(array[None], (n, *array.shape))
        return np.ascontiguousarray(array, dtype=np.float32)
    try:
        from PIL import Image
    except ImportError:
        raise ValueError(f"reading {file.suffix} images needs Pillow (pip install pillow); "
                         "or pass a .npy array") from None
    try:
        image = Image.open(file).convert("RGB").resize((w, h))
    except OSError as err:
        raise ValueError(f"{file}: cannot read the image ({err})") from None
    array = np.asarray(image, np.float32) / 255.0
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    array = ((array - mean) / std).transpose(2, 0, 1).astype(np.float32)
    return np.ascontiguousarray(np.broadcast_to(array[None], (n, c, h, w)))


def _dense_network(metadata: dict):
    import torch

    from .frontend import ExportableLASResNet
    from .models import build_model

    torch.manual_seed(0)
    model = build_model(metadata["model"], metadata["snet"],
                        num_classes=metadata["num_classes"]).eval()
    blocks = range(len(metadata["blocks"]))

    class Dense(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = ExportableLASResNet(model, static_blocks=blocks)

        def forward(self, x):
            return self.net(x)[0]

    return Dense().eval(), torch.randn(*metadata["input"]["shape"])


def _peer_child(peer: str, metadata: dict, repeats: int, threads: int) -> float:
    """Runs in a spawned process (fresh thread pools)."""
    import torch

    torch.set_num_threads(threads)
    net, x = _dense_network(metadata)
    if peer == "torch_eager":
        net = net.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            return median_ms(lambda: net(x), repeats, warmup=3)
    import onnxruntime as ort

    with tempfile.TemporaryDirectory(prefix="las-bench-") as tmp:
        path = Path(tmp, "dense.onnx")
        torch.onnx.export(net, (x,), str(path), dynamo=True, opset_version=18, verbose=False)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    feed = {session.get_inputs()[0].name: x.numpy()}
    return median_ms(lambda: session.run(None, feed), repeats, warmup=3)


def measure_peer(peer: str, metadata: dict, repeats: int = 20, threads: int = 2) -> float:
    """Median ms of the dense architecture in ``peer``, in a fresh process."""
    if peer not in PEERS:
        raise ValueError(f"unknown dense peer {peer!r}; choose from {PEERS}")
    if peer == "onnxruntime":
        try:
            import onnxruntime  # noqa: F401
            import onnxscript  # noqa: F401
        except ImportError:
            raise ValueError("the ONNX Runtime peer needs the bench extra: "
                             "pip install 'las-compiler[bench]'") from None
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "TVM_NUM_THREADS"):
        os.environ.setdefault(var, str(threads))
    context = multiprocessing.get_context("spawn")
    with context.Pool(1) as pool:
        return pool.apply(_peer_child, (peer, metadata, repeats, threads))
