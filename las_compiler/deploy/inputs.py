"""Input batches for a compiled model: a ``.npy`` array, an image file, or seeded noise."""

from __future__ import annotations

from pathlib import Path

import numpy as np

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def read_input(path: str | None, shape: list[int], seed: int = 0) -> np.ndarray:
    """An NCHW float32 batch of ``shape``: a ``.npy`` file (NCHW batch, CHW or HWC image), an
    image file (resized, ImageNet-normalised; needs Pillow), or seeded random data when
    ``path`` is None."""
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
    array = ((array - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)).transpose(2, 0, 1)
    return np.ascontiguousarray(np.broadcast_to(array[None].astype(np.float32), (n, c, h, w)))
