"""The background roles: ticker and worker."""
