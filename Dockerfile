# uploads-api: one image for every process of a deployment. The default command serves the
# API, with its data in the /data volume; the same image runs `uploads-api worker`,
# `uploads-api scheduler`, `uploads-api db upgrade` and `uploads-api keys ...`
# (compose.yaml runs the whole cluster from it).
#
#   docker build -t uploads-api .
#   docker run --rm -v uploads:/data uploads-api uploads-api keys create me   # prints the key once
#   docker run -p 127.0.0.1:8000:8000 -v uploads:/data uploads-api
#
# The container binds all interfaces (UPLOADS_HOST=0.0.0.0) so that a published port
# reaches it, and `serve` refuses to start on a public interface while no API key exists:
# create a key on the volume first, as above. Send it as `Authorization: Bearer <key>`.
#
# Settings are UPLOADS_* environment variables (docs/configuration.md); deployments are in
# docs/deploy.md. A bind-mounted data dir must be writable by uid 10001.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore

# Every dependency ships manylinux wheels (Pillow and pillow-heif bundle their codecs;
# asyncpg, boto3 and celery[redis] are wheels too), so the slim image needs no compiler and
# no system packages. The `cluster` extra adds PostgreSQL, S3 and Celery support, so the
# same image serves the single-container default and every role of the cluster. Package
# data (the page in uploads_api/web, the Alembic migrations) is installed with the package.
WORKDIR /src
COPY pyproject.toml README.md ./
COPY uploads_api ./uploads_api
RUN pip install --no-cache-dir ".[cluster]" \
    && rm -rf /src \
    && groupadd --system --gid 10001 uploads \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin uploads \
    && mkdir -p /data \
    && chown 10001:10001 /data

ENV UPLOADS_DATA_DIR=/data \
    UPLOADS_HOST=0.0.0.0

VOLUME /data
WORKDIR /data
USER 10001:10001
EXPOSE 8000

# For the API. The slim image has no curl; Python's urllib fails on anything but a 2xx
# answer. Containers running a worker or the scheduler serve no HTTP: give them their own
# check or none (compose.yaml does; `docker run --no-healthcheck` otherwise).
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('UPLOADS_PORT', '8000') + '/healthz', timeout=4)"]

# uvicorn shuts down gracefully on SIGTERM, for up to UPLOADS_SHUTDOWN_GRACE_SECONDS + 5 s
# (15 s by default): give `docker stop` a longer timeout (-t 20) to let tasks finish. Tasks
# cut short by a kill are run again after their lease lapses.
CMD ["uploads-api", "serve"]
