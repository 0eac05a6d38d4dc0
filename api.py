"""uvicorn's target: ``uvicorn api:app`` serves the timer-wheel API.

The application is built in :mod:`wheel.api.app`; this module only makes
one from the environment's settings.
"""

from wheel.api.app import create_app

app = create_app()
