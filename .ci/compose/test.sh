#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# The compose test (`make test-compose`): builds the image, runs the cluster of
# docker-compose.yml as a user would, and checks what a user would check
# (scenario.py). Needs root on Debian; installs docker.io and compose v2 when
# missing, starts a private dockerd when no daemon answers, builds the base image
# with debootstrap when no registry answers. Removes every container, network and
# volume it made, and stops the daemon it started, also on failure.
#
# Cache (between runs): $TASKMESH_COMPOSE_CACHE, default ~/.cache/taskmesh-compose.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
cd "$repo"
source "$here/lib.sh"
source "$here/tools.sh"
source "$here/daemon.sh"

PYTHON=${PYTHON:-$repo/.venv/bin/python}
PROJECT=taskmesh-ci-$$-$(date +%s)
export COMPOSE_PROJECT_NAME=$PROJECT COMPOSE_PROGRESS=quiet
export BASE_IMAGE
# The cluster's ports on the host: free ones, so that nothing else is disturbed.
read -r TASKMESH_PUBLISH_PORT TASKMESH_PUBLISH_PUB_PORT TASKMESH_PUBLISH_METRICS_PORT < <(python3 -c '
import socket
socks = [socket.socket() for _ in range(3)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))')
export TASKMESH_PUBLISH_ADDR=127.0.0.1 TASKMESH_PUBLISH_PORT TASKMESH_PUBLISH_PUB_PORT \
    TASKMESH_PUBLISH_METRICS_PORT
started=$(now)
timings=()
phase_start=$started
phase() { # phase NAME: records the time since the previous phase ended
    local t
    t=$(now)
    timings+=("$1=$(awk -v a="$phase_start" -v b="$t" 'BEGIN { printf "%.1f", b - a }')s")
    phase_start=$t
}

mkdir -p "$TM_CACHE"
exec 9>"$TM_CACHE/lock"
flock -w 900 9 || die "another compose test holds $TM_CACHE/lock"

ensure_docker_packages
ensure_compose
"$COMPOSE" version >&2
phase tools

compose() { "$COMPOSE" -f "$repo/docker-compose.yml" -p "$PROJECT" "$@"; }

cleanup() {
    local rc=$?
    set +e
    if [[ $rc != 0 ]] && docker_ok; then
        log "failed (exit $rc); the cluster's last logs:"
        compose ps -a >&2
        compose logs --no-color --tail 40 >&2
    fi
    if docker_ok; then
        compose --profile demo down --volumes --remove-orphans --timeout 10 >/dev/null 2>&1
        local left
        left=$(docker ps -aq --filter "label=com.docker.compose.project=$PROJECT"
               docker volume ls -q --filter "label=com.docker.compose.project=$PROJECT"
               docker network ls -q --filter "label=com.docker.compose.project=$PROJECT")
        [[ -z $left ]] || { log "left behind: $left"; rc=1; }
    fi
    stop_private_dockerd
    [[ $rc == 0 ]] || printf 'compose test: FAIL (exit %s) %s\n' "$rc" "${timings[*]}"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if docker_ok; then
    log "using the running docker daemon (${DOCKER_HOST:-default socket})"
else
    command -v dockerd >/dev/null || die "no docker daemon answers and dockerd is missing"
    start_private_dockerd
    # Our own daemon: whatever an interrupted earlier run left in it goes (a
    # container with `restart: unless-stopped` would come back with the daemon).
    mapfile -t stale < <(docker ps -aq)
    ((${#stale[@]} == 0)) || docker rm --force --volumes "${stale[@]}" >/dev/null
    mapfile -t stale < <(docker volume ls -q --filter label=com.docker.compose.project)
    ((${#stale[@]} == 0)) || docker volume rm --force "${stale[@]}" >/dev/null
    docker network prune --force >/dev/null
fi
phase daemon

bash "$here/base-image.sh"
phase base

compose build manager >&2
# Earlier builds' images and build cache, after a week (the current ones stay).
docker image prune --force --filter "until=168h" >/dev/null
docker builder prune --force --filter "until=168h" >/dev/null
image_size=$(docker image inspect taskmesh:local --format '{{.Size}}')
phase build

make --no-print-directory install >/dev/null
phase venv

report=$(mktemp)
COMPOSE="$COMPOSE" PROJECT="$PROJECT" TASKMESH="$repo/.venv/bin/taskmesh" \
    TM_REPORT="$report" "$PYTHON" "$here/scenario.py"
read -ra scenario <"$report"
rm -f "$report"
timings+=("${scenario[@]}")
phase_start=$(now)

compose --profile demo down --volumes --remove-orphans --timeout 10 >/dev/null 2>&1
phase down

total=$(awk -v a="$started" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }')
printf 'compose test: PASS in %ss; image %sMB; %s\n' "$total" \
    "$((image_size / 1000000))" "${timings[*]}"
