# syntax=docker/dockerfile:1
# prober: dependency-health sidecar. Build: docker build -t prober .
# Run: docker run --read-only -v ./prober.yaml:/etc/prober/prober.yaml:ro -p 127.0.0.1:9478:9478 prober

ARG PYTHON_IMAGE=python:3.11-slim

# --- build: the project's wheel, and the wheels of its dependencies exactly as requirements.lock pins
# them (versions and sha256 hashes: two images built from one commit carry the same bytes) ---
FROM ${PYTHON_IMAGE} AS build
WORKDIR /src
COPY pyproject.toml README.md requirements.lock ./
COPY prober ./prober
RUN pip download --no-cache-dir --require-hashes --only-binary=:all: --dest /wheels -r requirements.lock \
    && pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

# --- runtime: no compilers, no pip cache, no wheels left behind, a non-root user ---
FROM ${PYTHON_IMAGE}
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="prober" \
      org.opencontainers.image.description="Dependency-health prober sidecar: probes databases, caches, object storage, HTTP endpoints and TLS certificates; exports Prometheus metrics and a JSON /status." \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="docker.io/library/python:3.11-slim"

# Nothing is written at run time: no bytecode caches (read-only root filesystem friendly), unbuffered logs.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# Offline, from the wheels above: the dependencies checked against the lock's hashes again, then the
# project itself without resolving anything more.
COPY requirements.lock /tmp/requirements.lock
# hadolint ignore=DL3013
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-index --find-links=/wheels --require-hashes -r /tmp/requirements.lock \
    && pip install --no-cache-dir --no-index --no-deps /wheels/prober-*.whl \
    && rm /tmp/requirements.lock \
    && groupadd --system --gid 10001 prober \
    && useradd --system --uid 10001 --gid prober --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin prober \
    && mkdir -p /etc/prober

# Config: mount a file at /etc/prober/prober.yaml (used when present), else targets come from
# DATABASE_URL, REDIS_URL, ... (the zero-config default). Secrets: mount files and use <field>_file keys.
USER 10001:10001
EXPOSE 9478

# The prober's own CLI: GET http://127.0.0.1:9478/healthz, exit 0 or 1. No curl in the image.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 CMD ["prober", "healthcheck"]

# The daemon is PID 1: it handles SIGTERM/SIGINT (graceful stop) and SIGHUP (reload) itself.
STOPSIGNAL SIGTERM
ENTRYPOINT ["prober"]
CMD ["run"]
