#!/usr/bin/env bash
# Re-verify a deployment bundle on ARM (aarch64) kernels under user-mode emulation.
#
# Usage: scripts/arm64_verify.sh BUNDLE_DIR [--report out.json] [other `device verify` options]
#
# Builds (once, cached) an arm64 Debian root filesystem with `debootstrap --foreign`
# from the Debian mirror the machine's apt sources name, unpacks Python 3.11 into it,
# adds numpy and ai-edge-litert aarch64 wheels fetched on the host with
# `pip download --platform manylinux_2_17_aarch64` (installing online inside the
# emulated system fails TLS verification here), then runs
# `python -m edgebnn.deploy.device verify` with the aarch64 Python under
# `qemu-aarch64-static -L ROOTFS` (no chroot and no binfmt_misc needed). Its exit
# status is the runner's: 0 within tolerance, 1 outside, 2 bad bundle.
#
# Needs root for debootstrap the first time, and `apt-get install debootstrap
# qemu-user-static`. Environment:
#   EDGEBNN_ARM64_CACHE   cache folder (default ~/.cache/edgebnn/arm64)
#   EDGEBNN_LITERT        ai-edge-litert version (default 1.4.0)
#   QEMU_CPU              emulated CPU (default neoverse-n1). Measured trap: with qemu
#                         7.2's default `max` CPU, ai-edge-litert 2.3.0 silently gave
#                         wrong int8 results (SME kernels); pin a real core.
#   PYTHON                host Python with pip (default: the venv's, else python3)
set -euo pipefail

if [[ $# -lt 1 ]]; then
    echo "usage: $0 BUNDLE_DIR [--report out.json] [device verify options]" >&2
    exit 2
fi

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${EDGEBNN_ARM64_CACHE:-$HOME/.cache/edgebnn/arm64}"
SUITE=bookworm
PY=python3.11
NUMPY_VERSION=1.26.4
LITERT_VERSION="${EDGEBNN_LITERT:-1.4.0}"
export QEMU_CPU="${QEMU_CPU:-neoverse-n1}"
PYTHON="${PYTHON:-$( [[ -x /work/venv/bin/python ]] && echo /work/venv/bin/python || echo python3 )}"
NAME="rootfs-${SUITE}-${PY}-numpy${NUMPY_VERSION}-litert${LITERT_VERSION}"
ARCHIVE="$CACHE/$NAME.tar.gz"
ROOT="$CACHE/$NAME"

mirror() {
    # First Debian mirror named by the apt sources (deb822 or one-line format).
    local uri
    uri=$(grep -hoE 'https?://[^ ]+/debian/?( |$)' /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null \
          | head -n1 | tr -d ' ')
    echo "${uri:-http://deb.debian.org/debian}"
}

build() {
    command -v debootstrap >/dev/null || { echo "error: debootstrap not installed (apt-get install debootstrap)" >&2; exit 2; }
    local tmp
    tmp=$(mktemp -d "$CACHE/.build.XXXXXX")
    trap 'rm -rf "$tmp"' EXIT
    echo "building $NAME (debootstrap from $(mirror))" >&2
    debootstrap --foreign --arch=arm64 --variant=minbase --include=python3 "$SUITE" "$tmp/root" "$(mirror)" >"$tmp/debootstrap.log" 2>&1 \
        || { tail -n 5 "$tmp/debootstrap.log" >&2; echo "error: debootstrap failed" >&2; exit 2; }
    # Unpack every downloaded package (the second stage would need to execute arm64 code).
    for deb in "$tmp"/root/var/cache/apt/archives/*.deb; do dpkg-deb -x "$deb" "$tmp/root"; done
    rm -f "$tmp"/root/var/cache/apt/archives/*.deb
    "$PYTHON" -m pip download --quiet --platform manylinux_2_17_aarch64 --only-binary=:all: --python-version 3.11 \
        --implementation cp -d "$tmp/wheels" "numpy==$NUMPY_VERSION" "ai-edge-litert==$LITERT_VERSION"
    mkdir -p "$tmp/root/opt/site"
    for whl in "$tmp"/wheels/*.whl; do "$PYTHON" -m zipfile -e "$whl" "$tmp/root/opt/site"; done
    tar -C "$tmp/root" -czf "$tmp/rootfs.tar.gz" .
    mv "$tmp/rootfs.tar.gz" "$ARCHIVE"
    rm -rf "$tmp"
    trap - EXIT
}

mkdir -p "$CACHE"
[[ -f "$ARCHIVE" ]] || build
if [[ ! -x "$ROOT/usr/bin/$PY" ]]; then
    rm -rf "$ROOT.tmp" && mkdir -p "$ROOT.tmp"
    tar -C "$ROOT.tmp" -xzf "$ARCHIVE"
    rm -rf "$ROOT" && mv "$ROOT.tmp" "$ROOT"
fi

exec qemu-aarch64-static -L "$ROOT" -E "PYTHONPATH=$ROOT/opt/site:$REPO" -E PYTHONDONTWRITEBYTECODE=1 \
    "$ROOT/usr/bin/$PY" -m edgebnn.deploy.device verify "$@" --runtime ai_edge_litert
