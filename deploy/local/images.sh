#!/usr/bin/env bash
# `make images`: yoloq-api and yoloq-worker, from the public Python base when it can be
# pulled, else from a local Debian base (base.sh). PYTHON_IMAGE=... picks one yourself.
# `--standins` also builds the Redis and S3 stand-ins that `make images-test` runs.
set -euo pipefail
cd "$(dirname "$0")/../.."
docker=${DOCKER:-docker}
public=python:3.11-slim-bookworm
local_base=yoloq-local/python:3.11-bookworm

deploy/local/engine.sh

base=${PYTHON_IMAGE:-}
if [ -z "$base" ]; then
    if $docker image inspect "$public" >/dev/null 2>&1 \
        || timeout 120 $docker pull -q "$public" >/dev/null 2>&1; then
        base=$public
    else
        echo "cannot pull $public: building on a local Debian base instead"
        deploy/local/base.sh "$local_base"
        base=$local_base
    fi
fi

build() {  # tag dockerfile [build-arg]
    local tag=$1 file=$2 arg=${3:-PYTHON_IMAGE=$base} start=$SECONDS
    # Host network: the build reaches PyPI and Debian the way this host does.
    $docker build --network host --build-arg "$arg" -f "$file" -t "$tag" .
    echo "$tag: built in $((SECONDS - start)) s, $($docker image inspect -f '{{.Size}}' "$tag" \
        | awk '{printf "%.0f MB", $1 / 1e6}') (base $base)" | tee -a "${IMAGES_REPORT:-/dev/null}"
}

build yoloq-api Dockerfile.api
build yoloq-worker Dockerfile.worker
if [ "${1:-}" = --standins ]; then
    [ "$base" = "$local_base" ] || deploy/local/base.sh "$local_base"
    build yoloq-local/redis deploy/local/Dockerfile.redis "BASE_IMAGE=$local_base"
    build yoloq-local/s3 deploy/local/Dockerfile.s3 "BASE_IMAGE=$local_base"
fi
