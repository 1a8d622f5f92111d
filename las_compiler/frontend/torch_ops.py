"""A LAS network's dynamic blocks as one ``torch.library`` custom op each (``las`` namespace).

``torch.export`` keeps a custom op as one graph node, so the compiler sees "a sparse
bottleneck with its masker" instead of a data-dependent tangle of pooling, compares,
``nonzero`` and index_put that no frontend converts well. The eager implementation computes
the same numbers as the model's masked forward (it is what ``ExportedProgram.module()`` runs);
the fake implementation only gives shapes.

The argument names are those of :class:`las_compiler.las_ops.SparseBottleneck` (conv fields
flattened as ``conv1_weight``, ``conv1_gamma``, ...): the converter maps them by name. Tensors
keep PyTorch's NCHW convention; the compiler changes layout, not the frontend.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..geometry import patch_grid
from ..models.granularity import conv_output_size
from ..models.masker import pool_to_grid, upsample_mask


def _bn(h, mean, var, gamma, beta, eps):
    return F.batch_norm(h, mean, var, gamma, beta, training=False, eps=eps)


@torch.library.custom_op("las::sparse_bottleneck", mutates_args=())
def sparse_bottleneck(
    x: torch.Tensor, identity: torch.Tensor, masker_weight: torch.Tensor,
    masker_bias: torch.Tensor,
    conv1_weight: torch.Tensor, conv1_gamma: torch.Tensor, conv1_beta: torch.Tensor,
    conv1_mean: torch.Tensor, conv1_var: torch.Tensor,
    conv2_weight: torch.Tensor, conv2_gamma: torch.Tensor, conv2_beta: torch.Tensor,
    conv2_mean: torch.Tensor, conv2_var: torch.Tensor,
    conv3_weight: torch.Tensor, conv3_gamma: torch.Tensor, conv3_beta: torch.Tensor,
    conv3_mean: torch.Tensor, conv3_var: torch.Tensor,
    granularity: int, stride: int, eps: float, pipeline: str, name: str,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(relu(identity + mask * bn3(conv3(relu(bn2(conv2(relu(bn1(conv1(x))))))))), mask)``.

    The mask is the eval-mode masker's ``logit0 >= logit1`` per (N, gh, gw) patch cell; the
    residual branch is a ResNet-v1.5 bottleneck (stride on the 3x3 conv) with eval-mode BN
    (gamma, beta, running mean, running var) so the compiler can fold it. ``pipeline`` and
    ``name`` only travel to the compiler.
    """
    del pipeline, name
    logits = F.conv2d(pool_to_grid(x, granularity, stride), masker_weight, masker_bias)
    mask = logits[:, 0] >= logits[:, 1]
    h = torch.relu(_bn(F.conv2d(x, conv1_weight), conv1_mean, conv1_var, conv1_gamma,
                       conv1_beta, eps))
    h = torch.relu(_bn(F.conv2d(h, conv2_weight, stride=stride, padding=1), conv2_mean,
                       conv2_var, conv2_gamma, conv2_beta, eps))
    h = _bn(F.conv2d(h, conv3_weight), conv3_mean, conv3_var, conv3_gamma, conv3_beta, eps)
    gate = upsample_mask(mask.to(h.dtype), h.shape[2], h.shape[3])
    return torch.relu(identity + h * gate), mask


@sparse_bottleneck.register_fake
def _sparse_bottleneck_fake(x, identity, *weights_and_attrs):
    granularity, stride = weights_and_attrs[-5:-3]
    grid = patch_grid(conv_output_size(x.shape[2], stride), conv_output_size(x.shape[3], stride),
                      granularity)
    return (identity.new_empty(identity.shape),
            x.new_empty((x.shape[0], *grid), dtype=torch.bool))
