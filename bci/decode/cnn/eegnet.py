"""EEGNet (Lawhern et al. 2018, J. Neural Eng. 15(5) 056013), the EEGNet-F1,D variant.

A compact network in two blocks. The first learns ``F1`` temporal filters (half a second long,
so down to 2 Hz) and, for each, ``D`` spatial filters over all channels (depthwise, max-norm 1):
a learned filter-bank CSP. The second is a separable convolution that mixes the ``F1·D`` maps
over ~500 ms at the pooled rate. Both blocks end in batch norm, ELU, average pooling and dropout;
a linear classifier (max-norm 0.25) reads the flattened maps.

The paper's sizes are for 128 Hz: temporal kernel 64, pooling 4 then 8, separable kernel 16.
Here the temporal kernel is the odd length nearest ``sfreq / 2`` (odd, so that "same" padding is
symmetric) and the first pooling ``sfreq / 32``, so the second block always runs at ~32 Hz with
kernel 17 and pooling 8.
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn import functional


def _renormalize(layer: nn.Conv2d | nn.Linear) -> None:
    """Keep each output's weights at an L2 norm of at most ``layer.max_norm`` while training
    (the Keras ``max_norm`` kernel constraint)."""
    if layer.training:
        with torch.no_grad():
            layer.weight.copy_(torch.renorm(layer.weight, 2, 0, layer.max_norm))


class MaxNormConv2d(nn.Conv2d):
    """A convolution whose filters are renormalized to an L2 norm of at most ``max_norm`` at
    each training forward pass."""

    def __init__(self, *args, max_norm: float, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.max_norm = max_norm

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _renormalize(self)
        return super().forward(x)


class MaxNormLinear(nn.Linear):
    """A linear layer whose rows (one per output) are kept at an L2 norm of at most
    ``max_norm`` during training."""

    def __init__(self, *args, max_norm: float, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.max_norm = max_norm

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _renormalize(self)
        return super().forward(x)


class EEGNet(nn.Module):
    """EEGNet-F1,D.

    Parameters
    ----------
    n_channels, n_samples : int
        Input shape: channels, and samples per window.
    n_classes : int
        Outputs (logits).
    sfreq : float
        Sampling rate of the input, Hz; sets the kernel and pooling lengths.
    f1 : int
        Temporal filters (8 in EEGNet-8,2).
    d : int
        Spatial filters per temporal filter (2 in EEGNet-8,2).
    f2 : int
        Separable-convolution maps (``f1 * d`` in the paper).
    dropout : float
        Dropout probability after each block (the paper: 0.5 within subject, 0.25 across).

    The input is a float32 tensor of shape (batch, n_channels, n_samples); the output, logits of
    shape (batch, n_classes). The classifier is ``head``.
    """

    def __init__(self, n_channels: int, n_samples: int, n_classes: int, sfreq: float, *,
                 f1: int = 8, d: int = 2, f2: int = 16, dropout: float = 0.25) -> None:  # fmt: skip
        super().__init__()
        kernel = 2 * max(1, round(sfreq / 4)) + 1
        self.pool1, self.pool2, kernel2 = max(1, round(sfreq / 32)), 8, 17
        n_steps = n_samples // self.pool1 // self.pool2
        if n_steps < 1:
            raise ValueError(
                f"EEGNet needs windows of at least {self.pool1 * self.pool2} samples at "
                f"{sfreq:g} Hz, got n_samples={n_samples}; use a longer window."
            )
        self.d, self.n_samples = d, n_samples
        self.temporal = nn.Conv2d(1, f1, (1, kernel), padding=(0, kernel // 2), bias=False)
        self.bn1 = nn.BatchNorm2d(f1)
        self.spatial = MaxNormConv2d(
            f1, f1 * d, (n_channels, 1), groups=f1, bias=False, max_norm=1.0
        )
        self.bn2 = nn.BatchNorm1d(f1 * d)
        self.depthwise = nn.Conv1d(
            f1 * d, f1 * d, kernel2, padding=kernel2 // 2, groups=f1 * d, bias=False
        )
        self.pointwise = nn.Conv1d(f1 * d, f2, 1, bias=False)
        self.bn3 = nn.BatchNorm1d(f2)
        self.dropout = nn.Dropout(dropout)
        self.head = MaxNormLinear(f2 * n_steps, n_classes, max_norm=0.25)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.spatial(self.bn1(self.temporal(x.unsqueeze(1)))).squeeze(2)
        x = self.dropout(functional.avg_pool1d(functional.elu(self.bn2(x)), self.pool1))
        x = self.bn3(self.pointwise(self.depthwise(x)))
        x = self.dropout(functional.avg_pool1d(functional.elu(x), self.pool2))
        return self.head(x.flatten(1))

    def fused(self) -> nn.Module:
        """An inference-only copy, every linear step folded into few matrix products.

        In eval mode the temporal filter, batch norm and spatial filter are all linear, so they
        commute: the copy first applies the ``F1·D`` spatial filters, then each one's temporal
        filter, ``n_channels / D`` times less arithmetic than filtering every channel. Each
        temporal filter, and the first pooling with the separable block's depthwise filter, become
        a banded matrix per map (one batched product beats a grouped convolution by ~4× at these
        sizes); the last pooling folds into the classifier. Windows longer than
        ``_MAX_MATRIX_SAMPLES`` get an eval-mode copy instead, as the matrices grow with the square
        of the length.
        """
        n_samples = self.n_samples
        if n_samples > _MAX_MATRIX_SAMPLES:
            return copy.deepcopy(self).eval()
        with torch.no_grad():
            spatial = self.spatial.weight[:, 0, :, 0]  # (F1·D, n_channels)
            parent = torch.arange(spatial.shape[0]) // self.d  # temporal filter of each map
            scale1, shift1 = _bn_affine(self.bn1)
            scale2, shift2 = _bn_affine(self.bn2)
            temporal = self.temporal.weight[parent, 0, 0, :] * (scale1[parent] * scale2)[:, None]
            bias = shift1[parent] * spatial.sum(1) * scale2 + shift2
            n_pooled = n_samples // self.pool1
            pool = _pooling_matrix(n_samples, self.pool1)
            separable = pool @ _filter_matrix(self.depthwise.weight[:, 0, :], n_pooled)
            scale3, shift3 = _bn_affine(self.bn3)
            pointwise = self.pointwise.weight[:, :, 0] * scale3[:, None]
            n_classes, n_maps = self.head.out_features, pointwise.shape[0]
            head = self.head.weight.reshape(n_classes, n_maps, -1)  # (classes, maps, steps)
            head = head @ _pooling_matrix(n_pooled, self.pool2).T
            return _FusedEEGNet(
                spatial, _filter_matrix(temporal, n_samples), bias[:, None, None], separable,
                pointwise, shift3[:, None], head.reshape(n_classes, -1), self.head.bias,
            )  # fmt: skip


_MAX_MATRIX_SAMPLES = 512
"""Longest window, samples, that :meth:`EEGNet.fused` turns into banded matrices (16 MB)."""


def _bn_affine(bn: nn.modules.batchnorm._BatchNorm) -> tuple[torch.Tensor, torch.Tensor]:
    """Eval-mode batch norm as ``x * scale + shift``."""
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    return scale, bn.bias - bn.running_mean * scale


def _filter_matrix(kernels: torch.Tensor, n: int) -> torch.Tensor:
    """Matrices ``A``, shape (n_maps, n, n), with ``x @ A[m]`` the zero-padded "same"
    cross-correlation of ``x`` (length ``n``) with ``kernels[m]`` (odd length)."""
    length = kernels.shape[1]
    lag = torch.arange(n)[:, None] - torch.arange(n)[None, :] + length // 2
    inside = (lag >= 0) & (lag < length)
    return kernels[:, lag.clamp(0, length - 1)] * inside


def _pooling_matrix(n: int, pool: int) -> torch.Tensor:
    """Matrix, shape (n, n // pool), with ``x @ P`` the average pooling of ``x``."""
    rows = torch.arange(n)[:, None] // pool == torch.arange(n // pool)[None, :]
    return rows.float() / pool


class _FusedEEGNet(nn.Module):
    def __init__(self, spatial, temporal, bias, separable, pointwise, pointwise_bias, head,
                 head_bias) -> None:  # fmt: skip
        super().__init__()
        for name, value in (("spatial", spatial), ("temporal", temporal), ("bias", bias),
                            ("separable", separable), ("pointwise", pointwise),
                            ("pointwise_bias", pointwise_bias), ("head_weight", head),
                            ("head_bias", head_bias)):  # fmt: skip
            self.register_buffer(name, value.detach().clone().contiguous())
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.matmul(self.spatial, x).unsqueeze(2)  # (batch, maps, 1, samples)
        x = functional.elu(torch.matmul(x, self.temporal) + self.bias)
        x = torch.matmul(x, self.separable).squeeze(2)  # (batch, maps, pooled samples)
        x = functional.elu(torch.matmul(self.pointwise, x) + self.pointwise_bias)
        return functional.linear(x.flatten(1), self.head_weight, self.head_bias)
