# Reconciler: payment status reconciliation service.
#
#   docker build -t reconciler .
#   docker run --rm -p 8000:8000 -e RECONCILER_DATABASE_URL=postgresql+psycopg://... reconciler
#
# Without RECONCILER_DATABASE_URL it runs on SQLite in /app (one replica, data lost with
# the container unless /app is a volume). `reconciler serve` migrates the database (the
# migrations ship inside the package), then serves the API with waitress and the sweep
# running in-process. Any RECONCILER_<NAME>_FILE=<path> is read into RECONCILER_<NAME>
# (docker/entrypoint.sh), for secrets mounted as files.

# One exact tag for both stages (bump it deliberately; pin a digest where the registry is
# reachable at build time).
ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/venv/bin:$PATH
RUN python -m venv /opt/venv

WORKDIR /src
# The dependency layer: rebuilt only when pyproject.toml changes, not on every code edit.
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > requirements.txt \
    && pip install --requirement requirements.txt

COPY README.md alembic.ini ./
COPY migrations ./migrations
COPY reconciler ./reconciler
RUN pip install --no-deps .

FROM ${PYTHON_IMAGE}

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/venv/bin:$PATH \
    RECONCILER_HOST=0.0.0.0 \
    RECONCILER_PORT=8000

RUN groupadd --system --gid 10001 reconciler \
    && useradd --system --uid 10001 --gid reconciler --home-dir /app --no-create-home \
        --shell /usr/sbin/nologin reconciler \
    && mkdir -p /app /run/reconciler \
    && chown 10001:10001 /app /run/reconciler

COPY --from=build /opt/venv /opt/venv
COPY docker/entrypoint.sh /usr/local/bin/reconciler-entrypoint

WORKDIR /app
USER 10001:10001
EXPOSE 8000

HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('RECONCILER_PORT', '8000'), timeout=4)"]

ENTRYPOINT ["reconciler-entrypoint"]
CMD ["reconciler", "serve"]
