"""The safety governor: the only road to a stimulator."""
