# uploads-api: one container serving the API, with its data in the /data volume.
#
#   docker build -t uploads-api .
#   docker run -p 127.0.0.1:8000:8000 -v uploads-data:/data uploads-api
#
# Settings are UPLOADS_* environment variables (docs/configuration.md). A bind-mounted
# data dir must be writable by uid 10001.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore

# Every dependency ships manylinux wheels (Pillow and pillow-heif bundle their codecs),
# so the slim image needs no compiler and no system packages.
WORKDIR /src
COPY pyproject.toml ./
COPY uploads_api ./uploads_api
RUN pip install --no-cache-dir . \
    && rm -rf /src \
    && groupadd --system --gid 10001 uploads \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin uploads \
    && mkdir -p /data \
    && chown 10001:10001 /data

# The container binds all interfaces so that a published port reaches it. The API has no
# authentication: publish the port on loopback (as above) or behind an authenticating proxy.
ENV UPLOADS_DATA_DIR=/data \
    UPLOADS_HOST=0.0.0.0

VOLUME /data
WORKDIR /data
USER 10001:10001
EXPOSE 8000

# The slim image has no curl; Python's urllib fails on anything but a 2xx answer.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('UPLOADS_PORT', '8000') + '/healthz', timeout=4)"]

# uvicorn shuts down gracefully on SIGTERM, for up to UPLOADS_SHUTDOWN_GRACE_SECONDS + 5 s
# (15 s by default): give `docker stop` a longer timeout (-t 20) to let tasks finish. Tasks
# cut short by a kill are run again after their lease lapses.
CMD ["uploads-api", "serve"]
