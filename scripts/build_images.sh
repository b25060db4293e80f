#!/usr/bin/env bash
# scripts/build_images.sh — build HiveMind's local job images, idempotently:
#
#   hivemind/busybox:latest        FROM-scratch image: Debian's static busybox + applet symlinks
#   hivemind/python:3.11-minimal   Debian bookworm minbase + python3-minimal (debootstrap)
#
# Why this way:
#   * No container registry can be reached from our machines or CI, so nothing
#     may be pulled (no `FROM debian`, no `docker pull`). Both images are built
#     from a root filesystem assembled on the host and loaded with
#     `tar | docker import`. That needs no Dockerfile builder either (the
#     machine's docker CLI has no buildx plugin; the legacy builder is deprecated).
#   * debootstrap downloads .debs from Debian's mirror, which is reachable (it
#     is a package registry), so the Python image is built from real packages.
#   * Each image carries the label org.hivemind.recipe. An image whose label
#     matches RECIPE below, and which passes the smoke test, is kept; otherwise
#     it is rebuilt. Bump a RECIPE value when its recipe changes.
#   * Every image is smoke-tested the way workers run jobs: no network,
#     read-only root filesystem, all capabilities dropped.
#
# Env: HIVEMIND_REBUILD_IMAGES=1 forces a rebuild; DEBIAN_MIRROR overrides the mirror.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

BUSYBOX_IMAGE=hivemind/busybox:latest
BUSYBOX_RECIPE=1
PYTHON_IMAGE=hivemind/python:3.11-minimal
PYTHON_RECIPE=1
PYTHON_SUITE=bookworm          # Debian 12: its python3-minimal is CPython 3.11
BUILD_ROOT=${HIVEMIND_IMAGE_BUILD_DIR:-/var/tmp/hivemind-images}
DEBOOTSTRAP_CACHE=${HIVEMIND_DEBOOTSTRAP_CACHE:-/var/cache/hivemind-ci/debootstrap}
SANDBOX_FLAGS=(--rm --network none --read-only --cap-drop ALL)

log() { printf '[images %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# The engine must be up; start it via services.sh if we are allowed to.
ensure_docker() {
    if timeout 10 docker info >/dev/null 2>&1; then return 0; fi
    log "docker engine not reachable, starting it"
    bash "$REPO/scripts/services.sh" start docker >/dev/null
    timeout 10 docker info >/dev/null 2>&1 || die "docker engine not reachable"
}

image_recipe() {
    docker image inspect --format '{{ index .Config.Labels "org.hivemind.recipe" }}' "$1" 2>/dev/null || true
}

# Remove a build directory safely: debootstrap mounts proc/sys inside it, and an
# interrupted run can leave those mounted. Unmount first, then never cross
# filesystems while deleting.
cleanup_dir() {
    local dir=$1 m
    [ -n "$dir" ] && [ -d "$dir" ] || return 0
    # Deepest mounts first.
    awk -v d="$dir" '$2 == d || index($2, d "/") == 1 {print $2}' /proc/mounts | sort -r |
        while IFS= read -r m; do umount -l "$m" 2>/dev/null || true; done
    rm -rf --one-file-system "$dir"
}

BUILD_DIRS=()
on_exit() {
    local d
    for d in "${BUILD_DIRS[@]+"${BUILD_DIRS[@]}"}"; do cleanup_dir "$d"; done
}
trap on_exit EXIT

# new_build_dir NAME: sets NEW_DIR (not echoed: a $(...) subshell would lose
# the BUILD_DIRS registration that the EXIT trap cleans up).
new_build_dir() {
    mkdir -p "$BUILD_ROOT"
    NEW_DIR=$(mktemp -d "$BUILD_ROOT/$1.XXXXXX")
    BUILD_DIRS+=("$NEW_DIR")
}

# Tar a root filesystem (numeric root ownership) into `docker import`.
import_rootfs() {
    local dir=$1 image=$2; shift 2
    tar --numeric-owner -C "$dir" -c . | docker import "$@" - "$image" >/dev/null
}

# ------------------------------------------------------------------ busybox --

busybox_smoke() {
    local out
    # shellcheck disable=SC2016  # $(uname -s) is expanded by the container's sh
    out=$(docker run "${SANDBOX_FLAGS[@]}" "$BUSYBOX_IMAGE" sh -c 'echo hello from $(uname -s); ls / >/dev/null' 2>&1) || true
    if [ "$out" != "hello from Linux" ]; then
        log "busybox smoke test output: $out"
        return 1
    fi
}

build_busybox() {
    # One recipe for everyone: the demo builds the same image from Python when it is missing.
    "$REPO/.venv/bin/python" -m client_gui.engine.images busybox --rebuild >/dev/null
}

# ------------------------------------------------------------------- python --

python_smoke() {
    local out
    out=$(docker run "${SANDBOX_FLAGS[@]}" "$PYTHON_IMAGE" python3 -c \
        'import sys; assert sys.version_info[:2] == (3, 11), sys.version; print("python", sys.version.split()[0])' 2>&1) || true
    if [[ $out != "python 3.11."* ]]; then
        log "python smoke test output: $out"
        return 1
    fi
    log "$PYTHON_IMAGE: ${out}"
}

# Debian mirror for debootstrap: DEBIAN_MIRROR, else the Debian (non-security)
# mirror apt already uses, else deb.debian.org.
debian_mirror() {
    if [ -n "${DEBIAN_MIRROR:-}" ]; then echo "$DEBIAN_MIRROR"; return; fi
    local m
    m=$(cat /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null |
        grep -oE 'https?://[^ ]+/debian/?( |$)' | grep -v security | head -n1 | tr -d ' ' || true)
    echo "${m:-http://deb.debian.org/debian}"
}

build_python() {
    command -v debootstrap >/dev/null || die "debootstrap not found (run scripts/setup.sh)"
    [ "$(id -u)" -eq 0 ] || die "debootstrap needs root to build $PYTHON_IMAGE"
    local root mirror
    new_build_dir python
    root=$NEW_DIR
    mirror=$(debian_mirror)
    log "debootstrap --variant=minbase --include=python3-minimal $PYTHON_SUITE ($mirror)"
    # --cache-dir keeps the downloaded .debs on this machine, so a rebuild
    # (recipe bump, failed smoke test) does not download them again.
    mkdir -p "$DEBOOTSTRAP_CACHE"
    if ! debootstrap --variant=minbase --include=python3-minimal --cache-dir="$DEBOOTSTRAP_CACHE" \
        "$PYTHON_SUITE" "$root" "$mirror" >"$BUILD_ROOT/debootstrap.log" 2>&1; then
        tail -n 30 "$BUILD_ROOT/debootstrap.log" >&2 || true
        # debootstrap keeps its own detailed log inside the target.
        tail -n 30 "$root/debootstrap/debootstrap.log" >&2 2>/dev/null || true
        die "debootstrap failed (log: $BUILD_ROOT/debootstrap.log)"
    fi
    # Trim what a job never needs (downloaded .debs, apt lists, docs, man
    # pages, translations): about a third of the size.
    rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* \
        "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/info/* \
        "$root"/usr/share/locale/* "$root"/var/log/*
    import_rootfs "$root" "$PYTHON_IMAGE" \
        --change "LABEL org.hivemind.recipe=$PYTHON_RECIPE" \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'ENV LANG=C.UTF-8' \
        --change 'ENV PYTHONDONTWRITEBYTECODE=1' \
        --change 'CMD ["python3"]'
}

# --------------------------------------------------------------------- main --

# ensure_image NAME RECIPE BUILD_FN SMOKE_FN
ensure_image() {
    local image=$1 recipe=$2 build=$3 smoke=$4 start=$SECONDS
    if [ "${HIVEMIND_REBUILD_IMAGES:-0}" != 1 ] && [ "$(image_recipe "$image")" = "$recipe" ]; then
        if "$smoke"; then
            log "$image: present (recipe $recipe), smoke test passed"
            return 0
        fi
        log "$image: present but its smoke test failed, rebuilding"
    fi
    local old_id
    old_id=$(docker image inspect --format '{{.Id}}' "$image" 2>/dev/null || true)
    log "$image: building (recipe $recipe)"
    "$build"
    # The tag moved to the new image: drop the old one instead of leaving a
    # dangling 100 MB image behind on every rebuild.
    if [ -n "$old_id" ] && [ "$old_id" != "$(docker image inspect --format '{{.Id}}' "$image")" ]; then
        docker rmi "$old_id" >/dev/null 2>&1 || true
    fi
    "$smoke" || die "$image: smoke test failed after build"
    log "$image: built in $((SECONDS - start))s ($(docker image inspect --format '{{.Size}}' "$image" | awk '{printf "%.1f MB", $1/1e6}'))"
}

ensure_docker
ensure_image "$BUSYBOX_IMAGE" "$BUSYBOX_RECIPE" build_busybox busybox_smoke
ensure_image "$PYTHON_IMAGE" "$PYTHON_RECIPE" build_python python_smoke
