"""Redis: the only code that spells a key or a command."""
