#!/usr/bin/env bash
# Build the kubetfx component image with whatever works here: a Docker engine, else podman
# (or buildah). Names and tags come from images/images.env.
#
#   images/build.sh [cpu|gpu|worker]   (make image builds cpu, then worker: Beam's SDK worker; make image-gpu)
#
# Base image: BASE if set; else KUBETFX_BASE_IMAGE (python:3.11-slim) when it is present or can
# be pulled; else, with podman and root, images/base/build-base.sh builds a registry-free base
# from Debian packages (KUBETFX_LOCAL_BASE_IMAGE). It says which engine and base it used, and why.
# Rebuilds are layer-cached: only changed source is copied again.
set -euo pipefail
cd "$(dirname "$0")/.."
set -a; . images/images.env; set +a

variant=${1:-cpu}
case "$variant" in
  cpu) image=${IMAGE:-$KUBETFX_IMAGE}; extra="" ;;
  gpu) image=${GPU_IMAGE:-$KUBETFX_GPU_IMAGE}; extra="and-cuda" ;;
  worker) image=${WORKER_IMAGE:-$KUBETFX_WORKER_IMAGE}; extra="" ;;
  *) echo "images/build.sh: unknown variant '$variant' (cpu, gpu or worker)" >&2; exit 2 ;;
esac
say() { echo "make image: $*"; }
die() { echo "make image: $*" >&2; exit 1; }

# podman/buildah in a rootful sandbox need a few settings (images/podman/containers.conf).
export CONTAINERS_CONF=${CONTAINERS_CONF:-$PWD/images/podman/containers.conf}

engine=""; why=()
if command -v docker >/dev/null 2>&1; then
  if docker info >/dev/null 2>&1; then engine=docker
  else why+=("docker: the CLI is installed but no Docker engine answers (docker info failed)"); fi
else why+=("docker: not installed"); fi
if [ -z "$engine" ]; then
  if command -v podman >/dev/null 2>&1; then
    if podman info >/dev/null 2>&1; then engine=podman
    else why+=("podman: installed but 'podman info' fails: $(podman info 2>&1 | tail -n1)"); fi
  else why+=("podman: not installed"); fi
fi
if [ -z "$engine" ] && command -v buildah >/dev/null 2>&1; then engine=buildah; fi
if [ -z "$engine" ]; then
  printf 'make image: no container engine works here:\n' >&2
  printf '  - %s\n' "${why[@]}" >&2
  die "install Docker, or podman + buildah + runc (Debian: apt-get install -y podman buildah runc debootstrap)"
fi
[ ${#why[@]} -eq 0 ] || say "using $engine (${why[0]})"

exists() {
  case "$engine" in
    docker) docker image inspect "$1" >/dev/null 2>&1 ;;
    podman) podman image exists "$1" ;;
    buildah) buildah inspect --type image "$1" >/dev/null 2>&1 ;;
  esac
}
pull() {
  case "$engine" in
    docker) docker pull -q "$1" >/dev/null 2>&1 ;;
    *) timeout 120 "$engine" pull -q "$1" >/dev/null 2>&1 ;;
  esac
}

if [ "$variant" = worker ]; then  # the component image + Beam's boot binary (images/worker/Dockerfile)
  component=${IMAGE:-$KUBETFX_IMAGE}
  exists "$component" || die "the worker image builds on the component image $component: build it first (make image)"
  engines/engines.sh boot build/beam-boot
  say "building $image from $component with $engine"
  args=(-f images/worker/Dockerfile -t "$image" --build-arg "BASE=$component" build/beam-boot)
  case "$engine" in
    docker) docker build "${args[@]}" ;;
    podman) podman build "${args[@]}" ;;
    buildah) buildah bud "${args[@]}" ;;
  esac
  say "built $image"
  exit 0
fi

base=${BASE:-}
if [ -z "$base" ]; then
  if exists "$KUBETFX_BASE_IMAGE" || pull "$KUBETFX_BASE_IMAGE"; then
    base=$KUBETFX_BASE_IMAGE
  elif [ "$engine" != docker ] && exists "$KUBETFX_LOCAL_BASE_IMAGE"; then
    base=$KUBETFX_LOCAL_BASE_IMAGE
    say "base $KUBETFX_BASE_IMAGE cannot be pulled (no registry); reusing $base"
  elif [ "$engine" != docker ]; then
    say "base $KUBETFX_BASE_IMAGE cannot be pulled (no registry); building $KUBETFX_LOCAL_BASE_IMAGE from Debian packages"
    images/base/build-base.sh "$KUBETFX_LOCAL_BASE_IMAGE"
    base=$KUBETFX_LOCAL_BASE_IMAGE
  else
    die "base $KUBETFX_BASE_IMAGE is not present and cannot be pulled; set BASE=<an image with Python 3.11>"
  fi
fi

version=$(sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml | head -n1)
revision=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
args=(-f images/component/Dockerfile -t "$image" --build-arg "BASE=$base" --build-arg "TENSORFLOW_EXTRA=$extra"
      --build-arg "VERSION=$version" --build-arg "IMAGE=$image" --build-arg "REVISION=$revision")
say "building $image ($variant) from $base with $engine"
started=$(date +%s)
case "$engine" in
  docker) DOCKER_BUILDKIT=1 docker build "${args[@]}" . ;;
  podman) podman build --layers "${args[@]}" . ;;
  buildah) buildah bud --layers "${args[@]}" . ;;
esac
# Earlier builds of this image that the new tag replaced: their 3 GB dependency layers are dead weight.
"$engine" image prune -f --filter label=org.opencontainers.image.title=kubetfx >/dev/null 2>&1 || true
size=$("$engine" image inspect --format '{{.Size}}' "$image" 2>/dev/null | awk '{printf "%.2f GB", $1/1e9}' || true)
say "built $image in $(( $(date +%s) - started )) s${size:+, $size}"
