#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Make sure the base image (BASE_IMAGE, default python:3.11-slim) exists in the
# daemon that DOCKER_HOST names: already there, or pulled, or loaded from the
# cache, or - when no registry answers - built here from Debian bookworm with
# debootstrap and saved to the cache for the next run.
#
# The local stand-in: Debian's python3 (3.11), pip and venv; Debian's
# EXTERNALLY-MANAGED marker removed (as in the official image, pip may install
# into the system); this host's CA certificates added, and pip pointed at the
# system bundle, so pip inside a build trusts what the host trusts.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$here/lib.sh"

tarball="$TM_CACHE/base-${BASE_IMAGE//[:\/]/_}.tar"

have_image() { docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; }

if have_image; then
    log "base image $BASE_IMAGE: present"
    exit 0
fi
if [[ -s $tarball ]] && docker load -q -i "$tarball" >&2 && have_image; then
    log "base image $BASE_IMAGE: loaded from $tarball"
    exit 0
fi
if timeout 120 docker pull -q "$BASE_IMAGE" >&2 2>/dev/null; then
    log "base image $BASE_IMAGE: pulled"
    exit 0
fi
case $BASE_IMAGE in
    python:3.11-slim | python:3.11-slim-bookworm) ;;
    *) die "base image $BASE_IMAGE: not present, not pullable, and only python:3.11-slim can be built here" ;;
esac

log "base image $BASE_IMAGE: no registry answers; building it with debootstrap (bookworm)"
if ! command -v debootstrap >/dev/null; then
    "${APT_GET[@]}" update
    "${APT_GET[@]}" install --no-install-recommends debootstrap >/dev/null
fi
mkdir -p "$TM_CACHE"
work=$(mktemp -d "$TM_CACHE/rootfs.XXXXXX")
trap 'rm -rf "$work"' EXIT
root=$work/root
debootstrap --variant=minbase --include=python3,python3-pip,python3-venv,ca-certificates \
    bookworm "$root" "$(debian_mirror)" >"$work/debootstrap.log" 2>&1 \
    || { tail -20 "$work/debootstrap.log" >&2; die "debootstrap failed"; }

# The host's certificate authorities that the new system does not have, one file
# each, then Debian's own tool rebuilds the bundle.
python3 - "$root" <<'PY'
import pathlib, re, sys
root = pathlib.Path(sys.argv[1])
pem = re.compile(r"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.S)
def certs(path):
    return pem.findall(path.read_text()) if path.exists() else []
have = set(certs(root / "etc/ssl/certs/ca-certificates.crt"))
extra = [c for c in certs(pathlib.Path("/etc/ssl/certs/ca-certificates.crt")) if c not in have]
out = root / "usr/local/share/ca-certificates"
out.mkdir(parents=True, exist_ok=True)
for i, cert in enumerate(extra):
    (out / f"host-{i}.crt").write_text(cert + "\n")
print(f"{len(extra)} host CA certificate(s) added", file=sys.stderr)
PY
chroot "$root" update-ca-certificates >/dev/null 2>&1

rm -f "$root"/usr/lib/python3.*/EXTERNALLY-MANAGED
ln -sf python3 "$root/usr/bin/python"
# What a container never needs: downloaded packages, package lists, docs, locales.
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* \
    "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/info/* \
    "$root"/usr/share/locale/* "$root"/var/log/* "$root"/tmp/*

tar -C "$root" --numeric-owner -c . | docker import \
    --change 'ENV LANG=C.UTF-8' \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt' \
    --change 'ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt' \
    --change 'CMD ["python3"]' \
    --message "debootstrap bookworm minbase + python3, pip, venv (local stand-in for $BASE_IMAGE)" \
    - "$BASE_IMAGE" >/dev/null
docker image inspect "$BASE_IMAGE" >/dev/null
docker save -o "$tarball.tmp" "$BASE_IMAGE" && mv "$tarball.tmp" "$tarball"
log "base image $BASE_IMAGE: built ($(du -h "$tarball" | cut -f1) saved to $tarball)"
