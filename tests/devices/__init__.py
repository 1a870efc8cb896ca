"""Serial stimulator drivers tested against their emulators on real pseudo-terminals."""
