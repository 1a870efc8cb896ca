"""Convolutional networks for EEG windows, one per file, by name.

Every architecture takes ``(n_channels, n_samples, n_classes, sfreq)``, reads a float32 tensor of
shape (batch, n_channels, n_samples) and returns logits of shape (batch, n_classes); its final
classifier layer is ``head`` (what head-only fine-tuning retrains).
"""

from __future__ import annotations

from torch import nn

from bci.decode.cnn.eegnet import EEGNet
from bci.decode.cnn.shallow import ShallowConvNet

ARCHITECTURES: dict[str, type[nn.Module]] = {"eegnet": EEGNet, "shallow": ShallowConvNet}
"""Network classes by name."""

__all__ = ["ARCHITECTURES", "EEGNet", "ShallowConvNet"]
