"""Fault injection, end to end: each test breaks one part of a running session for real (a
source, its clock, its data, the stimulator's port, the decoder, the console, the recorder, the
disk) and checks that stimulation stays safe, the fault is recorded and said, and nothing
already acquired is lost. ``make faults`` runs them (~3.5 minutes; not part of ``make test``)."""
