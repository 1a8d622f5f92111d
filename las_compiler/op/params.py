"""Kernel parameters: BN folding and weight packing (numpy only).

Every conv kernel takes BN-folded weights packed with 16 output channels innermost
(``[K/16][kh][kw][C][16]``): one 16-channel slice is two AVX2 registers (one AVX-512 register),
so the micro-kernel's weight loads are contiguous and its output-channel loop vectorises without
shuffles. Bias is the folded BN shift.
"""

from __future__ import annotations

import numpy as np

CHANNEL_BLOCK = 16


def fold_bn(weight: np.ndarray, gamma: np.ndarray, beta: np.ndarray, mean: np.ndarray,
            var: np.ndarray, eps: float) -> tuple[np.ndarray, np.ndarray]:
    """Eval-mode BN folded into the preceding (bias-free) conv: (weight OIHW, bias), float32."""
    scale = gamma / np.sqrt(var + eps)
    return ((weight * scale[:, None, None, None]).astype(np.float32),
            (beta - mean * scale).astype(np.float32))


def pack_weight(weight: np.ndarray, block: int = CHANNEL_BLOCK) -> np.ndarray:
    """OIHW -> [O/block][H][W][I][block] (1x1 convs: [O/block][I][block] after squeezing)."""
    out_c, in_c, kh, kw = weight.shape
    if out_c % block:
        raise ValueError(f"{out_c} output channels are not a multiple of {block}")
    packed = weight.reshape(out_c // block, block, in_c, kh, kw).transpose(0, 3, 4, 2, 1)
    if kh == kw == 1:
        packed = packed.reshape(out_c // block, in_c, block)
    return np.ascontiguousarray(packed, dtype=np.float32)


def with_masker_tile(weight: np.ndarray, bias: np.ndarray, masker_weight: np.ndarray,
                     masker_bias: np.ndarray, block: int = CHANNEL_BLOCK):
    """conv1's (OIHW weight, bias) with one more ``block``-channel tile holding the masker's
    two output channels (1x1, ``masker_weight`` (2, C)) and zeros: the parameters of
    :func:`las_compiler.op.masker.masker_conv1x1` once packed."""
    out_c, in_c = weight.shape[:2]
    extra_w = np.zeros((block, in_c, 1, 1), np.float32)
    extra_w[:2, :, 0, 0] = masker_weight.reshape(2, in_c)
    extra_b = np.zeros(block, np.float32)
    extra_b[:2] = masker_bias
    return (np.concatenate([weight.astype(np.float32), extra_w]),
            np.concatenate([bias.astype(np.float32), extra_b]))
