"""Tests of the stimulation policies and the phase-locked trigger (bci.control)."""
