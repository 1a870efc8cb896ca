"""A spiking-network decoder (snnTorch) that exports to neuromorphic hardware as a NIR graph.

EEG windows are encoded into spike trains on the host (:mod:`bci.decode.snn_encoding`:
filter-bank log-power, z-scored, threshold spikes on up and down inputs, one time step per
``bin_s``), then a two-layer network of leaky integrate-and-fire neurons runs over the steps::

    spikes ─ fc1 (Linear) ─ lif1 (Leaky) ─ head (Linear) ─ lif2 (Leaky) ─ spike count per class

The output neurons' spike counts over the window, as rates, are the logits
(:data:`RATE_GAIN`). Training is by
backpropagation through time with a fast-sigmoid surrogate gradient (Zenke & Ganguli 2018), on
the :class:`~bci.decode.torch_decoder.TorchDecoder` trainer (Adam, early stopping on whole
trials, head-only or full fine-tuning).

Neuron model
------------
Each step, ``v ← β·v + I``; a neuron spikes when ``v > 1`` and its ``v`` is then set to 0 (reset
to zero, no delay). β is fixed per layer, not learned. These are exactly the dynamics that
``snntorch.import_nir`` rebuilds from a NIR ``LIF`` node, so an exported graph read back runs
spike for spike like the trained network. snnTorch writes NIR with a time step of
``dt = 1e-4`` s (:data:`NIR_DT_S`): a NIR ``LIF`` has ``tau = dt / (1 − β)`` and ``r = tau / dt``,
``v_leak = 0``, ``v_threshold = 1``, ``v_reset = 0``, and a consumer must run it at that
``dt``; one NIR step stands for one encoding bin (``time_step_s`` in the graph's metadata).
The default β are 1 − 2⁻³ = 0.875 (τ = 8 bins = 320 ms at 40 ms bins): exact in binary, so
β → tau → β round-trips bit for bit, and an exact 12-bit decay on Loihi.
"""

from __future__ import annotations

import contextlib
import io
import json
import warnings
from pathlib import Path
from typing import Any

import nir
import numpy as np
import snntorch as snn
import torch
from snntorch import surrogate
from snntorch.export_nir import export_to_nir
from snntorch.import_nir import import_from_nir
from torch import nn

from bci.decode.snn_encoding import SpikeEncoder, SpikeEncoding, csp_filters
from bci.decode.torch_decoder import TorchDecoder

SUPPORTED_NIR_NODES = ("Input", "Affine", "LIF", "Output")
"""NIR node types an exported graph holds, and all that :class:`NirNetwork` accepts."""
NIR_DT_S = 1e-4
"""Time step, s, at which snnTorch writes and reads NIR neuron time constants."""
RATE_GAIN = 8.0
"""Logits are ``RATE_GAIN × spike count / n_steps``: the output firing rate, scaled so that the
cross-entropy separates classes as sharply as counts × 0.32 at 25 steps. That trained more
stably on virtual subjects than raw counts (about +1 point after pretraining); the
temperature is calibrated afterwards either way, and the argmax is the count's."""
_INITIAL_BIAS = 0.3
"""Initial bias of both layers: with β = 0.875 a resting neuron charges to 0.3 / (1 − β) = 2.4
and fires, so no output starts silent (a silent output has a spike count stuck at 0)."""


def _leaky(beta: torch.Tensor, slope: float, init_hidden: bool = False) -> snn.Leaky:
    # per-neuron beta and threshold: snnTorch's NIR export needs both of shape (n,)
    neuron = snn.Leaky(
        beta=beta.clone(), threshold=torch.ones(len(beta)), reset_mechanism="zero",
        reset_delay=False, init_hidden=init_hidden, spike_grad=surrogate.fast_sigmoid(slope),
    )  # fmt: skip
    _forget([neuron])
    return neuron


def _forget(neurons) -> None:
    """Drop neurons from snnTorch's global registry, which would otherwise keep every network
    ever built alive (it exists for ``init_hidden`` state resets, which are done here by hand)."""
    ids = {id(neuron) for neuron in neurons}
    snn.SpikingNeuron.instances[:] = [n for n in snn.SpikingNeuron.instances if id(n) not in ids]


class SpikingNetwork(nn.Module):
    """Linear → LIF → Linear (``head``) → LIF over time; output spike counts.

    Parameters
    ----------
    n_inputs, n_classes : int
        Spike inputs and output neurons.
    n_hidden : int
        Hidden LIF neurons.
    beta_hidden, beta_output : float
        Membrane decay per step of the hidden and output layers, in (0, 1).
    surrogate_slope : float
        Slope ``k`` of the fast-sigmoid surrogate gradient ``1 / (1 + k·|v − 1|)²``.
    """

    def __init__(self, n_inputs: int, n_classes: int, n_hidden: int = 64,
                 beta_hidden: float = 0.875, beta_output: float = 0.875,
                 surrogate_slope: float = 5.0) -> None:  # fmt: skip
        super().__init__()
        self.slope = surrogate_slope
        self.fc1 = nn.Linear(n_inputs, n_hidden)
        self.lif1 = _leaky(torch.full((n_hidden,), float(beta_hidden)), surrogate_slope)
        self.head = nn.Linear(n_hidden, n_classes)
        self.lif2 = _leaky(torch.full((n_classes,), float(beta_output)), surrogate_slope)
        nn.init.constant_(self.fc1.bias, _INITIAL_BIAS)
        nn.init.constant_(self.head.bias, _INITIAL_BIAS)

    @staticmethod
    def _run(neuron: snn.Leaky, current: torch.Tensor) -> torch.Tensor:
        """Spikes (batch, n_steps, n) of a layer driven by ``current`` (batch, n_steps, n): the
        arithmetic of ``snn.Leaky.forward`` (reset to zero, no delay), with the state kept here
        rather than in the module."""
        beta = neuron.beta.clamp(0, 1)
        mem = torch.zeros_like(current[:, 0])
        spikes = []
        for step in range(current.shape[1]):
            mem = beta * mem + current[:, step]
            spike = neuron.spike_grad(mem - neuron.threshold)
            mem = mem - spike * mem
            spikes.append(spike)
        return torch.stack(spikes, dim=1)

    def spike_trains(self, spikes: torch.Tensor) -> torch.Tensor:
        """Output spikes, shape (batch, n_steps, n_classes), of input spikes (batch, n_steps,
        n_inputs); the state starts at zero for every window."""
        # the layers are feed-forward, so running one layer over all steps, then the next, is
        # the same as running both step by step, with two matrix products instead of 2·n_steps
        hidden = self._run(self.lif1, self.fc1(spikes))
        return self._run(self.lif2, self.head(hidden))

    def forward(self, spikes: torch.Tensor) -> torch.Tensor:
        """Spike count per output neuron, shape (batch, n_classes)."""
        return self.spike_trains(spikes).sum(dim=1)

    def fused(self) -> nn.Module:
        """An inference-only twin sharing the weights: the same arithmetic and spike counts,
        without the surrogate-gradient machinery (5× faster on one window)."""
        return _InferenceNetwork(self)

    def step_module(self) -> nn.Module:
        """A one-time-step twin sharing the weights, with state in its neurons
        (``init_hidden``), as :func:`snntorch.export_nir.export_to_nir` traces it."""
        return _StepNetwork(self)


class _InferenceNetwork(nn.Module):
    def __init__(self, network: SpikingNetwork) -> None:
        super().__init__()
        self.fc1, self.head = network.fc1, network.head
        self.layers = [
            (lif.beta.clamp(0, 1).detach().cpu().numpy(), lif.threshold.detach().cpu().numpy())
            for lif in (network.lif1, network.lif2)
        ]

    def forward(self, spikes: torch.Tensor) -> torch.Tensor:
        hidden = self._run(self.fc1(spikes), *self.layers[0])
        return self._run(self.head(hidden), *self.layers[1]).sum(dim=1)

    @staticmethod
    def _run(current: torch.Tensor, beta: np.ndarray, threshold: np.ndarray) -> torch.Tensor:
        # The step loop in numpy: a tenth of torch's per-operation cost on one window. The
        # same float32 operations in the same order as SpikingNetwork._run (v > 1 is v − 1 > 0,
        # and zeroing by mask is v − 1·v), so the spikes are bit for bit the same.
        values = current.detach().cpu().numpy()
        mem = np.zeros_like(values[:, 0])
        spikes = np.empty(values.shape, dtype=bool)
        for step in range(values.shape[1]):
            mem = mem * beta + values[:, step]
            spikes[:, step] = fired = mem > threshold
            mem[fired] = 0.0
        return torch.from_numpy(spikes.astype(np.float32)).to(current.device)


class _StepNetwork(nn.Module):
    def __init__(self, network: SpikingNetwork) -> None:
        super().__init__()
        self.fc1, self.head = network.fc1, network.head
        self.lif1 = _leaky(network.lif1.beta, network.slope, init_hidden=True)
        self.lif2 = _leaky(network.lif2.beta, network.slope, init_hidden=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lif2(self.head(self.lif1(self.fc1(x))))


def check_nir_graph(graph: nir.NIRGraph) -> None:
    """Raise ValueError unless every node of ``graph`` is in :data:`SUPPORTED_NIR_NODES`."""
    found = sorted({type(node).__name__ for node in graph.nodes.values()})
    unsupported = [name for name in found if name not in SUPPORTED_NIR_NODES]
    if unsupported:
        raise ValueError(
            f"the NIR graph holds {unsupported} nodes; NeuroLoop runs only "
            f"{list(SUPPORTED_NIR_NODES)} (export the graph with SpikingDecoder.export_nir)."
        )


class NirNetwork:
    """A NIR graph read back into a simulator (snnTorch's ``import_from_nir``), run one batch of
    windows at a time with its state reset before each.

    Parameters
    ----------
    graph : nir.NIRGraph
        A graph of :data:`SUPPORTED_NIR_NODES` only (ValueError otherwise).
    """

    def __init__(self, graph: nir.NIRGraph) -> None:
        check_nir_graph(graph)
        self.graph = graph
        with contextlib.redirect_stdout(io.StringIO()):  # the importer prints progress
            self.module = import_from_nir(graph).eval()
        self._neurons = [m for m in self.module.modules() if isinstance(m, snn.SpikingNeuron)]
        _forget(self._neurons)

    @classmethod
    def read(cls, path) -> NirNetwork:
        """Read a NIR file (``nir.read``)."""
        return cls(nir.read(Path(path)))

    def __call__(self, spikes: np.ndarray) -> np.ndarray:
        """Output spikes of input spikes.

        Parameters
        ----------
        spikes : array, shape (n_steps, n_windows, n_inputs)
            Encoded windows (:meth:`SpikingDecoder.encode`); each window is one batch row.

        Returns
        -------
        output : array of float32 in {0, 1}, shape (n_steps, n_windows, n_outputs)
        """
        x = torch.as_tensor(np.asarray(spikes, dtype=np.float32))
        if x.ndim != 3:
            raise ValueError(
                f"spikes must have shape (n_steps, n_windows, n_inputs), got {tuple(x.shape)}."
            )
        for neuron in self._neurons:  # a fresh, zero state for each call
            neuron.mem = torch.zeros(0)
        outputs, state = [], None
        with torch.inference_mode():
            for step in x:
                output, state = self.module(step, state)
                outputs.append(output)
        return torch.stack(outputs).numpy()


class SpikingDecoder(TorchDecoder):
    """Spike-encoded EEG → two-layer LIF network → output spike counts.

    Parameters
    ----------
    alignment : {"none", "euclidean", "riemann"}
        Per-subject re-centering of the EEG before encoding; see
        :class:`~bci.decode.base.Decoder`. On virtual subjects, "none" transferred better:
        whitening mixes channels and blurs the per-channel band power that the encoding reads.
        The encoder's z-score statistics come from the training windows and stay through
        ``fine_tune`` (a new subject's level is alignment's business, as for
        ``TorchDecoder.input_scale``).
    n_hidden : int
        Hidden LIF neurons.
    beta_hidden, beta_output : float
        Membrane decay per time step of the hidden and output neurons, in (0, 1); the time
        constant is ``bin_s / (1 − β)`` s.
    surrogate_slope : float
        Slope of the fast-sigmoid surrogate gradient.
    bands_hz, bin_s, threshold
        The spike encoding; see :class:`~bci.decode.snn_encoding.SpikeEncoding`.
    spatial_filters : int
        Common-spatial-pattern filters (two classes only) whose band power is encoded besides
        each channel's, computed on the training windows and kept through fine-tuning: the
        host's share of the spatial filtering that EEGNet learns (0: channels only).
    **kwargs
        Training and inference; see :class:`~bci.decode.torch_decoder.TorchDecoder`
        (``dropout`` must stay None: the network has none; ``internal_rate`` is not used, the
        encoding sets the time step).
    """

    kind = "snn"

    def __init__(self, alignment: str = "none", *, n_hidden: int = 64, beta_hidden: float = 0.875,
                 beta_output: float = 0.875, surrogate_slope: float = 5.0,
                 bands_hz=SpikeEncoding.bands_hz, bin_s: float = SpikeEncoding.bin_s,
                 threshold: float = SpikeEncoding.threshold, spatial_filters: int = 4,
                 **kwargs) -> None:  # fmt: skip
        super().__init__(alignment, **kwargs)
        if self.dropout is not None:
            raise ValueError(f"the spiking network has no dropout; got dropout={self.dropout!r}.")
        if int(n_hidden) != n_hidden or n_hidden < 1:
            raise ValueError(f"n_hidden must be a positive integer, got {n_hidden!r}.")
        for name, beta in (("beta_hidden", beta_hidden), ("beta_output", beta_output)):
            if not 0 < beta < 1:
                raise ValueError(f"{name} must be in (0, 1), got {beta!r}.")
        if not surrogate_slope > 0:
            raise ValueError(f"surrogate_slope must be positive, got {surrogate_slope!r}.")
        self.n_hidden, self.surrogate_slope = int(n_hidden), float(surrogate_slope)
        self.beta_hidden, self.beta_output = float(beta_hidden), float(beta_output)
        if int(spatial_filters) != spatial_filters or spatial_filters < 0 or spatial_filters % 2:
            raise ValueError(
                f"spatial_filters must be an even count >= 0, got {spatial_filters!r}."
            )
        self.spatial_filters = int(spatial_filters)
        self.encoding = SpikeEncoding(bands_hz, bin_s, threshold)
        self.encoder: SpikeEncoder | None = None
        """The fitted encoder (its z-score statistics are part of the model file)."""

    def config(self) -> dict[str, Any]:
        return {
            **super().config(),
            "n_hidden": self.n_hidden,
            "beta_hidden": self.beta_hidden,
            "beta_output": self.beta_output,
            "surrogate_slope": self.surrogate_slope,
            "bands_hz": [list(band) for band in self.encoding.bands_hz],
            "bin_s": self.encoding.bin_s,
            "threshold": self.encoding.threshold,
            "spatial_filters": self.spatial_filters,
        }

    # TorchDecoder hooks --------------------------------------------------------------------
    def _build_network(self) -> SpikingNetwork:
        n_channels = len(self.info.eeg.ch_names)
        return SpikingNetwork(
            self.encoder.n_inputs(n_channels), len(self.info.classes), self.n_hidden,
            self.beta_hidden, self.beta_output, self.surrogate_slope,
        )  # fmt: skip

    def _to_tensor(self, windows: np.ndarray) -> torch.Tensor:
        """Spikes, float32 of shape (n_windows, n_steps, n_inputs), on the decoder's device."""
        self._check_windows(windows)
        spikes = self.encoder(windows).transpose(1, 0, 2)
        return torch.from_numpy(np.ascontiguousarray(spikes)).to(self._torch_device())

    def _output_logits(self, output: torch.Tensor) -> torch.Tensor:
        """``RATE_GAIN × spike count / n_steps`` of the output neurons."""
        return output * (
            RATE_GAIN / self.encoding.n_steps(self.info.eeg.n_samples, self.info.eeg.sfreq)
        )

    def _fit(self, windows, targets, info, groups):
        self._check_windows(windows)
        spatial = csp_filters(windows, targets, self.spatial_filters)
        self.encoder = SpikeEncoder(self.encoding, info.eeg.sfreq, spatial=spatial).fit(windows)
        super()._fit(windows, targets, info, groups)

    def _arrays(self):
        return {
            **super()._arrays(),
            "encoder/mean": self.encoder.mean,
            "encoder/scale": self.encoder.scale,
            **({} if self.encoder.spatial is None else {"encoder/spatial": self.encoder.spatial}),
        }

    def _restore(self, arrays):
        self.encoder = SpikeEncoder(
            self.encoding, self.info.eeg.sfreq, arrays["encoder/mean"], arrays["encoder/scale"],
            arrays.get("encoder/spatial"),
        )  # fmt: skip
        super()._restore(arrays)

    # spikes and NIR ------------------------------------------------------------------------
    def encode(self, windows: np.ndarray) -> np.ndarray:
        """The spikes a simulator or chip running the exported graph receives.

        Parameters
        ----------
        windows : array, shape (n_windows, n_samples, n_channels), µV
            Preprocessed EEG windows, as for ``predict_proba`` (the stored alignment is
            applied here).

        Returns
        -------
        spikes : array of float32 in {0, 1}, shape (n_steps, n_windows, n_inputs)
        """
        self._check_fitted("encode()")
        self._check_windows(windows)
        return self.encoder(self._align(windows))

    def export_nir(self, path) -> Path:
        """Write the network as a NIR graph (HDF5, ``nir.write``).

        The graph is ``Input → Affine → LIF → Affine → LIF → Output`` (snnTorch's
        ``export_to_nir``, time constants at ``dt`` = :data:`NIR_DT_S`; see the module
        docstring). It takes one time step of :meth:`encode`'s spikes per step; its output
        spikes counted over a window give the class (the most spikes) and the logits
        (:data:`RATE_GAIN` × count / ``n_steps``). The encoding, the alignment and the
        temperature stay on the host; the metadata holds the time step, ``n_steps``, the
        classes and the decoder's settings (``decoder_config``, JSON).
        """
        self._check_fitted("export_nir()")
        network = self.network.cpu()
        step_module = network.step_module()
        try:
            with torch.no_grad(), warnings.catch_warnings():
                # snnTorch 1.0 calls nirtorch's older tracer, which nirtorch 2 marks deprecated
                warnings.filterwarnings("ignore", "nirtorch.extract_nir_graph", DeprecationWarning)
                graph = export_to_nir(step_module, torch.zeros(network.fc1.in_features))
        finally:
            self.network.to(self._torch_device())
        check_nir_graph(graph)
        spec = self.info.eeg
        graph.metadata = {
            "source": "NeuroLoop SpikingDecoder",
            "nir_dt_s": NIR_DT_S,
            "time_step_s": self.encoding.bin_samples(spec.sfreq) / spec.sfreq,
            "n_steps": self.encoding.n_steps(spec.n_samples, spec.sfreq),
            "readout": "class = argmax of the output spike counts over a window (state reset "
            "between windows); logits = rate_gain * counts / n_steps",
            "rate_gain": RATE_GAIN,
            "classes": json.dumps(list(self.info.classes)),
            "decoder_config": json.dumps(
                {**self.config(), "sfreq": spec.sfreq, "ch_names": list(spec.ch_names)}
            ),
        }
        path = Path(path)
        nir.write(path, graph)
        return path

    def export(self, path, format: str = "nir") -> Path:
        """Write the network as a NIR graph (:meth:`export_nir`); the spike encoding is numpy
        on the host, so there is no TorchScript or ONNX export of the whole decoder."""
        if format != "nir":
            raise ValueError(
                f"a spiking decoder exports format='nir' only (the encoding runs on the host), "
                f"got {format!r}."
            )
        return self.export_nir(path)
