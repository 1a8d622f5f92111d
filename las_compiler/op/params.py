"""Kernel parameters: BN folding and weight packing, written once for two array backends.

Every conv kernel takes BN-folded weights packed with 16 output channels innermost
(``[K/16][kh][kw][C][16]``): one 16-channel slice is two AVX2 registers (one AVX-512 register),
so the micro-kernel's weight loads are contiguous and its output-channel loop vectorises without
shuffles. Bias is the folded BN shift.

The functions take an array namespace ``xp``: :data:`NUMPY` computes the prepared weights at
compile time (weights baked into the artifact), ``transform.weight_ops.RelaxArrays`` emits the
same steps as Relax ops on weight *inputs* (an artifact that takes its weights at run time:
``relax.transform.LiftTransformParams`` moves them into ``main_transform_params``).
"""

from __future__ import annotations

import numpy as np

from ..register_tile import CHANNEL_BLOCK  # one definition, shared with the rules


def is_weight(name: str) -> bool:
    """Whether a kernel parameter (buffer) of this name holds weights: every kernel names
    them ``w``, or ``w1``..``w3`` for the convs of a fused chain. Rules that treat weights
    differently (a GPU rule stages them in shared memory) ask this, not the spelling."""
    return name == "w" or (name[:1] == "w" and name[1:].isdigit())


class NumpyArrays:
    """The array operations the preparation uses, on numpy float32 arrays."""

    @staticmethod
    def shape(a) -> tuple[int, ...]:
        return tuple(int(d) for d in a.shape)

    @staticmethod
    def reshape(a, shape):
        return np.reshape(a, shape)

    @staticmethod
    def transpose(a, axes):
        return np.ascontiguousarray(np.transpose(a, axes))

    @staticmethod
    def concat(arrays, axis: int = 0):
        return np.concatenate([np.asarray(a, np.float32) for a in arrays], axis=axis)

    @staticmethod
    def zeros(shape):
        return np.zeros(shape, np.float32)

    @staticmethod
    def broadcast(a, shape):
        return np.ascontiguousarray(np.broadcast_to(a, shape))

    @staticmethod
    def scale_shift(weight, gamma, beta, mean, var, eps: float):
        scale = gamma / np.sqrt(var + eps)
        return ((weight * scale[:, None, None, None]).astype(np.float32),
                (beta - mean * scale).astype(np.float32))


NUMPY = NumpyArrays()


def fold_bn(weight, gamma, beta, mean, var, eps: float, xp=NUMPY):
    """Eval-mode BN folded into the preceding (bias-free) conv: (weight OIHW, bias), float32."""
    return xp.scale_shift(weight, gamma, beta, mean, var, eps)


def pack_weight(weight, block: int = CHANNEL_BLOCK, xp=NUMPY):
    """OIHW -> [O/block][H][W][I][block] (1x1 convs: [O/block][I][block] after squeezing)."""
    out_c, in_c, kh, kw = xp.shape(weight)
    if out_c % block:
        raise ValueError(f"{out_c} output channels are not a multiple of {block}")
    packed = xp.transpose(xp.reshape(weight, (out_c // block, block, in_c, kh, kw)),
                          (0, 3, 4, 2, 1))
    if kh == kw == 1:
        packed = xp.reshape(packed, (out_c // block, in_c, block))
    return packed


def with_masker_tile(weight, bias, masker_weight, masker_bias, block: int = CHANNEL_BLOCK,
                     xp=NUMPY):
    """conv1's (OIHW weight, bias) with one more ``block``-channel tile holding the masker's
    two output channels (1x1, ``masker_weight`` (2, C)) and zeros: the parameters of
    :func:`las_compiler.op.masker.masker_conv1x1` once packed."""
    in_c = xp.shape(weight)[1]
    extra_w = xp.concat([xp.reshape(masker_weight, (2, in_c, 1, 1)),
                         xp.zeros((block - 2, in_c, 1, 1))])
    extra_b = xp.concat([xp.reshape(masker_bias, (2,)), xp.zeros((block - 2,))])
    return xp.concat([weight, extra_w]), xp.concat([bias, extra_b])


def linear_as_conv1x1(weight, bias, block: int = CHANNEL_BLOCK, xp=NUMPY):
    """A classifier's ``x @ weight + bias`` (weight (C, K)) as a 1x1 conv's (OIHW weight,
    bias) with output channels zero-padded to a multiple of ``block``."""
    c, k = xp.shape(weight)
    padded = -(-k // block) * block
    w_oi = xp.reshape(xp.transpose(weight, (1, 0)), (k, c, 1, 1))
    b = xp.reshape(xp.broadcast(bias, (1, k)), (k,))
    if padded != k:
        w_oi = xp.concat([w_oi, xp.zeros((padded - k, c, 1, 1))])
        b = xp.concat([b, xp.zeros((padded - k,))])
    return w_oi, b
