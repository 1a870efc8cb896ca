"""PyTorch decoders: one trainer and inference wrapper for every network family, and the CNNs.

:class:`TorchDecoder` owns what every network shares: input checks, the reduced internal rate,
seeded and deterministic training with early stopping on whole trials, head-only and full
fine-tuning, single-window inference on a fixed number of threads, the model file and TorchScript
export. A family supplies the network; subclasses may override four hooks:
``_build_network``, ``_to_tensor``, ``_loss`` and ``_output_logits``. A network may also offer
``fused()``, an inference-only equivalent (batch norms folded, linear steps merged) that
inference and export run instead; both CNNs do.

Internal rate
-------------
The engine band-passes EEG to 8–30 Hz before decoding, so nothing a network could use lies above
~35 Hz. Windows are therefore averaged over blocks of ``q`` samples, the largest integer with
``sfreq / q >= internal_rate`` (default 100 Hz: 250 Hz → 125 Hz, 500 Hz → 100 Hz, 1 kHz → 100 Hz);
the block mean is a low-pass with its first null at the new rate, and the 8–30 Hz band stays
below the new Nyquist frequency. When ``n_samples`` is not a multiple of ``q`` the oldest samples
are dropped. This cuts the cost of a forward pass by ``q`` and is what keeps single-window
inference well under a millisecond.
"""

from __future__ import annotations

import copy
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from numbers import Integral
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from sklearn.model_selection import StratifiedGroupKFold
from torch import nn
from tqdm.auto import tqdm

from bci.decode.base import Decoder, DecoderInfo
from bci.decode.cnn import ARCHITECTURES

DEVICES = ("auto", "cpu", "cuda")
_EVAL_BATCH = 256
"""Windows per forward pass when many windows are scored at once (bounds memory)."""
_MIN_GAIN, _MIN_GAIN_NATS = 0.01, 0.002
"""Fall of the validation loss that restarts the patience count: 1 % and 0.002 nats."""
_SETTINGS = ("device", "epochs", "batch_size", "lr", "weight_decay", "patience", "validation",
             "dropout", "internal_rate", "seed", "threads", "train_threads")  # fmt: skip
"""Constructor arguments after ``alignment``, each stored under its own name."""
_FUSED_ADAM = ("cpu", "cuda")
"""Devices with a fused Adam kernel."""


class TorchDecoder(Decoder):
    """A decoder backed by a PyTorch network, trained with Adam on cross-entropy.

    Parameters
    ----------
    alignment : {"none", "euclidean", "riemann"}
        Per-subject re-centering; see :class:`~bci.decode.base.Decoder`.
    device : {"auto", "cpu", "cuda"}
        Where to train and infer; ``auto`` takes a CUDA GPU when one is visible. Weights are
        saved as CPU arrays either way.
    epochs : int
        Most passes over the training windows (early stopping usually ends sooner).
    batch_size : int
        Windows per optimizer step.
    lr : float
        Adam learning rate; ``fine_tune(strategy="full")`` uses a tenth of it.
    weight_decay : float
        Adam L2 penalty.
    patience : int
        Epochs without a real fall of the validation loss (1 % and 0.002 nats) before
        training stops; the weights of the lowest validation loss are restored.
    validation : float
        Fraction of trials held out for early stopping (stratified, whole trials); 0 trains
        every epoch on every window.
    dropout : float or None
        Dropout probability of the network; None keeps the architecture's default.
    internal_rate : float
        Lowest rate, Hz, the network may run at; windows are block-averaged down to it (see the
        module docstring).
    seed : int
        Seeds weight initialization, shuffling, dropout and the validation split.
    threads : int
        CPU threads for inference (the engine decodes on one).
    train_threads : int
        CPU threads for training; 0 leaves PyTorch's default (every core). These networks are
        small: on a shared 2-core machine one thread trained EEGNet several times faster than
        two, whose OpenMP workers spin-wait on each other.
    """

    architecture: ClassVar[str] = ""
    """Name in :data:`~bci.decode.cnn.ARCHITECTURES` that the default ``_build_network`` builds."""

    def __init__(self, alignment: str = "none", *, device: str = "auto", epochs: int = 200,
                 batch_size: int = 32, lr: float = 1e-3, weight_decay: float = 0.0,
                 patience: int = 20, validation: float = 0.2, dropout: float | None = None,
                 internal_rate: float = 100.0, seed: int = 0, threads: int = 1,
                 train_threads: int = 1) -> None:  # fmt: skip
        super().__init__(alignment)
        if device not in DEVICES:
            raise ValueError(f"device must be 'auto', 'cpu' or 'cuda', got {device!r}.")
        for name, value, least in (("epochs", epochs, 1), ("batch_size", batch_size, 1),
                                   ("patience", patience, 1), ("threads", threads, 1),
                                   ("train_threads", train_threads, 0)):  # fmt: skip
            if not isinstance(value, Integral) or value < least:
                raise ValueError(f"{name} must be an integer ≥ {least}, got {value!r}.")
        if not lr > 0:
            raise ValueError(f"lr must be positive, got {lr!r}.")
        if not 0 <= validation < 0.5:
            raise ValueError(f"validation must be in [0, 0.5), got {validation!r}.")
        if dropout is not None and not 0 <= dropout < 1:
            raise ValueError(f"dropout must be in [0, 1) or None, got {dropout!r}.")
        if not internal_rate > 0:
            raise ValueError(f"internal_rate must be positive (Hz), got {internal_rate!r}.")
        self.device = device
        self.epochs, self.batch_size, self.patience = int(epochs), int(batch_size), int(patience)
        self.lr, self.weight_decay, self.validation = float(lr), float(weight_decay), validation
        self.dropout, self.internal_rate = dropout, float(internal_rate)
        self.seed, self.threads, self.train_threads = int(seed), int(threads), int(train_threads)
        self.network: nn.Module | None = None
        """The trained network (its weights are the model file's)."""
        self._device: torch.device | None = None
        self._inference: nn.Module | None = None
        """What ``_logits`` runs: ``network.fused()`` where the network has it, else the network."""
        self.input_scale = 1.0
        """Training windows' standard deviation, µV; inputs are divided by it."""
        self.history: list[dict[str, float]] = []
        """Per epoch of the last fit or fine-tune: train_loss, val_loss, val_accuracy."""
        self.best_epoch: int | None = None
        """Epoch (0-based) whose weights early stopping kept, or None without validation."""

    def config(self) -> dict[str, Any]:
        return {**super().config(), **{name: getattr(self, name) for name in _SETTINGS}}

    @classmethod
    def from_state(cls, meta, arrays):
        # a model trained on a GPU runs wherever it is loaded: the device is the host's choice
        meta = {**meta, "config": {**meta["config"], "device": "auto"}}
        return super().from_state(meta, arrays)

    # overridable hooks ---------------------------------------------------------------------
    def _build_network(self) -> nn.Module:
        """A freshly initialized network for ``self.info``; it must have a ``head`` layer."""
        if self.architecture not in ARCHITECTURES:
            raise NotImplementedError(
                f"{type(self).__name__} names no architecture (known: {sorted(ARCHITECTURES)}); "
                "set the class attribute `architecture` or override _build_network()."
            )
        kwargs = {} if self.dropout is None else {"dropout": self.dropout}
        return ARCHITECTURES[self.architecture](*self._network_shape(), **kwargs)

    def _to_tensor(self, windows: np.ndarray) -> torch.Tensor:
        """Network input, float32 of shape (n_windows, n_channels, n_internal_samples), on the
        decoder's device, from windows of shape (n_windows, n_samples, n_channels), µV."""
        self._check_windows(windows)
        q = self.decimation
        n_internal = self.info.eeg.n_samples // q
        windows = windows[:, windows.shape[1] - n_internal * q :]
        # block sums, channels first, in one pass; 1/q goes into the input scale
        blocks = windows.reshape(len(windows), n_internal, q, windows.shape[2])
        x = np.einsum("nsqc->ncs", blocks).astype(np.float32)
        x *= self._inverse_scale()
        return torch.from_numpy(x).to(self._torch_device())

    def _inverse_scale(self) -> np.float32:
        """Factor from block sums to network input: 1 / (q · input_scale)."""
        return np.float32(1.0 / (self.decimation * self.input_scale))

    def _loss(self, output: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Training loss of the network's ``output`` against class indices."""
        return nn.functional.cross_entropy(self._output_logits(output), targets)

    def _output_logits(self, output: torch.Tensor) -> torch.Tensor:
        """Logits, shape (n_windows, n_classes), from the network's output."""
        return output

    # geometry ------------------------------------------------------------------------------
    @property
    def decimation(self) -> int:
        """Block length ``q`` of the internal-rate averaging (1: none)."""
        self._check_fitted("decimation")
        return max(1, int(np.floor(self.info.eeg.sfreq / self.internal_rate + 1e-9)))

    def _network_shape(self) -> tuple[int, int, int, float]:
        """(n_channels, n_samples, n_classes, sfreq) of the network input at the internal rate."""
        q = self.decimation
        spec = self.info.eeg
        return len(spec.ch_names), spec.n_samples // q, len(self.info.classes), spec.sfreq / q

    def _check_windows(self, windows) -> None:
        spec = self.info.eeg
        expected = (spec.n_samples, len(spec.ch_names))
        if (
            not isinstance(windows, np.ndarray)
            or windows.ndim != 3
            or windows.shape[1:] != expected
        ):
            got = windows.shape if isinstance(windows, np.ndarray) else type(windows).__name__
            raise ValueError(
                f"windows must have shape (n_windows, {expected[0]}, {expected[1]}) "
                f"({spec.window_s:g} s at {spec.sfreq:g} Hz, {expected[1]} channels), got {got}."
            )

    def _torch_device(self) -> torch.device:
        if self._device is None:  # resolved once: the check costs microseconds per window
            if self.device == "cuda" and not torch.cuda.is_available():
                raise RuntimeError(
                    "device='cuda' but PyTorch sees no CUDA GPU; construct the decoder with "
                    "device='cpu' or 'auto'."
                )
            cuda = self.device == "cuda" or (self.device == "auto" and torch.cuda.is_available())
            self._device = torch.device("cuda" if cuda else "cpu")
        return self._device

    # training ------------------------------------------------------------------------------
    def _fit(self, windows, targets, info: DecoderInfo, groups):
        self._check_windows(windows)
        self.input_scale = float(np.std(windows)) or 1.0
        with self._seeded():
            self.network = self._build_network().to(self._torch_device())
            self._train(windows, targets, groups, self.lr, head_only=False)
        self._set_inference()

    def _fine_tune(self, windows, targets, strategy, groups):
        # input_scale stays the pretrained one: a new subject's level is alignment's business
        with self._seeded():
            if strategy == "head":
                self._train(windows, targets, groups, self.lr, head_only=True)
            else:
                self._train(windows, targets, groups, self.lr / 10, head_only=False)
        self._set_inference()

    @contextmanager
    def _seeded(self) -> Iterator[None]:
        """Seed every random source, use deterministic kernels and ``train_threads``, leaving
        the caller's RNG state, determinism setting and thread count as they were."""
        device = self._torch_device()
        devices = [device.index or 0] if device.type == "cuda" else []
        deterministic = torch.are_deterministic_algorithms_enabled()
        warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
        with torch.random.fork_rng(devices=devices), _torch_threads(self.train_threads):
            torch.manual_seed(self.seed)
            torch.use_deterministic_algorithms(True, warn_only=True)
            try:
                yield
            finally:
                torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)

    def validation_split(self, targets: np.ndarray, groups=None) -> tuple[np.ndarray, np.ndarray]:
        """Rows to train on and rows to stop early on: about ``validation`` of the trials,
        stratified by class, each trial whole. ``groups`` is the trial of each window (each
        window its own trial when None). No validation rows when there are too few trials."""
        rows = np.arange(len(targets))
        groups = rows if groups is None else np.asarray(groups)
        if len(groups) != len(targets):
            raise ValueError(
                f"groups must give the trial of each window: {len(groups)} for {len(targets)}."
            )
        n_splits = round(1 / self.validation) if self.validation > 0 else 0
        trials_per_class = [len(np.unique(groups[targets == c])) for c in np.unique(targets)]
        if n_splits < 2 or len(np.unique(groups)) < n_splits or min(trials_per_class) < 2:
            return rows, rows[:0]
        cv = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=self.seed)
        train, val = next(cv.split(rows, targets, groups))
        return train, val

    def _train(self, windows, targets, groups, lr: float, head_only: bool) -> None:
        """Adam with early stopping on the validation split; the best weights are kept."""
        network = self.network
        train_rows, val_rows = self.validation_split(targets, groups)
        x = self._to_tensor(windows)
        y = torch.as_tensor(targets, dtype=torch.long, device=x.device)
        trainable = list(network.head.parameters()) if head_only else list(network.parameters())
        frozen = [p for p in network.parameters() if p.requires_grad] if head_only else []
        for parameter in frozen:
            parameter.requires_grad_(False)
        for parameter in trainable:
            parameter.requires_grad_(True)
        # the fused kernel updates every tensor in one pass: 2-3× less optimizer time
        optimizer = torch.optim.Adam(
            trainable, lr=lr, weight_decay=self.weight_decay, fused=x.device.type in _FUSED_ADAM
        )
        shuffle = torch.Generator().manual_seed(self.seed)
        n_batches = max(1, round(len(train_rows) / self.batch_size))
        stopping, self.history = _EarlyStopping(self.patience), []
        progress = tqdm(
            range(self.epochs), desc=f"{self.kind} {'head' if head_only else 'train'}",
            leave=False, disable=not sys.stderr.isatty(), unit="epoch",
        )  # fmt: skip
        try:
            for epoch in progress:
                network.train()
                if head_only:  # the body's batch norm and dropout stay as pretrained
                    network.eval()
                    network.head.train()
                order = torch.as_tensor(train_rows)[
                    torch.randperm(len(train_rows), generator=shuffle)
                ]
                losses = []
                # equal-sized batches: never a batch of one window for batch norm
                for batch in torch.tensor_split(order, n_batches):
                    optimizer.zero_grad(set_to_none=True)
                    loss = self._loss(network(x[batch]), y[batch])
                    loss.backward()
                    optimizer.step()
                    losses.append(loss.item())
                record = {"train_loss": float(np.mean(losses))}
                if len(val_rows):
                    network.eval()
                    val = torch.as_tensor(val_rows)
                    logits = self._network_logits(network, x[val])
                    record["val_loss"] = nn.functional.cross_entropy(logits, y[val]).item()
                    record["val_accuracy"] = (logits.argmax(1) == y[val]).float().mean().item()
                self.history.append(record)
                progress.set_postfix(record)
                if len(val_rows) and stopping.update(record["val_loss"], epoch, network):
                    break
        finally:
            progress.close()
            for parameter in frozen:
                parameter.requires_grad_(True)
        self.best_epoch = stopping.best_epoch
        if stopping.best_state is not None:
            network.load_state_dict(stopping.best_state)
        network.eval()

    def _network_logits(self, network: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """Logits of network input ``x`` (the network in eval mode), in batches."""
        with torch.inference_mode():
            if len(x) <= _EVAL_BATCH:
                return self._output_logits(network(x))
            return torch.cat(
                [self._output_logits(network(part)) for part in torch.split(x, _EVAL_BATCH)]
            )

    # inference -----------------------------------------------------------------------------
    def _set_inference(self) -> None:
        self.network.eval()
        fused = getattr(self.network, "fused", None)
        self._inference = self.network if fused is None else fused().to(self._torch_device())

    def _logits(self, windows):
        x = self._to_tensor(windows)
        with _torch_threads(self.threads):
            logits = self._network_logits(self._inference, x)
        return logits.cpu().numpy().astype(np.float64)

    # model file ----------------------------------------------------------------------------
    def _arrays(self):
        arrays = {
            f"net/{name}": value.detach().cpu().numpy().copy()
            for name, value in self.network.state_dict().items()
        }
        return {**arrays, "input_scale": np.array(self.input_scale)}

    def _restore(self, arrays):
        self.input_scale = float(arrays["input_scale"])
        with torch.random.fork_rng(devices=[]):  # initialization draws would move the global RNG
            network = self._build_network()
        state = {
            name.removeprefix("net/"): torch.from_numpy(np.asarray(value))
            for name, value in arrays.items()
            if name.startswith("net/")
        }
        network.load_state_dict(state, strict=True)
        self.network = network.to(self._torch_device())
        self._set_inference()

    # export --------------------------------------------------------------------------------
    def export(self, path, format: str = "torchscript") -> Path:
        """Write the fitted decoder as a TorchScript file (``torch.jit.load``, or LibTorch).

        The exported module takes float32 windows of shape (batch, n_samples, n_channels), µV,
        as ``predict_proba`` does, applies the stored alignment, internal-rate averaging and
        input scaling, and returns logits, shape (batch, n_classes) (divide by
        ``temperature`` and softmax for calibrated probabilities). ONNX is not offered:
        PyTorch's exporter needs the ``onnx`` package, which NeuroLoop does not depend on.
        """
        self._check_fitted("export()")
        if format != "torchscript":
            raise ValueError(
                f"format must be 'torchscript', got {format!r}; ONNX would need the onnx "
                "package, which NeuroLoop does not install."
            )
        module = self._export_module().cpu().eval()
        spec = self.info.eeg
        example = torch.zeros(2, spec.n_samples, len(spec.ch_names))
        path = Path(path)
        with torch.no_grad(), warnings.catch_warnings():
            # TorchScript is deprecated upstream in favour of torch.export, but it is still what
            # a C++ or LibTorch host loads without Python
            warnings.filterwarnings("ignore", r"`torch\.jit\.", DeprecationWarning)
            torch.jit.trace(module, example).save(str(path))
        return path

    def _export_module(self) -> nn.Module:
        """The network with this decoder's input path in front; a subclass that overrides
        ``_to_tensor`` or ``_output_logits`` overrides this too."""
        alignment = None if self.alignment is None else self.alignment.matrix
        return _ExportedDecoder(
            copy.deepcopy(self._inference).cpu(), alignment, self.decimation,
            self.info.eeg.n_samples // self.decimation, float(self._inverse_scale()),
        )  # fmt: skip


class _EarlyStopping:
    """Keeps the weights of the lowest validation loss, and calls a stop after ``patience``
    epochs without a real gain (1 % and 0.002 nats), not on a slow creep towards zero."""

    def __init__(self, patience: int) -> None:
        self.patience = patience
        self.best_loss, self.best_epoch, self.best_state = np.inf, None, None
        self._gain_loss, self._gain_epoch = np.inf, 0

    def update(self, loss: float, epoch: int, network: nn.Module) -> bool:
        """Record an epoch's validation loss; True when training should stop."""
        if loss < self.best_loss:
            if self.best_state is None or loss < self._gain_loss - max(
                _MIN_GAIN * self._gain_loss, _MIN_GAIN_NATS
            ):
                self._gain_loss, self._gain_epoch = loss, epoch
            self.best_loss, self.best_epoch = loss, epoch
            self.best_state = copy.deepcopy(network.state_dict())
        return self.best_state is not None and epoch - self._gain_epoch >= self.patience


@contextmanager
def _torch_threads(n: int) -> Iterator[None]:
    """Run with ``n`` torch threads (0: as is); the count is process-wide, so give it back."""
    previous = torch.get_num_threads()
    if n and previous != n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if n and previous != n:
            torch.set_num_threads(previous)


class _ExportedDecoder(nn.Module):
    """Windows (batch, n_samples, n_channels) → logits, the same arithmetic as
    :meth:`TorchDecoder._to_tensor` in float32."""

    def __init__(self, network: nn.Module, alignment: np.ndarray | None, decimation: int,
                 n_internal: int, inverse_scale: float) -> None:  # fmt: skip
        super().__init__()
        self.network = network
        self.aligned = alignment is not None
        if alignment is not None:
            self.register_buffer("alignment", torch.as_tensor(alignment, dtype=torch.float32))
        self.decimation, self.n_internal = decimation, n_internal
        self.inverse_scale = inverse_scale

    def forward(self, windows: torch.Tensor) -> torch.Tensor:
        if self.aligned:
            windows = windows @ self.alignment
        q, n = self.decimation, self.n_internal
        windows = windows[:, windows.shape[1] - n * q :]
        windows = windows.reshape(windows.shape[0], n, q, windows.shape[2]).sum(dim=2)
        return self.network(windows.transpose(1, 2) * self.inverse_scale)


class EEGNetDecoder(TorchDecoder):
    """EEGNet-8,2 (Lawhern et al. 2018); see :class:`TorchDecoder` for the parameters."""

    kind = "eegnet"
    architecture = "eegnet"


class ShallowDecoder(TorchDecoder):
    """Shallow ConvNet (Schirrmeister et al. 2017); see :class:`TorchDecoder` for the
    parameters."""

    kind = "shallow"
    architecture = "shallow"
