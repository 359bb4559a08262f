# syntax=docker/dockerfile:1
# Shoal node (and worker) image: docker build -t shoal .
#   (no registry? bash deploy/build-offline-images.sh builds it FROM a base
#    made from Debian's packages: --build-arg BASE_IMAGE=shoal-base:local)
#   docker run -p 127.0.0.1:7700:7700 -e SHOAL_API_KEY -v shoal-data:/data shoal   one node
#     (it listens on all the container's addresses: without SHOAL_API_KEY or
#      SHOAL_KEYS_FILE it refuses to start, unless SHOAL_INSECURE=1)
#   docker run shoal worker                                      the question worker
# The build is the one tests/deploy/test_image_build.py repeats on every CI run:
# pip builds this project's wheel from its own pyproject.toml (no dev extra),
# installs it, and `shoal serve` from that install answers the HEALTHCHECK.

ARG BASE_IMAGE=python:3.11-slim

FROM ${BASE_IMAGE} AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY node ./node
COPY indexes ./indexes
COPY wal ./wal
COPY replication ./replication
COPY cluster ./cluster
COPY temporal ./temporal
COPY sdk ./sdk
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM ${BASE_IMAGE}
RUN groupadd --system --gid 10001 shoal \
    && useradd --system --uid 10001 --gid shoal --create-home --home-dir /home/shoal shoal \
    && mkdir -p /data && chown shoal:shoal /data
COPY --from=build /wheels /wheels
# The dependencies at the versions of deploy/requirements.lock (audited in CI).
COPY deploy/requirements.lock /wheels/requirements.lock
RUN pip install --no-cache-dir -r /wheels/requirements.lock /wheels/*.whl && rm -rf /wheels
USER shoal
WORKDIR /home/shoal
ENV SHOAL_HOST=0.0.0.0 \
    SHOAL_PORT=7700 \
    SHOAL_DATA_DIR=/data \
    PYTHONUNBUFFERED=1 \
    NUMBA_CACHE_DIR=/home/shoal/.cache/numba
# Compile the index kernels into numba's cache now, not at the first start.
RUN python -m indexes.warmup
VOLUME ["/data"]
EXPOSE 7700
HEALTHCHECK --interval=10s --timeout=3s --start-period=120s --retries=3 \
    CMD ["python", "-c", "import os, ssl, sys, urllib.request; port = os.environ.get('SHOAL_PORT', '7700'); tls = bool(os.environ.get('SHOAL_TLS_CERT')); url = f\"{'https' if tls else 'http'}://127.0.0.1:{port}/health\"; sys.exit(0 if urllib.request.urlopen(url, timeout=2, context=ssl._create_unverified_context() if tls else None).status == 200 else 1)"]
ENTRYPOINT ["shoal"]
CMD ["serve"]
