#!/usr/bin/env bash
# scripts/setup.sh — prepare a machine to develop and test HiveMind.
#
#   sudo bash scripts/setup.sh
#
# Idempotent and fast on a prepared machine:
#   1. System packages (Debian 12 / Ubuntu): apt runs only when one of them is
#      missing (checked with dpkg-query), so a re-run costs well under a second.
#   2. A virtual environment in <repo>/.venv with the project installed in
#      editable mode plus its dev tools (`pip install -e ".[dev]"`). Skipped
#      when a stamp says this exact pyproject.toml was already installed with
#      this interpreter into this checkout.
#
# It does not start services (scripts/services.sh) or build job images
# (scripts/build_images.sh); scripts/test.sh and .ci/run do that.
#
# Env: PYTHON=/path/to/python3.x picks the interpreter; HIVEMIND_SETUP_FORCE=1
# reinstalls the venv packages.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=$REPO/.venv
STAMP=$VENV/.hivemind-setup-stamp

log() { printf '[setup %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# What each package is for:
#   python3 python3-venv python3-dev gcc  the interpreter, venv+ensurepip, headers/compiler
#                                         for any dependency without a wheel
#   postgresql                            the database the coordinator's tests run against
#   redis-server                          Redis (redis-cli comes with it, via redis-tools)
#   docker.io                             the engine that runs job containers (dockerd, containerd, runc)
#   iptables                              dockerd sets up its bridge with it
#   busybox-static                        static busybox for the FROM-scratch job image
#   debootstrap debian-archive-keyring    builds (and verifies) the Debian rootfs of the Python job image
#   git                                   the project is a git checkout; setuptools/pip may call it
#   procps                                ps/pgrep/kill used by scripts and tests
#   xvfb libegl1 libgl1 libxkbcommon-x11-0 libxcb-*  Qt's runtime libraries (offscreen tests, the
#     libfontconfig1 libdbus-1-3 fonts-dejavu-core   screenshots on a virtual X screen)
#   chromium chromium-driver              the headless browser the web panel's tests drive
#   libxss1 libxtst6 dbus-daemon          idle time on X11 (XScreenSaver), the X11 idle test's input,
#                                         the private D-Bus the Wayland idle test runs
#   binutils                              objdump, which PyInstaller needs to bundle the app
APT_PACKAGES=(
    python3 python3-venv python3-dev gcc
    postgresql redis-server
    docker.io iptables
    busybox-static debootstrap debian-archive-keyring
    git procps
    xvfb libegl1 libgl1 libxkbcommon-x11-0 libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1
    libxcb-shape0 libxcb-render-util0 libxcb-image0 libfontconfig1 libdbus-1-3 fonts-dejavu-core
    chromium chromium-driver
    libxss1 libxtst6 dbus-daemon
    binutils
)

install_system_packages() {
    command -v dpkg-query >/dev/null || die "this script supports Debian/Ubuntu (dpkg/apt) only"
    local missing=() p
    for p in "${APT_PACKAGES[@]}"; do
        # "ii" = desired install, currently installed. Anything else (not
        # known, removed, half-configured) counts as missing.
        dpkg-query -W -f='${db:Status-Abbrev}' "$p" 2>/dev/null | grep -q '^ii' || missing+=("$p")
    done
    if [ ${#missing[@]} -eq 0 ]; then
        log "system packages: all ${#APT_PACKAGES[@]} present, skipping apt"
        return 0
    fi
    [ "$(id -u)" -eq 0 ] || die "missing system packages (${missing[*]}); run as root: sudo bash scripts/setup.sh"
    log "system packages: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    local apt_opts=(-o Acquire::Retries=3 -o DPkg::Lock::Timeout=300)
    # The package lists must be fresh on a new machine; retry transient mirror errors.
    local i
    for i in 1 2 3; do
        apt-get "${apt_opts[@]}" update -qq && break
        [ "$i" -eq 3 ] && die "apt-get update failed"
        log "apt-get update failed, retrying ($i/3)"; sleep 5
    done
    # --no-install-recommends keeps this lean and quick; everything we rely on
    # is listed above explicitly. (busybox-static replaces Debian's dynamic busybox.)
    apt-get "${apt_opts[@]}" install -y -qq --no-install-recommends "${missing[@]}" >/dev/null ||
        die "apt-get install failed for: ${missing[*]}"
    log "system packages: done"
}

# First interpreter that is >= 3.11: $PYTHON, then python3 on PATH (this may
# be pyenv's), then the distribution's and versioned names.
pick_python() {
    local c seen=()
    for c in "${PYTHON:-}" python3 /usr/bin/python3 python3.13 python3.12 python3.11; do
        [ -n "$c" ] || continue
        command -v "$c" >/dev/null 2>&1 || continue
        if "$c" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null; then
            command -v "$c"; return 0
        fi
        seen+=("$c=$("$c" -c 'import platform; print(platform.python_version())' 2>/dev/null || echo '?')")
    done
    die "HiveMind needs Python >= 3.11, found only: ${seen[*]:-no python3 at all}. Install Python 3.11+ or set PYTHON=/path/to/python3.11"
}

setup_venv() {
    local py
    py=$(pick_python)
    # Recreate a venv that is broken (interpreter moved/removed) or too old.
    if [ -e "$VENV" ] && ! "$VENV/bin/python" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null; then
        log "venv: $VENV is broken or older than 3.11, recreating"
        rm -rf "$VENV"
    fi
    if [ ! -x "$VENV/bin/python" ]; then
        log "venv: creating $VENV with $py ($("$py" -V 2>&1))"
        "$py" -m venv "$VENV" || die "'$py -m venv' failed (on Debian/Ubuntu: apt-get install python3-venv)"
    fi

    # The stamp ties the install to pyproject.toml's content, the venv's
    # interpreter and this checkout's path (editable installs point at it).
    local want
    want=$(
        {
            sha256sum "$REPO/pyproject.toml"
            "$VENV/bin/python" -VV
            echo "$REPO"
        } | sha256sum | cut -d' ' -f1
    )
    if [ "${HIVEMIND_SETUP_FORCE:-0}" != 1 ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ] &&
        "$VENV/bin/python" -c 'import importlib.metadata as m; m.version("hivemind-compute")' 2>/dev/null; then
        log "venv: up to date (pyproject.toml unchanged), skipping pip"
        return 0
    fi
    log "venv: pip install -e '.[dev]'"
    rm -f "$STAMP"
    (cd "$REPO" && "$VENV/bin/python" -m pip install --disable-pip-version-check --progress-bar off -q \
        -e ".[dev]") || die "pip install -e '.[dev]' failed"
    echo "$want" >"$STAMP"
    log "venv: ready ($("$VENV/bin/python" -V 2>&1))"
}

start=$SECONDS
install_system_packages
setup_venv
log "done in $((SECONDS - start))s"
