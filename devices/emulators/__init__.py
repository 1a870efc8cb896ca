"""Serial stimulator emulators on pseudo-terminals, faithful to their devices' timeouts and
error replies, so the drivers are tested against something that answers like the hardware."""
