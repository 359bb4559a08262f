#!/usr/bin/env bash
# Builds Shoal's images without an image registry (as root, with dockerd running):
#
#   shoal-base:local      Debian bookworm from Debian's own packages (debootstrap),
#                         Python 3.11 with a venv on /usr/local for `python` and `pip`
#   shoal:local           the root Dockerfile, FROM that base
#   shoal-temporal:local  the Temporal CLI's development server (deploy/temporal.Dockerfile)
#
# Then: docker-compose -f docker-compose.cluster.yml -f deploy/compose.offline.yml up -d
#
# The base is made once and kept; SHOAL_REBUILD_BASE=1 makes it again. pip in
# the builds reaches the package index as the host's pip does: over the host's
# network, trusting the host's CA bundle (copied into the base).
set -euo pipefail
cd "$(dirname "$0")/.."

base=${SHOAL_BASE_IMAGE:-shoal-base:local}
suite=bookworm

# The mirror apt already uses (deb822 or one-line sources), else Debian's own.
mirror() {
    local uri
    uri=$(grep -hs -m1 -E '^URIs:' /etc/apt/sources.list.d/*.sources | awk '{print $2}' || true)
    if [ -z "$uri" ]; then
        uri=$(grep -hs -m1 -E '^deb ' /etc/apt/sources.list | awk '{print $2}' || true)
    fi
    echo "${uri:-http://deb.debian.org/debian}"
}

make_base() {
    local root
    root=$(mktemp -d /tmp/shoal-base.XXXXXX)
    # shellcheck disable=SC2064  # expand now: the trap must remove this directory
    trap "rm -rf '$root'" RETURN
    debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
        "$suite" "$root" "$(mirror)" >/dev/null
    chroot "$root" python3 -m venv /usr/local
    cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
    rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
    tar -C "$root" -c . | docker import \
        --change 'ENV PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'ENV LANG=C.UTF-8' \
        --change 'ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt' \
        --change 'CMD ["python"]' \
        - "$base" >/dev/null
}

if [ -n "${SHOAL_REBUILD_BASE:-}" ] || ! docker image inspect "$base" >/dev/null 2>&1; then
    echo "making $base from Debian's packages ($(mirror))"
    make_base
fi
echo "building shoal:local"
DOCKER_BUILDKIT=0 docker build --quiet --network host --build-arg "BASE_IMAGE=$base" -t shoal:local . >/dev/null
echo "building shoal-temporal:local"
DOCKER_BUILDKIT=0 docker build --quiet --network host --build-arg "BASE_IMAGE=$base" -t shoal-temporal:local \
    -f deploy/temporal.Dockerfile deploy >/dev/null
docker image ls --format '{{.Repository}}:{{.Tag}} {{.Size}}' | grep -E '^shoal' || true
