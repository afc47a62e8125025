# Reconciler: payment status reconciliation service.
#
#   docker build -t reconciler .
#   docker run --rm -p 8000:8000 -e RECONCILER_DATABASE_URL=postgresql+psycopg://... reconciler
#
# Without RECONCILER_DATABASE_URL it runs on SQLite in /app (one replica, data lost
# with the container unless /app is a volume). `reconciler serve` migrates the
# database, then serves the API with gunicorn and the sweep running in-process.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN groupadd --system --gid 10001 reconciler \
    && useradd --system --uid 10001 --gid reconciler --home-dir /app --no-create-home \
        --shell /usr/sbin/nologin reconciler

WORKDIR /src
COPY . .
# The Alembic scripts (./migrations) are not part of the wheel: keep them in the
# image's working directory, where `reconciler serve` / `reconciler db upgrade`
# look for them (RECONCILER_MIGRATIONS_DIR makes that independent of the cwd).
RUN pip install . \
    && mkdir -p /app \
    && cp -r migrations /app/migrations \
    && cd / && rm -rf /src \
    && chown reconciler:reconciler /app

WORKDIR /app
USER reconciler

ENV RECONCILER_HOST=0.0.0.0 \
    RECONCILER_PORT=8000 \
    RECONCILER_MIGRATIONS_DIR=/app/migrations
EXPOSE 8000

HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD python -c "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('RECONCILER_PORT', '8000'), timeout=4)" || exit 1

CMD ["reconciler", "serve"]
