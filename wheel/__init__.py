"""timer-wheel: durable webhook timers on a Redis time wheel."""

__version__ = "0.1.0"
