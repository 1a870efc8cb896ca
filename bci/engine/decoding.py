"""The session's decoder: checked against the session's inputs before anything starts, fitted on
the calibration block on a worker thread (the loop keeps pulling and watching meanwhile), then
read at every decision."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from bci.acquire import RingBuffer
from bci.decode import Decoder, DecoderInfo, select_inputs
from bci.engine.calibration import calibration_windows, windows_ending_at
from bci.engine.fitting import FitJob, input_indices, new_decoder
from bci.protocol import Protocol


class SessionDecoder:
    """Fits the protocol's decoder on the calibration block and reads it on each window.

    Parameters
    ----------
    protocol : Protocol
        The validated session protocol.
    info : DecoderInfo
        The inputs this session offers a decoder, channels in stream order. A pretrained model
        that needs an input the session lacks is refused here (ValueError), not after the
        calibration block.
    """

    def __init__(self, protocol: Protocol, info: DecoderInfo) -> None:
        self.protocol, self.info = protocol, info
        if protocol.decoder.model is not None:
            input_indices(new_decoder(protocol), info)
        self.decoder: Decoder | None = None
        """The fitted decoder (None until the fit is done)."""
        self._job: FitJob | None = None
        self._n_nirs = 0
        """fNIRS window of the decoder, samples (0: it reads none)."""
        self._nirs_index = np.arange(0)
        """Column of each of the decoder's fNIRS channels in the stream."""

    @property
    def fitting(self) -> bool:
        """Whether a fit was started and its result not yet taken."""
        return self._job is not None

    def start_fit(self, processed: RingBuffer, nirs_processed: RingBuffer | None,
                  cues: list[tuple[float, str]], sfreq: float,
                  keep_model: Callable | None = None) -> None:  # fmt: skip
        """Cut the calibration windows now and fit on a worker thread.

        Parameters
        ----------
        processed : RingBuffer
            The preprocessed EEG.
        nirs_processed : RingBuffer | None
            The preprocessed fNIRS, if the session has it.
        cues : list of (float, str)
            (time, label) of every calibration cue.
        sfreq : float
            EEG rate, Hz.
        keep_model : callable | None
            ``keep_model(decoder) -> dict | None``, run on the worker after the fit.
        """
        if self._job is not None:
            raise RuntimeError("a fit is under way: call finished_fit() until it returns it")
        pre, dec = self.protocol.preprocessing, self.protocol.decoder
        eeg, labels, groups, ends = calibration_windows(processed, cues, sfreq, dec, pre)
        windows = {"eeg": eeg}
        if (nirs := self.info.nirs) is not None:
            windows["nirs"] = windows_ending_at(nirs_processed, ends, nirs.n_samples, nirs.sfreq)
        self._job = FitJob(self.protocol, windows, labels, groups, self.info, keep_model)

    def finished_fit(self) -> FitJob | None:
        """The fit's job once it is done (:attr:`decoder` is then set; ``result()`` re-raises
        what the fit raised), else None."""
        if self._job is None:
            raise RuntimeError("no fit is under way: call start_fit() first")
        if not self._job.done():
            return None
        job, self._job = self._job, None
        self.decoder, _ = job.result()
        if self.decoder.info.nirs is not None:  # the model's fNIRS channels, by name
            self._n_nirs = self.decoder.info.nirs.n_samples
            self._nirs_index = input_indices(self.decoder, self.info)["nirs"]
        return job

    def predict(self, window: np.ndarray, nirs_processed: RingBuffer | None) -> np.ndarray:
        """Class probabilities of one window, shape (n_classes,).

        Parameters
        ----------
        window : array, shape (n_samples, n_picks)
            The newest preprocessed EEG window.
        nirs_processed : RingBuffer | None
            The preprocessed fNIRS (its newest window is read when the decoder reads fNIRS).
        """
        inputs = {"eeg": window[None]}
        if self._n_nirs:
            nirs, _ = nirs_processed.latest(self._n_nirs)
            inputs["nirs"] = nirs[None, :, self._nirs_index]
        return self.decoder.predict_proba(select_inputs(self.decoder.info, inputs))[0]
