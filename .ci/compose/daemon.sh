# A private dockerd for the compose test (sourced by test.sh): its own socket,
# exec root and pidfile in a fresh directory under /tmp, its data root in the
# cache (so images and build cache survive to the next run).
# shellcheck shell=bash

PRIVATE_DOCKERD_DIR=""

start_private_dockerd() {
    local data=$TM_CACHE/docker attempt
    for attempt in 1 2; do
        PRIVATE_DOCKERD_DIR=$(mktemp -d /tmp/tm-dockerd.XXXXXX)
        export DOCKER_HOST=unix://$PRIVATE_DOCKERD_DIR/docker.sock
        mkdir -p "$data"
        dockerd --host "$DOCKER_HOST" --data-root "$data" \
            --exec-root "$PRIVATE_DOCKERD_DIR/exec" --pidfile "$PRIVATE_DOCKERD_DIR/dockerd.pid" \
            >"$PRIVATE_DOCKERD_DIR/dockerd.log" 2>&1 &
        local pid=$! i
        for ((i = 0; i < 60; i++)); do
            docker_ok && { log "private dockerd (pid $pid) on $DOCKER_HOST"; return 0; }
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.5
        done
        tail -20 "$PRIVATE_DOCKERD_DIR/dockerd.log" >&2
        stop_private_dockerd
        # A data root left broken by a killed daemon: set it aside, start afresh once.
        if ((attempt == 1)); then
            log "private dockerd did not start; retrying with a fresh data root"
            mv "$data" "$data.broken.$(date +%s)"
        fi
    done
    die "could not start a private dockerd"
}

stop_private_dockerd() {
    [[ -n $PRIVATE_DOCKERD_DIR ]] || return 0
    local pidfile=$PRIVATE_DOCKERD_DIR/dockerd.pid pid i
    if [[ -s $pidfile ]]; then
        pid=$(<"$pidfile")
        kill -TERM "$pid" 2>/dev/null || true
        for ((i = 0; i < 60; i++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.5
        done
        if kill -0 "$pid" 2>/dev/null; then
            log "private dockerd $pid ignored SIGTERM for 30 s; killing it"
            kill -KILL "$pid" 2>/dev/null || true
        fi
    fi
    cp "$PRIVATE_DOCKERD_DIR/dockerd.log" "$TM_CACHE/dockerd.last.log" 2>/dev/null || true
    rm -rf "$PRIVATE_DOCKERD_DIR" 2>/dev/null || true
    PRIVATE_DOCKERD_DIR=""
}
