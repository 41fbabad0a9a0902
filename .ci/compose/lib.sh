# Shared by the compose test's scripts (sourced, not run).
# shellcheck shell=bash disable=SC2034

# Everything kept between runs lives here, outside the repository: the compose
# binary, the base image's tarball and the private daemon's data root.
TM_CACHE=${TASKMESH_COMPOSE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/taskmesh-compose}
BASE_IMAGE=${BASE_IMAGE:-python:3.11-slim}
APT_GET=(apt-get -o DPkg::Lock::Timeout=600 -o Acquire::Retries=3 -qq)

log() { printf '== %s\n' "$*" >&2; }
die() { printf 'FAIL: %s\n' "$*" >&2; exit 1; }

# Seconds since the epoch, with milliseconds.
now() { date +%s.%3N; }

# `docker` answers (with the DOCKER_HOST in force)?
docker_ok() { timeout 20 docker version --format '{{.Server.Version}}' >/dev/null 2>&1; }

# The Debian mirror this machine's apt uses (debootstrap fetches from it too).
debian_mirror() {
    local uri
    uri=$(grep -hs -m1 -E '^URIs:.*/debian/?$' /etc/apt/sources.list.d/*.sources || true)
    uri=${uri#URIs:}
    uri=${uri// /}
    if [[ -z $uri ]]; then
        uri=$(grep -hs -m1 -E '^deb .*/debian/? ' /etc/apt/sources.list | awk '{print $2}' || true)
    fi
    printf '%s\n' "${uri:-http://deb.debian.org/debian}"
}
