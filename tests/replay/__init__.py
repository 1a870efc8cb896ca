"""Tests of bci.replay: loading every stream of a recording, and exporting it through MNE."""
