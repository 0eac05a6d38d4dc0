"""Locust load test of the API: creates and reads timers, 3:1.

Start a Redis and the API first (``timer-wheel api --port 8000`` with
``WHEEL_REDIS_URL`` set, or ``timer-wheel dev``), then run headless::

    uv run --group bench locust -f benchmarks/locustfile.py --headless \\
        -u 64 -r 64 -t 30s --host http://127.0.0.1:8000

Each user creates timers (``POST /timer``, weight 3) whose webhook points
at a dummy receiver on 127.0.0.1 (port 9 by default, ``LOCUST_HOOK_URL``
changes it) and that are due in 1 to 24 hours, so nothing fires while the
test runs; and reads back (``GET /timer/<id>``, weight 1) ids it created
itself, reported under one name. Users do not wait between requests.
``benchmarks/api_load.py`` drives the same endpoints with wrk, which
needs far less CPU per request than locust on a small machine.
"""

from __future__ import annotations

import os
import random

from locust import FastHttpUser, constant, task

HOOK_URL = os.environ.get("LOCUST_HOOK_URL", "http://127.0.0.1:9/hook")
KEEP_IDS = 1000


class TimerUser(FastHttpUser):
    """Creates timers and reads back the ones it created."""

    wait_time = constant(0)

    def on_start(self) -> None:
        self.ids: list[str] = []

    @task(3)
    def create(self) -> None:
        body = {
            "url": HOOK_URL,
            "hours": random.randint(1, 24),
            "minutes": random.randint(0, 59),
            "seconds": random.randint(0, 59),
        }
        with self.client.post(
            "/timer", json=body, catch_response=True
        ) as reply:
            if reply.status_code != 201:
                reply.failure(f"status {reply.status_code}")
                return
            timer_id = reply.json()["id"]
            if len(self.ids) >= KEEP_IDS:
                self.ids[random.randrange(KEEP_IDS)] = timer_id
            else:
                self.ids.append(timer_id)

    @task(1)
    def read(self) -> None:
        if not self.ids:
            return
        timer_id = random.choice(self.ids)
        with self.client.get(
            f"/timer/{timer_id}", name="/timer/[id]", catch_response=True
        ) as reply:
            if reply.status_code != 200:
                reply.failure(f"status {reply.status_code}")
            elif reply.json()["id"] != timer_id:
                reply.failure("another timer's body")
