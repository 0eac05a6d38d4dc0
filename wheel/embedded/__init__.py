"""Private redis-server processes, for dev and the tests only."""
