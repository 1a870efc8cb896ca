"""Controllers: decoder output in, requested stimulation out (the governor has the last word)."""

from bci.control.proportional import ProportionalController, ProportionalSettings

__all__ = ["ProportionalController", "ProportionalSettings"]
