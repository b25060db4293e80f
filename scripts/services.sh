#!/usr/bin/env bash
# scripts/services.sh — start/stop/inspect the services HiveMind's tests need:
#   PostgreSQL (127.0.0.1:5432), Redis (127.0.0.1:6379) and a Docker engine.
#
# Usage:
#   scripts/services.sh start  [postgres|redis|docker ...]   (default: all)
#   scripts/services.sh stop   [postgres|redis|docker ...]
#   scripts/services.sh status [postgres|redis|docker ...]   (exit 1 if any is down)
#   scripts/services.sh env     # prints `export HIVEMIND_TEST_...=...` lines for eval
#
# Why it looks like this:
#   * CI runs `.ci/run` right after every process of the session was killed
#     (kill -9 style). Pid files, postgres lock files and the docker socket are
#     left behind, and a recycled pid may even belong to an unrelated process.
#     So every pid file is checked against the *kind* of process it names
#     (/proc/PID/comm, and for postgres its working directory) before being
#     trusted; stale ones are removed.
#   * A developer may already run these services (Debian's own postgres/redis
#     init scripts, a dockerd started by hand). "start" therefore first checks
#     whether a working service already answers on the port/socket and reuses it.
#   * Every wait is bounded (HIVEMIND_SERVICE_WAIT seconds, default 60) and every
#     readiness check is real: pg_isready + `select 1` as the hivemind role,
#     `redis-cli ping`, `docker info`.
#   * Starting services needs root; reusing already-running ones does not, so
#     `scripts/test.sh` works for a non-root developer once services are up.
set -euo pipefail

STATE_DIR=${HIVEMIND_CI_STATE_DIR:-/var/lib/hivemind-ci}   # data (postgres cluster, redis dir)
RUN_DIR=${HIVEMIND_CI_RUN_DIR:-/var/run/hivemind-ci}       # our pid files
LOG_DIR=${HIVEMIND_CI_LOG_DIR:-/var/log/hivemind-ci}       # service logs
WAIT_S=${HIVEMIND_SERVICE_WAIT:-60}

PG_HOST=127.0.0.1
PG_PORT=5432
PG_DATA=$STATE_DIR/pg
PG_SOCKDIR=/var/run/postgresql
PG_CLUSTER_NAME=hivemind-ci        # shows up in the process titles: "postgres: hivemind-ci: ..."
PG_ROLE=hivemind
PG_PASSWORD=hivemind
PG_DATABASES=(hivemind_test hivemind_bench)
PG_URL="postgresql+psycopg://${PG_ROLE}:${PG_PASSWORD}@${PG_HOST}:${PG_PORT}/hivemind_test"

REDIS_HOST=127.0.0.1
REDIS_PORT=6379
REDIS_PIDFILE=$RUN_DIR/redis.pid
REDIS_URL="redis://${REDIS_HOST}:${REDIS_PORT}/15"

DOCKER_PIDFILE=/var/run/docker.pid
DOCKER_SOCK=/var/run/docker.sock
DOCKER_CONTAINERD_PIDFILE=/var/run/docker/containerd/containerd.pid
DOCKER_LOG=$LOG_DIR/dockerd.log

log() { printf '[services %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

is_root() { [ "$(id -u)" -eq 0 ]; }
need_root() { is_root || die "$1 is not running (or not reachable as $(id -un)) and starting it needs root: run 'sudo bash scripts/services.sh start'"; }

# True when a TCP port on 127.0.0.1 accepts connections (bash /dev/tcp, no extra tools).
port_open() { timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null; }

# pid_alive PID NAME: PID exists, is not a zombie, and its comm starts with NAME.
# Guards against recycled pids in stale pid files.
pid_alive() {
    local pid=$1 name=$2 comm state
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    comm=$(cat "/proc/$pid/comm" 2>/dev/null) || return 1
    state=$(awk '/^State:/ {print $2}' "/proc/$pid/status" 2>/dev/null) || return 1
    [ "$state" != Z ] && [[ $comm == "$name"* ]]
}

pidfile_pid() { if [ -s "$1" ]; then head -n1 "$1" | tr -dc '0-9'; fi; }

# wait_until SECONDS DESCRIPTION CMD...: poll CMD every 0.5 s, bounded.
wait_until() {
    local limit=$1 what=$2; shift 2
    local deadline=$((SECONDS + limit))
    until "$@" >/dev/null 2>&1; do
        if [ "$SECONDS" -ge "$deadline" ]; then
            log "timed out after ${limit}s waiting for $what"
            return 1
        fi
        sleep 0.5
    done
}

# ---------------------------------------------------------------- PostgreSQL --

# Pick the server binaries. An existing cluster must be run by the major
# version that created it; otherwise prefer 15 (Debian 12), else the newest.
pg_bindir() {
    local v=""
    [ -s "$PG_DATA/PG_VERSION" ] && v=$(cat "$PG_DATA/PG_VERSION")
    if [ -n "$v" ] && [ -x "/usr/lib/postgresql/$v/bin/postgres" ]; then
        echo "/usr/lib/postgresql/$v/bin"; return
    fi
    if [ -x /usr/lib/postgresql/15/bin/postgres ]; then echo /usr/lib/postgresql/15/bin; return; fi
    local d
    d=$(find /usr/lib/postgresql -maxdepth 3 -path '*/bin/postgres' 2>/dev/null | sort -V | tail -n1)
    [ -n "$d" ] || die "PostgreSQL server binaries not found under /usr/lib/postgresql (run scripts/setup.sh)"
    dirname "$d"
}

# Run a command as the postgres OS user from / (its cwd must be readable by it).
as_pg() { (cd / && runuser -u postgres -- "$@"); }

# Client tools: psql/pg_isready from the server's bindir if present, else PATH.
pg_tool() {
    local t=$1 bindir
    bindir=$(pg_bindir 2>/dev/null || true)
    if [ -n "$bindir" ] && [ -x "$bindir/$t" ]; then echo "$bindir/$t"; else command -v "$t"; fi
}

# select 1 over TCP as the hivemind role, against database $1.
pg_login_ok() {
    local db=${1:-postgres} out
    out=$(PGPASSWORD=$PG_PASSWORD PGCONNECT_TIMEOUT=5 "$(pg_tool psql)" -X -q -t -A \
        -h "$PG_HOST" -p "$PG_PORT" -U "$PG_ROLE" -d "$db" -c 'select 1' 2>/dev/null) || return 1
    [ "$out" = 1 ]
}

pg_all_dbs_ok() {
    local db
    for db in "${PG_DATABASES[@]}"; do pg_login_ok "$db" || return 1; done
}

# Is the postmaster recorded in our cluster's postmaster.pid alive *and ours*?
# (comm is "postgres" and its cwd is our data directory.)
pg_our_pid() {
    local pid
    pid=$(pidfile_pid "$PG_DATA/postmaster.pid")
    [ -n "$pid" ] && pid_alive "$pid" postgres &&
        [ "$(readlink "/proc/$pid/cwd" 2>/dev/null)" = "$PG_DATA" ] && echo "$pid"
}

# Orphaned backends of our cluster whose postmaster was killed -9: they keep
# the old shared memory attached and postgres refuses to start until they exit.
pg_orphans() {
    local d cmd
    for d in /proc/[0-9]*; do
        # argv[0] is the process title; read up to the first NUL, no forks.
        cmd=""
        { IFS= read -r -d '' cmd <"$d/cmdline"; } 2>/dev/null || true
        [[ $cmd == "postgres: $PG_CLUSTER_NAME: "* ]] && echo "${d#/proc/}"
    done
    return 0
}

# Create the hivemind role and databases as the postgres superuser via the
# unix socket (peer auth). Works for our cluster and for Debian's own cluster.
pg_provision() {
    local psql db
    psql=$(pg_tool psql)
    as_pg "$psql" -X -q -v ON_ERROR_STOP=1 -h "$PG_SOCKDIR" -p "$PG_PORT" -U postgres -d postgres <<SQL
DO \$\$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$PG_ROLE') THEN
    CREATE ROLE $PG_ROLE LOGIN CREATEDB PASSWORD '$PG_PASSWORD';
  ELSE
    ALTER ROLE $PG_ROLE LOGIN CREATEDB PASSWORD '$PG_PASSWORD';
  END IF;
END
\$\$;
SQL
    for db in "${PG_DATABASES[@]}"; do
        as_pg "$psql" -X -q -v ON_ERROR_STOP=1 -h "$PG_SOCKDIR" -p "$PG_PORT" -U postgres -d postgres <<SQL
SELECT 'CREATE DATABASE $db OWNER $PG_ROLE' WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = '$db') \gexec
SQL
    done
}

# Fallback when we cannot be superuser: the hivemind role (CREATEDB) makes the
# missing databases itself.
pg_create_dbs_as_role() {
    local db
    for db in "${PG_DATABASES[@]}"; do
        pg_login_ok "$db" && continue
        PGPASSWORD=$PG_PASSWORD "$(pg_tool psql)" -X -q -v ON_ERROR_STOP=1 \
            -h "$PG_HOST" -p "$PG_PORT" -U "$PG_ROLE" -d postgres -c "CREATE DATABASE $db" || return 1
    done
}

# Write the settings we own. Rewritten on every start so changes here apply to
# an existing cluster. fsync etc. are off: this cluster only holds test data.
pg_write_config() {
    cat >"$PG_DATA/hivemind-ci.conf" <<CONF
# Managed by scripts/services.sh — rewritten on every start.
listen_addresses = '$PG_HOST'
port = $PG_PORT
unix_socket_directories = '$PG_SOCKDIR'
cluster_name = '$PG_CLUSTER_NAME'
max_connections = 200
shared_buffers = 128MB
fsync = off
synchronous_commit = off
full_page_writes = off
log_min_messages = warning
CONF
    cat >"$PG_DATA/pg_hba.conf" <<HBA
# Managed by scripts/services.sh — rewritten on every start.
local   all   postgres                 peer
local   all   all                      scram-sha-256
host    all   all        127.0.0.1/32  scram-sha-256
host    all   all        ::1/128       scram-sha-256
HBA
    chown postgres:postgres "$PG_DATA/hivemind-ci.conf" "$PG_DATA/pg_hba.conf"
    grep -q "hivemind-ci.conf" "$PG_DATA/postgresql.conf" ||
        echo "include_if_exists = 'hivemind-ci.conf'" >>"$PG_DATA/postgresql.conf"
}

pg_init_cluster() {
    local bindir=$1
    # A cluster of another major version (or a half-initialised one) is test
    # data only: move it aside rather than fail.
    if [ -e "$PG_DATA" ] && { [ ! -s "$PG_DATA/PG_VERSION" ] ||
        [ "$(cat "$PG_DATA/PG_VERSION")" != "$(basename "$(dirname "$bindir")")" ]; }; then
        log "postgres: moving unusable cluster dir aside to $PG_DATA.old.$$"
        mv "$PG_DATA" "$PG_DATA.old.$$"
    fi
    if [ ! -s "$PG_DATA/PG_VERSION" ]; then
        log "postgres: initdb $PG_DATA ($bindir)"
        install -d -o postgres -g postgres -m 0700 "$PG_DATA"
        as_pg "$bindir/initdb" -D "$PG_DATA" -U postgres -E UTF8 --locale=C \
            --auth-local=peer --auth-host=scram-sha-256 >"$LOG_DIR/initdb.log" 2>&1 ||
            { tail -n 20 "$LOG_DIR/initdb.log" >&2; die "postgres: initdb failed"; }
    fi
}

# Remove what a killed postmaster leaves behind: postmaster.pid naming a dead
# (or recycled) pid, the socket lock file, and orphaned backends.
pg_clear_stale() {
    local pid lock orphans
    if [ -e "$PG_DATA/postmaster.pid" ] && [ -z "$(pg_our_pid)" ]; then
        log "postgres: removing stale $PG_DATA/postmaster.pid (pid $(pidfile_pid "$PG_DATA/postmaster.pid") is not our live postmaster)"
        rm -f "$PG_DATA/postmaster.pid"
    fi
    lock="$PG_SOCKDIR/.s.PGSQL.$PG_PORT.lock"
    if [ -e "$lock" ]; then
        pid=$(pidfile_pid "$lock")
        if [ -z "$pid" ] || ! pid_alive "$pid" postgres; then
            log "postgres: removing stale socket lock $lock"
            rm -f "$lock" "$PG_SOCKDIR/.s.PGSQL.$PG_PORT"
        fi
    fi
    orphans=$(pg_orphans)
    if [ -n "$orphans" ]; then
        log "postgres: waiting for orphaned backends of a killed postmaster to exit: ${orphans//$'\n'/ }"
        if ! wait_until 15 "orphaned postgres backends" test -z "$(pg_orphans)"; then
            for pid in $(pg_orphans); do kill -9 "$pid" 2>/dev/null || true; done
            sleep 1
        fi
    fi
}

pg_start() {
    if port_open "$PG_PORT"; then
        # Something already serves 5432 (our cluster, Debian's, or another).
        if pg_all_dbs_ok; then
            log "postgres: already running on $PG_HOST:$PG_PORT and accepts role $PG_ROLE"
            return 0
        fi
        if is_root && pg_provision 2>/dev/null && pg_all_dbs_ok; then
            log "postgres: reusing the server on port $PG_PORT; provisioned role/databases"
            return 0
        fi
        if pg_login_ok postgres && pg_create_dbs_as_role && pg_all_dbs_ok; then
            log "postgres: reusing the server on port $PG_PORT; created missing databases"
            return 0
        fi
        die "postgres: port $PG_PORT is in use by a server that does not accept role '$PG_ROLE' (password '$PG_PASSWORD'); stop it or create the role and databases ${PG_DATABASES[*]}"
    fi

    need_root postgres
    local bindir
    bindir=$(pg_bindir)
    install -d -m 0755 "$STATE_DIR" "$LOG_DIR"
    install -d -o postgres -g postgres -m 2775 "$PG_SOCKDIR"
    pg_init_cluster "$bindir"
    bindir=$(pg_bindir)
    pg_write_config

    local pid
    pid=$(pg_our_pid || true)
    if [ -n "$pid" ]; then
        # Our postmaster is alive but not listening yet (starting up or in
        # crash recovery): give it the bounded wait instead of a second start.
        log "postgres: postmaster $pid is running, waiting for it to accept connections"
    else
        pg_clear_stale
        touch "$LOG_DIR/postgres.log" && chown postgres:postgres "$LOG_DIR/postgres.log"
        log "postgres: starting cluster $PG_DATA on $PG_HOST:$PG_PORT"
        if ! as_pg "$bindir/pg_ctl" -D "$PG_DATA" -l "$LOG_DIR/postgres.log" -w -t "$WAIT_S" start >/dev/null; then
            tail -n 30 "$LOG_DIR/postgres.log" >&2 || true
            die "postgres: pg_ctl start failed (log: $LOG_DIR/postgres.log)"
        fi
    fi
    wait_until "$WAIT_S" "postgres to accept connections" \
        "$bindir/pg_isready" -q -h "$PG_HOST" -p "$PG_PORT" ||
        { tail -n 30 "$LOG_DIR/postgres.log" >&2 || true; die "postgres: not ready after ${WAIT_S}s"; }
    pg_provision || die "postgres: creating role/databases failed"
    pg_all_dbs_ok || die "postgres: 'select 1' as $PG_ROLE on ${PG_DATABASES[*]} failed"
    log "postgres: ready ($PG_URL)"
}

pg_stop() {
    local pid bindir
    pid=$(pg_our_pid || true)
    if [ -z "$pid" ]; then
        if port_open "$PG_PORT"; then
            log "postgres: port $PG_PORT is served by a server this script did not start; leaving it alone"
        else
            log "postgres: not running"
        fi
        return 0
    fi
    need_root postgres
    bindir=$(pg_bindir)
    log "postgres: stopping (pid $pid)"
    if ! as_pg "$bindir/pg_ctl" -D "$PG_DATA" -m fast -w -t 30 stop >/dev/null 2>&1; then
        log "postgres: fast shutdown timed out, killing $pid"
        kill -9 "$pid" 2>/dev/null || true
        wait_until 10 "postgres to exit" bash -c "! kill -0 $pid" || true
    fi
}

pg_status() {
    if pg_all_dbs_ok; then
        local who="external server"
        [ -n "$(pg_our_pid || true)" ] && who="cluster $PG_DATA"
        log "postgres: UP ($who) $PG_URL"
    else
        log "postgres: DOWN"; return 1
    fi
}

# --------------------------------------------------------------------- Redis --

redis_ping() { [ "$(timeout 5 redis-cli -h "$REDIS_HOST" -p "$REDIS_PORT" ping 2>/dev/null)" = PONG ]; }

redis_our_pid() {
    local pid
    pid=$(pidfile_pid "$REDIS_PIDFILE")
    [ -n "$pid" ] && pid_alive "$pid" redis-server && echo "$pid"
}

redis_start() {
    command -v redis-cli >/dev/null || die "redis-cli not found (run scripts/setup.sh)"
    if redis_ping; then
        log "redis: already running on $REDIS_HOST:$REDIS_PORT"
        return 0
    fi
    port_open "$REDIS_PORT" &&
        die "redis: port $REDIS_PORT is in use but does not answer PING without auth"
    need_root redis
    if [ -e "$REDIS_PIDFILE" ] && [ -z "$(redis_our_pid || true)" ]; then
        log "redis: removing stale pid file $REDIS_PIDFILE"
        rm -f "$REDIS_PIDFILE"
    fi
    install -d -m 0755 "$RUN_DIR" "$LOG_DIR" "$STATE_DIR/redis"
    if [ -z "$(redis_our_pid || true)" ]; then
        log "redis: starting on $REDIS_HOST:$REDIS_PORT (no persistence)"
        # Options only, no config file: daemonized, loopback only, nothing saved.
        redis-server --daemonize yes --bind "$REDIS_HOST" --port "$REDIS_PORT" \
            --pidfile "$REDIS_PIDFILE" --logfile "$LOG_DIR/redis.log" \
            --dir "$STATE_DIR/redis" --save '' --appendonly no </dev/null >/dev/null 2>&1 ||
            { tail -n 20 "$LOG_DIR/redis.log" >&2 || true; die "redis: redis-server failed to start"; }
    fi
    wait_until "$WAIT_S" "redis PING" redis_ping ||
        { tail -n 20 "$LOG_DIR/redis.log" >&2 || true; die "redis: no PONG after ${WAIT_S}s"; }
    log "redis: ready ($REDIS_URL)"
}

redis_stop() {
    local pid
    pid=$(redis_our_pid || true)
    if [ -z "$pid" ]; then
        if redis_ping; then
            log "redis: port $REDIS_PORT is served by a redis this script did not start; leaving it alone"
        else
            log "redis: not running"
        fi
        rm -f "$REDIS_PIDFILE" 2>/dev/null || true
        return 0
    fi
    need_root redis
    log "redis: stopping (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    if ! wait_until 20 "redis to exit" bash -c "! kill -0 $pid"; then
        kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$REDIS_PIDFILE"
}

redis_status() {
    if redis_ping; then log "redis: UP $REDIS_URL"; else log "redis: DOWN"; return 1; fi
}

# -------------------------------------------------------------------- Docker --

docker_ok() { timeout 10 docker info >/dev/null 2>&1; }

docker_our_pid() {
    local pid
    pid=$(pidfile_pid "$DOCKER_PIDFILE")
    [ -n "$pid" ] && pid_alive "$pid" dockerd && echo "$pid"
}

# dockerd refuses to start while docker.pid names a live process (even a
# recycled pid), and it reattaches to the containerd named in containerd.pid.
# Clear both when they do not name the right kind of process, and a socket
# file nobody serves.
docker_clear_stale() {
    local pid
    if [ -e "$DOCKER_PIDFILE" ] && [ -z "$(docker_our_pid || true)" ]; then
        log "docker: removing stale $DOCKER_PIDFILE"
        rm -f "$DOCKER_PIDFILE"
    fi
    if [ -e "$DOCKER_CONTAINERD_PIDFILE" ]; then
        pid=$(pidfile_pid "$DOCKER_CONTAINERD_PIDFILE")
        if [ -z "$pid" ] || ! pid_alive "$pid" containerd; then
            log "docker: removing stale $DOCKER_CONTAINERD_PIDFILE"
            rm -f "$DOCKER_CONTAINERD_PIDFILE"
        fi
    fi
    if [ -S "$DOCKER_SOCK" ] || [ -e "$DOCKER_SOCK" ]; then
        log "docker: removing stale socket $DOCKER_SOCK"
        rm -f "$DOCKER_SOCK"
    fi
}

docker_start() {
    command -v docker >/dev/null || die "docker CLI not found (run scripts/setup.sh)"
    if docker_ok; then
        log "docker: engine already running"
        return 0
    fi
    need_root docker
    command -v dockerd >/dev/null || die "dockerd not found (run scripts/setup.sh)"
    install -d -m 0755 "$LOG_DIR"
    local pid
    pid=$(docker_our_pid || true)
    if [ -n "$pid" ]; then
        log "docker: dockerd $pid is running but not answering yet, waiting"
    else
        docker_clear_stale
        log "docker: starting dockerd (log: $DOCKER_LOG)"
        # setsid + nohup + redirected fds: dockerd must not hold CI's stdout
        # open or die with this shell. DOCKERD_OPTS lets a developer add flags.
        # shellcheck disable=SC2086
        setsid nohup dockerd --pidfile="$DOCKER_PIDFILE" --host="unix://$DOCKER_SOCK" \
            ${DOCKERD_OPTS:-} >>"$DOCKER_LOG" 2>&1 </dev/null &
        pid=$!
    fi
    local deadline=$((SECONDS + WAIT_S))
    until docker_ok; do
        if ! kill -0 "$pid" 2>/dev/null; then
            tail -n 30 "$DOCKER_LOG" >&2 || true
            die "docker: dockerd exited during startup (log: $DOCKER_LOG)"
        fi
        if [ "$SECONDS" -ge "$deadline" ]; then
            tail -n 30 "$DOCKER_LOG" >&2 || true
            die "docker: 'docker info' still failing after ${WAIT_S}s (log: $DOCKER_LOG)"
        fi
        sleep 0.5
    done
    log "docker: ready"
}

docker_stop() {
    local pid
    pid=$(docker_our_pid || true)
    if [ -z "$pid" ]; then
        if docker_ok; then
            log "docker: an engine this script did not start is running; leaving it alone"
        else
            log "docker: not running"
        fi
        return 0
    fi
    need_root docker
    log "docker: stopping dockerd (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    if ! wait_until 30 "dockerd to exit" bash -c "! kill -0 $pid"; then
        log "docker: dockerd did not exit in 30s, killing it"
        kill -9 "$pid" 2>/dev/null || true
    fi
}

docker_status() {
    if docker_ok; then log "docker: UP ($(docker info --format '{{.ServerVersion}}' 2>/dev/null))"
    else log "docker: DOWN"; return 1; fi
}

# ---------------------------------------------------------------------- main --

print_env() {
    echo "export HIVEMIND_TEST_PG_URL='$PG_URL'"
    echo "export HIVEMIND_TEST_REDIS_URL='$REDIS_URL'"
}

usage() { sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }

main() {
    local action=${1:-}
    [ $# -gt 0 ] && shift
    local services=("$@")
    [ ${#services[@]} -eq 0 ] && services=(postgres redis docker)
    local s rc=0
    for s in "${services[@]}"; do
        case $s in postgres | redis | docker) ;; *) log "unknown service '$s'"; usage ;; esac
    done
    case $action in
        start)
            for s in "${services[@]}"; do
                case $s in postgres) pg_start ;; redis) redis_start ;; docker) docker_start ;; esac
            done
            echo "HIVEMIND_TEST_PG_URL=$PG_URL"
            echo "HIVEMIND_TEST_REDIS_URL=$REDIS_URL"
            ;;
        stop)
            for s in "${services[@]}"; do
                case $s in postgres) pg_stop ;; redis) redis_stop ;; docker) docker_stop ;; esac
            done
            ;;
        status)
            for s in "${services[@]}"; do
                case $s in
                    postgres) pg_status || rc=1 ;;
                    redis) redis_status || rc=1 ;;
                    docker) docker_status || rc=1 ;;
                esac
            done
            return $rc
            ;;
        env) print_env ;;
        *) usage ;;
    esac
}

main "$@"
