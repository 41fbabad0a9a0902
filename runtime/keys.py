"""CURVE keys: making, reading and applying them (pyzmq's certificate files).

A key pair is two files made by ``taskmesh keys generate NAME``:
``NAME.key`` (the public key, safe to hand out) and ``NAME.key_secret``
(public and secret key, mode 0600), in the format of ``zmq.auth``.  A
directory of ``*.key`` files is an allow-list (the manager's
``--worker-keys``, ``--client-keys``, ``--operator-keys``).

Keys are handled as their Z85 text (40 characters), which is also how the
manager's ZAP handler names a peer (its ZeroMQ ``User-Id``).  Every failure
is a ``KeyFileError`` with a one-line message naming the file.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

import zmq
import zmq.asyncio
import zmq.auth
from loguru import logger
from zmq.utils import z85

PUBLIC_SUFFIX = ".key"
SECRET_SUFFIX = ".key_secret"
#: Z85 text of a CURVE key.
KEY_CHARS = 40


class KeyFileError(ValueError):
    """A key file or key directory that cannot be used (missing, unreadable, malformed)."""


@dataclass(frozen=True, slots=True)
class KeyPair:
    """A peer's own keys (Z85 bytes), read from a ``.key_secret`` file."""

    public: bytes
    secret: bytes

    @property
    def text(self) -> str:
        return self.public.decode("ascii")


@dataclass(frozen=True, slots=True)
class CurveClient:
    """What a worker or client needs to reach a CURVE manager: its keys and the manager's."""

    keys: KeyPair
    server: bytes

    def apply(self, sock: zmq.Socket[bytes] | zmq.asyncio.Socket) -> None:
        """Make ``sock`` a CURVE client of the manager (before ``connect``)."""
        sock.setsockopt(zmq.CURVE_SECRETKEY, self.keys.secret)
        sock.setsockopt(zmq.CURVE_PUBLICKEY, self.keys.public)
        sock.setsockopt(zmq.CURVE_SERVERKEY, self.server)


def check_curve() -> None:
    if not zmq.has("curve"):
        raise KeyFileError("this libzmq was built without CURVE support")


def generate(name: str, directory: str | Path = ".") -> tuple[Path, Path]:
    """Write ``DIR/NAME.key`` and ``DIR/NAME.key_secret`` (0600); never overwrite either."""
    check_curve()
    if not name or "/" in name or name.startswith(".") or name != name.strip():
        raise KeyFileError(f"{name!r} is not a usable key name (no '/', no leading '.')")
    folder = Path(directory)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise KeyFileError(f"cannot create {str(folder)!r}: {exc.strerror}") from None
    public, secret = folder / (name + PUBLIC_SUFFIX), folder / (name + SECRET_SUFFIX)
    for path in (public, secret):
        if path.exists():
            raise KeyFileError(f"{path} exists; remove it first (keys are never overwritten)")
    old = os.umask(0o077)  # the secret file is never readable by others, not even briefly
    try:
        zmq.auth.create_certificates(str(folder), name)
    except OSError as exc:
        raise KeyFileError(f"cannot write keys in {str(folder)!r}: {exc.strerror}") from None
    finally:
        os.umask(old)
    public.chmod(0o644)
    secret.chmod(0o600)
    return public, secret


def _load(path: str | Path) -> tuple[bytes, bytes | None]:
    file = Path(path)
    if not file.is_file():
        raise KeyFileError(f"{str(file)!r} is not a key file (missing, or a directory)")
    try:
        public, secret = zmq.auth.load_certificate(file)
    except (OSError, ValueError) as exc:
        raise KeyFileError(f"cannot read a key from {str(file)!r}: {exc}") from None
    _check_z85(file, public)
    if secret is not None:
        _check_z85(file, secret)
    return public, secret


def _check_z85(file: Path, key: bytes) -> None:
    if len(key) != KEY_CHARS:
        raise KeyFileError(f"{str(file)!r}: a key is {KEY_CHARS} Z85 characters, got {len(key)}")
    try:
        z85.decode(key)
    except (ValueError, KeyError):
        raise KeyFileError(f"{str(file)!r}: the key is not Z85 text") from None


def load_secret(path: str | Path) -> KeyPair:
    """A ``.key_secret`` file's key pair; warns when others may read it."""
    public, secret = _load(path)
    if secret is None:
        raise KeyFileError(f"{str(path)!r} holds no secret key (give the .key_secret file)")
    mode = Path(path).stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        logger.warning("secret key file {} is readable by others (chmod 600 it)", path)
    return KeyPair(public=public, secret=secret)


def load_public(path: str | Path) -> bytes:
    """The public key in a ``.key`` (or ``.key_secret``) file."""
    return _load(path)[0]


def scan_dir(path: str | Path) -> tuple[dict[str, str], dict[Path, str]]:
    """``DIR/*.key`` read file by file: the usable keys (Z85 text -> file stem) and the
    files that are not (path -> one-line reason).  ``KeyFileError``: no listable directory."""
    folder = Path(path)
    if not folder.is_dir():
        raise KeyFileError(f"{str(folder)!r} is not a directory of public keys")
    try:
        files = sorted(folder.glob("*" + PUBLIC_SUFFIX))
    except OSError as exc:
        raise KeyFileError(f"cannot list {str(folder)!r}: {exc.strerror}") from None
    keys: dict[str, str] = {}
    bad: dict[Path, str] = {}
    for file in files:
        try:
            keys[load_public(file).decode("ascii")] = file.stem
        except KeyFileError as exc:
            bad[file] = str(exc)
    return keys, bad


def file_stamp(path: str | Path) -> tuple[int, int, int]:
    """What changes when a file is rewritten: ``(mtime_ns, size, inode)`` (zeros: gone)."""
    try:
        st = os.stat(path)
    except OSError:
        return (0, 0, 0)
    return (st.st_mtime_ns, st.st_size, st.st_ino)


def dir_stamp(path: str | Path) -> tuple[int, int]:
    """What changes when a key file is added, removed or renamed: ``(mtime_ns, inode)``."""
    try:
        st = os.stat(path)
    except OSError:
        return (0, 0)
    return (st.st_mtime_ns, st.st_ino)


def curve_client(secret_key: str | None, manager_key: str | None) -> CurveClient | None:
    """The CURVE settings of a worker or client (``None``: CURVE off)."""
    if not secret_key and not manager_key:
        return None
    if not secret_key or not manager_key:
        raise KeyFileError("--secret-key and --manager-key go together (CURVE needs both)")
    check_curve()
    return CurveClient(keys=load_secret(secret_key), server=load_public(manager_key))
