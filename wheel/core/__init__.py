"""Pure vocabulary and arithmetic of the wheel: no I/O."""
