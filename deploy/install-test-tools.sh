#!/usr/bin/env bash
# Debian tools the fault drills need (as root): strace injects fsync errors
# into a running node, iptables cuts links between network namespaces, fuse3
# mounts the power-cut file system, faketime skews node clocks; the container
# drills run the compose cluster on Debian's Docker engine and docker-compose
# 1.29, with images made from Debian's packages by debootstrap (the tests
# start dockerd when none runs, and stop it). Installs only what is missing.
set -euo pipefail
missing=()
for tool in strace iptables fusermount3 faketime dockerd docker-compose debootstrap; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        case "$tool" in
            fusermount3) missing+=(fuse3) ;;
            dockerd) missing+=(docker.io) ;;
            *) missing+=("$tool") ;;
        esac
    fi
done
if [ "${#missing[@]}" -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "install these Debian packages to run every drill: ${missing[*]}" >&2
        exit 0
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
fi
