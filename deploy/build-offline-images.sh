#!/usr/bin/env bash
# Builds Shoal's images without an image registry (as root, with dockerd running):
#
#   shoal-base:local      Debian bookworm from Debian's own packages (debootstrap),
#                         Python 3.11 with a venv on /usr/local for `python` and `pip`
#   shoal:local           the root Dockerfile, FROM that base
#   shoal-temporal:local  the Temporal CLI's development server (deploy/temporal.Dockerfile)
#
# Then: docker-compose -p shoal -f docker-compose.cluster.yml -f deploy/compose.offline.yml up -d
#
# The base is made again whenever its recipe or the host's CA bundle changed
# (a label on the image records both); SHOAL_REBUILD_BASE=1 forces it. No
# image is pulled; pip in the builds still reaches the package index, as the
# host's pip does: over the host's network (--network host), trusting the
# host's CA bundle (copied into the base).
set -euo pipefail
cd "$(dirname "$0")/.."

base=${SHOAL_BASE_IMAGE:-shoal-base:local}
suite=bookworm
root=""
trap '[ -z "$root" ] || rm -rf --one-file-system "$root"' EXIT

# The Debian mirror apt already uses (deb822 or one-line sources, options in
# [...] skipped), else Debian's own.
mirror() {
    local uri=""
    uri=$(cat /etc/apt/sources.list.d/*.sources 2>/dev/null \
        | awk '/^URIs:/ {print $2; exit}') || true
    if [ -z "$uri" ]; then
        uri=$(sed -E 's/\[[^]]*\]//' /etc/apt/sources.list 2>/dev/null \
            | awk '$1 == "deb" {print $2; exit}') || true
    fi
    echo "${uri:-http://deb.debian.org/debian}"
}

make_base() {
    root=$(mktemp -d /tmp/shoal-base.XXXXXX)
    debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
        "$suite" "$root" "$(mirror)" >/dev/null
    chroot "$root" python3 -m venv /usr/local
    cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
    rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
    tar -C "$root" -c . | docker import \
        --change 'ENV PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'ENV LANG=C.UTF-8' \
        --change 'ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt' \
        --change "LABEL shoal.base.recipe=$1" \
        --change 'CMD ["python"]' \
        - "$base" >/dev/null
    rm -rf --one-file-system "$root"
    root=""
}

if ! docker info >/dev/null 2>&1; then
    echo "no Docker engine answers (start it as root: dockerd &)" >&2
    exit 1
fi
recipe=$( (declare -f make_base; echo "$suite"; cat /etc/ssl/certs/ca-certificates.crt) \
    | sha256sum | cut -c1-16)
held=$(docker image inspect -f '{{index .Config.Labels "shoal.base.recipe"}}' "$base" \
    2>/dev/null || true)
if [ -n "${SHOAL_REBUILD_BASE:-}" ] || [ "$held" != "$recipe" ]; then
    for tool in debootstrap chroot; do
        command -v "$tool" >/dev/null || { echo "$tool is missing (apt-get install $tool)" >&2; exit 1; }
    done
    if [ "$(id -u)" -ne 0 ]; then
        echo "making $base needs root (debootstrap and chroot)" >&2
        exit 1
    fi
    echo "making $base from Debian's packages ($(mirror))"
    make_base "$recipe"
fi
# The legacy builder: BuildKit would fetch the `# syntax=` frontend image.
export DOCKER_BUILDKIT=0
echo "building shoal:local"
docker build --network host --build-arg "BASE_IMAGE=$base" -t shoal:local .
echo "building shoal-temporal:local"
docker build --network host --build-arg "BASE_IMAGE=$base" -t shoal-temporal:local \
    -f deploy/temporal.Dockerfile deploy
docker image ls --format '{{.Repository}}:{{.Tag}} {{.Size}}' | grep -E '^shoal' || true
