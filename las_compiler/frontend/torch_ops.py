"""The LAS network's dynamic parts as ``torch.library`` custom ops in the ``las`` namespace.

``torch.export`` keeps a custom op as one graph node, so the compiler sees "masker" and
"sparse bottleneck" instead of a data-dependent tangle of pooling, compares, ``nonzero`` and
index_put that no frontend converts well. The eager implementations compute the same numbers as
the model's masked forward (they are what ``ExportedProgram.module()`` runs); the fake
implementations only give shapes.

Both ops keep PyTorch's NCHW convention; the compiler changes layout, not the frontend.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..models.granularity import conv_output_size, patch_grid
from ..models.masker import upsample_mask


def _pool(x: torch.Tensor, granularity: int, stride: int) -> torch.Tensor:
    window = granularity * stride
    return x if window == 1 else F.avg_pool2d(x, window, stride=window, ceil_mode=True)


@torch.library.custom_op("las::masker", mutates_args=())
def masker(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, granularity: int,
           stride: int) -> torch.Tensor:
    """Eval-mode patch mask of a block: (N, gh, gw) bool, ``logit0 >= logit1`` per cell."""
    logits = F.conv2d(_pool(x, granularity, stride), weight, bias)
    return logits[:, 0] >= logits[:, 1]


@masker.register_fake
def _masker_fake(x, weight, bias, granularity, stride):
    grid = patch_grid(conv_output_size(x.shape[2], stride), conv_output_size(x.shape[3], stride),
                      granularity)
    return x.new_empty((x.shape[0], *grid), dtype=torch.bool)


def _bn(h, mean, var, gamma, beta, eps):
    return F.batch_norm(h, mean, var, gamma, beta, training=False, eps=eps)


@torch.library.custom_op("las::sparse_bottleneck", mutates_args=())
def sparse_bottleneck(
    x: torch.Tensor, identity: torch.Tensor, mask: torch.Tensor,
    w1: torch.Tensor, g1: torch.Tensor, b1: torch.Tensor, m1: torch.Tensor, v1: torch.Tensor,
    w2: torch.Tensor, g2: torch.Tensor, b2: torch.Tensor, m2: torch.Tensor, v2: torch.Tensor,
    w3: torch.Tensor, g3: torch.Tensor, b3: torch.Tensor, m3: torch.Tensor, v3: torch.Tensor,
    granularity: int, stride: int, eps: float,
) -> torch.Tensor:
    """``relu(identity + mask * bn3(conv3(relu(bn2(conv2(relu(bn1(conv1(x)))))))))``.

    The residual branch of a ResNet-v1.5 bottleneck (stride on the 3x3 conv) counted only on
    the active patches of ``mask`` (N, gh, gw); BN parameters are eval-mode statistics
    (gamma, beta, running mean, running var) so the compiler can fold them.
    """
    h = torch.relu(_bn(F.conv2d(x, w1), m1, v1, g1, b1, eps))
    h = torch.relu(_bn(F.conv2d(h, w2, stride=stride, padding=1), m2, v2, g2, b2, eps))
    h = _bn(F.conv2d(h, w3), m3, v3, g3, b3, eps)
    gate = upsample_mask(mask.to(h.dtype), granularity, h.shape[2], h.shape[3])
    return torch.relu(identity + h * gate)


@sparse_bottleneck.register_fake
def _sparse_bottleneck_fake(x, identity, mask, *weights_and_attrs):
    return identity.new_empty(identity.shape)
