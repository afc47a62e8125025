# Reconciler: payment status reconciliation service.
#
#   docker build -t reconciler .            (podman: add --format docker, or the
#                                            HEALTHCHECK below is dropped from the image)
#   docker run --rm -p 8000:8000 -e RECONCILER_DATABASE_URL=postgresql+psycopg://... reconciler
#
# Without RECONCILER_DATABASE_URL it runs on SQLite in /app (one replica, data lost with
# the container unless /app is a volume). `reconciler serve` migrates the database (the
# migrations ship inside the package), then serves the API with waitress and the sweep
# running in-process. Every command reads RECONCILER_<NAME>_FILE=<path> itself (a secret
# mounted as a file), `docker compose exec … reconciler …` included: no entrypoint script.
#
# Layers: the dependencies come from requirements.lock (exact versions, every hash
# checked) in their own layer, rebuilt only when the lock changes; the app is a small layer
# of its own on top, built from the source with the locked build backend and no network.
# The runtime stage has neither pip nor setuptools. `make image-check` builds and
# smoke-tests this image (read-only root included).

# One exact tag for every stage (bump it deliberately; pin a digest where the registry is
# reachable at build time).
ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm

# --- Dependencies: the only stage that reaches the package index ---------------------------
FROM ${PYTHON_IMAGE} AS deps

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
# The runtime venv never gets pip: the image's pip installs into it from outside.
RUN python -m venv --without-pip /opt/venv \
    && python -m venv /opt/build
COPY requirements.lock requirements-build.lock /tmp/locks/
RUN python -m pip --python /opt/venv/bin/python install --require-hashes --no-deps \
        --requirement /tmp/locks/requirements.lock \
    && /opt/build/bin/pip install --require-hashes --no-deps \
        --requirement /tmp/locks/requirements-build.lock

# --- The app: built and installed offline, staged under /out for its own layer -------------
FROM deps AS app

WORKDIR /src
COPY pyproject.toml README.md alembic.ini ./
COPY migrations ./migrations
COPY reconciler ./reconciler
RUN /opt/build/bin/pip wheel --no-deps --no-build-isolation --no-index --wheel-dir /wheels . \
    && python -m pip --python /opt/venv/bin/python install --no-deps --no-index \
        --root /out /wheels/reconciler-*.whl

# --- Runtime ---------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE}

ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown
LABEL org.opencontainers.image.title="reconciler" \
      org.opencontainers.image.description="Payment status reconciliation: webhooks first, backoff polling for the rest." \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.base.name="${PYTHON_IMAGE}"

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/venv/bin:$PATH \
    RECONCILER_HOST=0.0.0.0 \
    RECONCILER_PORT=8000

# No installer in the runtime: pip, setuptools and wheel go (wherever the base keeps them).
RUN set -eu; \
    for module in pip setuptools wheel pkg_resources _distutils_hack; do \
        dir=$(python -c "import importlib.util as u, os, sys; s = u.find_spec(sys.argv[1]); print(os.path.dirname(s.origin) if s and s.origin else '')" "$module"); \
        if [ -n "$dir" ]; then rm -rf "$dir" "$dir"-*.dist-info "$(dirname "$dir")/distutils-precedence.pth"; fi; \
    done; \
    rm -f /usr/local/bin/pip /usr/local/bin/pip3 /usr/local/bin/pip3.* /usr/local/bin/wheel; \
    python -c "import importlib.util as u, sys; sys.exit(any(u.find_spec(m) for m in ('pip', 'setuptools')))"; \
    groupadd --system --gid 10001 reconciler; \
    useradd --system --uid 10001 --gid reconciler --home-dir /app --no-create-home \
        --shell /usr/sbin/nologin reconciler; \
    mkdir -p /app /run/reconciler; \
    chown 10001:10001 /app /run/reconciler

# Two layers: the dependencies (changed by the lock only), then the app (every code change).
COPY --from=deps /opt/venv /opt/venv
COPY --from=app /out/opt/venv/ /opt/venv/

WORKDIR /app
USER 10001:10001
EXPOSE 8000

HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('RECONCILER_PORT', '8000'), timeout=4)"]

CMD ["reconciler", "serve"]
