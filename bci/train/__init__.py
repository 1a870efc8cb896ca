"""Training decoders offline: from recording files (``bci train fit`` / ``evaluate``) and from
simulated populations.

Submodules: ``files`` reads recordings (MNE-readable formats and XDF), ``epochs`` runs them
through the engine's preprocessing and cuts labeled windows, ``settings`` settles what to train
with, ``scoring`` scores trials, ``commands`` holds the fit and evaluate workflows.
"""

from bci.train.files import Recording, TrainingInputError, read_recording

__all__ = ["Recording", "TrainingInputError", "read_recording"]
