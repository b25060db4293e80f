#!/usr/bin/env bash
# installer/check.sh — build the desktop installer and prove it works on this machine (CI's
# `installer` step; runnable by hand as root on Debian/Ubuntu):
#
#   sudo bash installer/check.sh            # build, then check
#   sudo bash installer/check.sh --no-build # check the dist/ a previous build left
#
#   1. builds the bundle and the .deb (installer/build.py) and checks their sizes against the targets
#      (HIVEMIND_MAX_BUNDLE_MB, default 150; HIVEMIND_MAX_DEB_MB, default 80; HIVEMIND_DEB_XZ_LEVEL=1
#      packs the .deb ten times faster for a quick local run);
#   2. starts a coordinator (.venv/bin/hivemind coordinator) on free loopback ports, temp data dir;
#   3. runs the bundled `dist/hivemind/hivemind --self-test` against it;
#   4. installs the .deb with dpkg -i, checks the launcher, menu entry and icon, runs the installed
#      `hivemind --self-test` with a plain PATH (on Xvfb with Qt's X11 plugin, when xvfb-run exists),
#      as a volunteer would, and `hivemind --worker` until it has registered this computer with the
#      coordinator (then SIGTERM: it must exit 0);
#   5. purges the package and checks nothing is left under /opt/hivemind (nor the launcher, menu
#      entry or icons); stops the coordinator.
# Needs root (dpkg -i). Exits non-zero at the first failed check, saying which.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"
VENV=$REPO/.venv
PY=$VENV/bin/python
MAX_BUNDLE_MB=${HIVEMIND_MAX_BUNDLE_MB:-150}
MAX_DEB_MB=${HIVEMIND_MAX_DEB_MB:-80}
PLAIN_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
START=$SECONDS

log() { printf '[installer %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() { log "FAILED: $*"; exit 1; }

build=1
case "${1:-}" in
    "") ;;
    --no-build) build=0 ;;
    *) die "usage: bash installer/check.sh [--no-build]" ;;
esac

[ "$(id -u)" -eq 0 ] || die "run as root (it installs and removes the .deb with dpkg)"
[ -x "$PY" ] || die "$VENV missing: run 'sudo bash scripts/setup.sh' first"
command -v dpkg-deb >/dev/null || die "dpkg-deb missing: this check runs on Debian/Ubuntu only"

tmp=$(mktemp -d /tmp/hivemind-installer-check.XXXXXX)
coordinator_pid=""
worker_pid=""
installed=0
cleanup() {
    local rc=$?
    if [ -n "$worker_pid" ] && kill -0 "$worker_pid" 2>/dev/null; then
        kill "$worker_pid" 2>/dev/null || true
        wait "$worker_pid" 2>/dev/null || true
    fi
    if [ -n "$coordinator_pid" ] && kill -0 "$coordinator_pid" 2>/dev/null; then
        kill "$coordinator_pid" 2>/dev/null || true
        wait "$coordinator_pid" 2>/dev/null || true
    fi
    if [ "$installed" -eq 1 ] && dpkg-query -W hivemind >/dev/null 2>&1; then
        log "removing the package this check installed"
        dpkg -P hivemind >/dev/null 2>&1 || true
    fi
    if [ "$rc" -ne 0 ] && [ -f "$tmp/coordinator.log" ]; then
        log "coordinator log (last 20 lines):"
        tail -n 20 "$tmp/coordinator.log" >&2 || true
    fi
    rm -rf "$tmp"
}
trap cleanup EXIT

# --- 1. build -------------------------------------------------------------------------------------
if [ "$build" -eq 1 ]; then
    log "building the bundle and the .deb (installer/build.py)"
    "$PY" installer/build.py ${HIVEMIND_DEB_XZ_LEVEL:+--xz-level "$HIVEMIND_DEB_XZ_LEVEL"}
fi
[ -f dist/build-info.json ] || die "dist/build-info.json missing: build first (drop --no-build)"
read -r bundle_bytes deb_path deb_bytes build_s < <("$PY" -c '
import json; i = json.load(open("dist/build-info.json"))
print(i["bundle_bytes"], i["deb"], i["deb_bytes"], i["total_seconds"])')
[ -x dist/hivemind/hivemind ] || die "dist/hivemind/hivemind missing"
[ -f "$deb_path" ] || die "$deb_path missing"
bundle_mb=$((bundle_bytes / 1000000))
deb_mb=$((deb_bytes / 1000000))
log "bundle dist/hivemind: ${bundle_mb} MB (target <= ${MAX_BUNDLE_MB} MB); $(basename "$deb_path"): ${deb_mb} MB (target <= ${MAX_DEB_MB} MB); built in ${build_s} s"
[ "$bundle_bytes" -le $((MAX_BUNDLE_MB * 1000000)) ] || die "the bundle is ${bundle_mb} MB, over ${MAX_BUNDLE_MB} MB"
[ "$deb_bytes" -le $((MAX_DEB_MB * 1000000)) ] || die "the .deb is ${deb_mb} MB, over ${MAX_DEB_MB} MB"

# --- 2. a coordinator -----------------------------------------------------------------------------
read -r grpc_port http_port < <("$PY" -c '
import socket
socks = [socket.socket() for _ in range(2)]
for s in socks: s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))
for s in socks: s.close()')
target=127.0.0.1:$grpc_port
log "starting a coordinator on $target (data in $tmp/data)"
"$VENV/bin/hivemind" coordinator --host 127.0.0.1 --grpc-port "$grpc_port" \
    --http-port "$http_port" --data-dir "$tmp/data" --log-format text >"$tmp/coordinator.log" 2>&1 &
coordinator_pid=$!
"$PY" - "$http_port" "$coordinator_pid" <<'EOF' || die "the coordinator did not start"
import os, sys, time, urllib.request
port, pid = sys.argv[1], int(sys.argv[2])
deadline = time.monotonic() + 60
while time.monotonic() < deadline:
    try:
        os.kill(pid, 0)
    except OSError:
        sys.exit("the coordinator exited")
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as reply:
            if reply.status == 200:
                sys.exit(0)
    except OSError:
        time.sleep(0.5)
sys.exit("no answer on /healthz within 60 s")
EOF

# --- 3. the bundle's self-test ----------------------------------------------------------------------
log "self-test of the bundle: dist/hivemind/hivemind --self-test --coordinator $target"
dist/hivemind/hivemind --self-test --coordinator "$target" || die "the bundle's self-test failed"

# --- 4. install the .deb ----------------------------------------------------------------------------
if dpkg-query -W hivemind >/dev/null 2>&1; then
    log "an earlier hivemind package is installed; purging it first"
    dpkg -P hivemind >/dev/null
fi
log "dpkg -i $(basename "$deb_path")"
installed=1
dpkg -i "$deb_path" >"$tmp/dpkg.log" 2>&1 || { cat "$tmp/dpkg.log" >&2; die "dpkg -i failed"; }
for path in /opt/hivemind/hivemind /usr/bin/hivemind /usr/share/applications/hivemind.desktop \
    /usr/share/icons/hicolor/256x256/apps/hivemind.png /usr/share/icons/hicolor/scalable/apps/hivemind.svg; do
    [ -e "$path" ] || die "the package did not install $path"
done
[ "$(env PATH=$PLAIN_PATH sh -c 'command -v hivemind')" = /usr/bin/hivemind ] ||
    die "hivemind is not on a plain PATH"
version=$(env PATH=$PLAIN_PATH hivemind --version)
log "installed: $version"
# On a virtual X screen when there is one: the window check then goes through Qt's X11 (xcb) plugin
# and the X libraries, as on a volunteer's desktop, instead of the offscreen one.
screen=(env)
if command -v xvfb-run >/dev/null; then
    screen=(xvfb-run -a env QT_QPA_PLATFORM=xcb)
fi
log "self-test of the installed app: ${screen[*]} hivemind --self-test --coordinator $target"
(cd / && "${screen[@]}" PATH=$PLAIN_PATH hivemind --self-test --coordinator "$target") ||
    die "the installed app's self-test failed"

log "the installed headless worker: hivemind --worker registers this computer, then stops on SIGTERM"
"$PY" - "$http_port" <<'EOF' || die "could not create the volunteer account for the worker check"
import json, sys, urllib.request
body = {"username": "installer-check", "email": "installer-check@example.org",
        "password": "installer-check-password-1"}
request = urllib.request.Request(
    f"http://127.0.0.1:{sys.argv[1]}/api/v1/auth/register", data=json.dumps(body).encode(),
    headers={"content-type": "application/json"})
urllib.request.urlopen(request, timeout=30).close()
EOF
mkdir -p "$tmp/worker"
(cd / && exec env PATH=$PLAIN_PATH HIVEMIND_PASSWORD=installer-check-password-1 hivemind --worker \
    --coordinator "$target" --username installer-check --credential-file "$tmp/worker/node.cred" \
    --config "$tmp/worker/worker.json" --work-dir "$tmp/worker/work" >"$tmp/worker.log" 2>&1) &
worker_pid=$!
for _ in $(seq 120); do
    grep -q "Registered as node" "$tmp/worker.log" && break
    kill -0 "$worker_pid" 2>/dev/null || break
    sleep 0.5
done
registered=$(grep -m1 "Registered as node" "$tmp/worker.log" || true)
kill -TERM "$worker_pid" 2>/dev/null || true
worker_rc=0
wait "$worker_pid" || worker_rc=$?
[ -n "$registered" ] || { cat "$tmp/worker.log" >&2; die "the installed worker did not register"; }
[ "$worker_rc" -eq 0 ] || { cat "$tmp/worker.log" >&2; die "the worker exited with $worker_rc on SIGTERM"; }
log "worker: ${registered#* }; stopped cleanly"

# The app ran as root above; it must still not have written into its own folder (a volunteer could not).
stray=$(comm -23 <(find /opt/hivemind | sort) <(dpkg -L hivemind | sort) | head -5)
[ -z "$stray" ] || die "the app wrote into /opt/hivemind: $stray"

# --- 5. remove it ---------------------------------------------------------------------------------
log "dpkg -P hivemind"
dpkg -P hivemind >"$tmp/dpkg.log" 2>&1 || { cat "$tmp/dpkg.log" >&2; die "dpkg -P failed"; }
installed=0
! dpkg-query -W -f '${Status}' hivemind 2>/dev/null | grep -q installed || die "hivemind is still installed"
[ ! -e /opt/hivemind ] || die "/opt/hivemind is still there after removal: $(find /opt/hivemind | head -5)"
for path in /usr/bin/hivemind /usr/share/applications/hivemind.desktop /usr/share/doc/hivemind; do
    [ ! -e "$path" ] && [ ! -L "$path" ] || die "$path is still there after removal"
done
left=$(find /usr/share/icons/hicolor -name 'hivemind.*' 2>/dev/null | head -5)
[ -z "$left" ] || die "icons left after removal: $left"

log "all installer checks passed in $((SECONDS - START)) s"
