#!/usr/bin/env bash
# Build kubetfx's own base image from Debian packages, for machines that build images but
# cannot pull from a registry (no Docker Hub, no python:3.11-slim). Needs root, debootstrap
# and podman; the result is an image with Debian bookworm's Python 3.11 in a venv at
# /opt/venv (Debian's own python refuses `pip install`: externally-managed environment).
#
#   images/base/build-base.sh [IMAGE]        default IMAGE: localhost/kubetfx-base:bookworm
#
# Reuses IMAGE when it exists (FORCE=1 rebuilds). DEBIAN_MIRROR overrides the mirror, which
# is otherwise read from this machine's apt sources.
set -euo pipefail

image=${1:-localhost/kubetfx-base:bookworm}
suite=bookworm
packages=python3,python3-venv,python3-pip,ca-certificates

die() { echo "build-base: $*" >&2; exit 1; }

if [ "${FORCE:-0}" != 1 ] && podman image exists "$image"; then
  echo "build-base: reusing $image (FORCE=1 rebuilds it)"
  exit 0
fi
[ "$(id -u)" = 0 ] || die "debootstrap needs root; run as root or pull a python:3.11 base instead"
command -v debootstrap >/dev/null || die "debootstrap is not installed (apt-get install -y debootstrap)"

mirror=${DEBIAN_MIRROR:-}
if [ -z "$mirror" ]; then
  mirror=$(sed -n 's/^URIs:[[:space:]]*//p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -n1)
  [ -n "$mirror" ] || mirror=$(awk '$1 == "deb" {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
  [ -n "$mirror" ] || mirror=http://deb.debian.org/debian
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/kubetfx-base.XXXXXX")
trap 'rm -rf "$work"' EXIT
rootfs=$work/rootfs
echo "build-base: debootstrap $suite from $mirror (a few minutes)"
started=$(date +%s)
debootstrap --variant=minbase --include="$packages" "$suite" "$rootfs" "$mirror" >"$work/debootstrap.log" 2>&1 \
  || { tail -n 20 "$work/debootstrap.log" >&2; die "debootstrap failed (log above)"; }
chroot "$rootfs" python3 -m venv /opt/venv
# What a container never needs: package caches, docs, man pages.
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* \
       "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/locale/*
tar -C "$rootfs" -c . | podman import \
  --change 'ENV PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV VIRTUAL_ENV=/opt/venv' \
  --change 'ENV LANG=C.UTF-8' \
  --change 'CMD ["python3"]' \
  --quiet --message "kubetfx base: Debian $suite minbase + python3 venv" - "$image" >/dev/null
echo "build-base: built $image in $(( $(date +%s) - started )) s ($(podman image inspect --format '{{.Size}}' "$image" | awk '{printf "%.0f MB", $1/1e6}'))"
