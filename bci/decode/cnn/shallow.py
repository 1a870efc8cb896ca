"""Shallow ConvNet (Schirrmeister et al. 2017, Hum. Brain Mapp. 38(11) 5391), the learned
analogue of filter-bank CSP: temporal filter, spatial filter, square, mean, log.

Layers: 40 temporal filters, 40 spatial filters over all channels, batch norm, squaring, average
pooling, a safe log, dropout and a linear classifier. The paper's lengths are at 250 Hz: temporal
kernel 25 (100 ms), pooling 75 (300 ms) with stride 15 (60 ms); here they keep their duration at
any rate.

There is no nonlinearity between the temporal and the spatial filter, so together they are one
space-time filter; the paper factorizes it to have fewer weights. The weights are kept factorized
(that is the model), but the forward pass multiplies them into the one filter first and runs a
single convolution: the same function at ``n_channels`` times less arithmetic than two
convolutions, in training as in inference.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional


class ShallowConvNet(nn.Module):
    """Shallow ConvNet.

    Parameters
    ----------
    n_channels, n_samples : int
        Input shape: channels, and samples per window.
    n_classes : int
        Outputs (logits).
    sfreq : float
        Sampling rate of the input, Hz; sets the kernel and pooling lengths.
    n_filters : int
        Temporal and spatial filters (40 in the paper).
    dropout : float
        Dropout probability before the classifier (0.5 in the paper).

    The input is a float32 tensor of shape (batch, n_channels, n_samples); the output, logits of
    shape (batch, n_classes). The classifier is ``head``.
    """

    def __init__(self, n_channels: int, n_samples: int, n_classes: int, sfreq: float, *,
                 n_filters: int = 40, dropout: float = 0.5) -> None:  # fmt: skip
        super().__init__()
        kernel = max(2, round(25 * sfreq / 250))
        self.pool, self.stride = max(1, round(75 * sfreq / 250)), max(1, round(15 * sfreq / 250))
        n_steps = (n_samples - kernel + 1 - self.pool) // self.stride + 1
        if n_steps < 1:
            raise ValueError(
                f"ShallowConvNet needs windows of at least {kernel + self.pool - 1} samples at "
                f"{sfreq:g} Hz, got n_samples={n_samples}; use a longer window."
            )
        self.temporal_weight = nn.Parameter(torch.empty(n_filters, kernel))
        self.temporal_bias = nn.Parameter(torch.zeros(n_filters))
        self.spatial_weight = nn.Parameter(torch.empty(n_filters, n_filters, n_channels))
        # Glorot initialization with the fans of the paper's two convolutions
        nn.init.xavier_uniform_(self.temporal_weight.view(n_filters, 1, 1, kernel))
        nn.init.xavier_uniform_(self.spatial_weight.view(n_filters, n_filters, n_channels, 1))
        self.bn = nn.BatchNorm1d(n_filters)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(n_filters * n_steps, n_classes)

    def space_time_filter(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The product of the two filters: weight (n_filters, n_channels, kernel), bias."""
        weight = torch.einsum("gfc,fk->gck", self.spatial_weight, self.temporal_weight)
        bias = torch.einsum("gfc,f->g", self.spatial_weight, self.temporal_bias)
        return weight, bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight, bias = self.space_time_filter()
        x = self.bn(functional.conv1d(x, weight, bias))
        return self.head(self.dropout(_log_power(x, self.pool, self.stride).flatten(1)))

    def fused(self) -> nn.Module:
        """An inference-only copy (eval-mode arithmetic, batch norm folded into the filter)."""
        with torch.no_grad():
            weight, bias = self.space_time_filter()
            scale = self.bn.weight / torch.sqrt(self.bn.running_var + self.bn.eps)
            weight = weight * scale[:, None, None]
            bias = (bias - self.bn.running_mean) * scale + self.bn.bias
        return _FusedShallow(weight, bias, self.pool, self.stride, self.head)


def _log_power(x: torch.Tensor, pool: int, stride: int) -> torch.Tensor:
    # log of the mean power in each pooling window; the clamp keeps log finite
    return torch.log(torch.clamp(functional.avg_pool1d(x * x, pool, stride), min=1e-6))


class _FusedShallow(nn.Module):
    def __init__(self, weight: torch.Tensor, bias: torch.Tensor, pool: int, stride: int,
                 head: nn.Linear) -> None:  # fmt: skip
        super().__init__()
        for name, value in (("weight", weight), ("bias", bias), ("head_weight", head.weight),
                            ("head_bias", head.bias)):  # fmt: skip
            self.register_buffer(name, value.detach().clone().contiguous())
        self.pool, self.stride = pool, stride
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = _log_power(functional.conv1d(x, self.weight, self.bias), self.pool, self.stride)
        return functional.linear(x.flatten(1), self.head_weight, self.head_bias)
