#!/usr/bin/env bash
# A Debian bookworm image with Python 3.11, for building yoloq's images where no registry
# serves python:3.11-slim-bookworm: debootstrap from Debian's packages, then docker import.
# Its Python is Debian's 3.11 (/usr/bin/python3); the Dockerfiles make their own venv, so
# they build the same on this base and on the public one.
#
#   deploy/local/base.sh [TAG]      (root; needs debootstrap and a Docker engine)
set -euo pipefail

tag=${1:-yoloq-local/python:3.11-bookworm}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
docker=${DOCKER:-docker}

if $docker image inspect "$tag" >/dev/null 2>&1; then
    echo "base $tag already built"
    exit 0
fi
command -v debootstrap >/dev/null || apt-get install -y -q debootstrap

root=$(mktemp -d /var/tmp/yoloq-base.XXXXXX)
trap 'rm -rf "$root"' EXIT
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
    bookworm "$root" "$mirror"
# The CAs this host's admin added (a TLS-intercepting proxy, a private mirror): builds
# from this base reach PyPI and Debian the way the host does.
if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
    cp /usr/local/share/ca-certificates/*.crt "$root"/usr/local/share/ca-certificates/
    chroot "$root" update-ca-certificates
fi
# What a slim image leaves out: package lists, caches and documentation.
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin \
    "$root"/var/cache/apt/archives/*.deb "$root"/usr/share/doc/* "$root"/usr/share/man/*
tar -C "$root" -c . | $docker import \
    --change 'ENV LANG=C.UTF-8' \
    --change 'CMD ["python3"]' \
    - "$tag"
echo "base $tag built from Debian bookworm ($mirror)"
