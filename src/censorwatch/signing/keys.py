"""Ed25519 key files: created private (0600), never overwritten by accident, refused if exposed.

A probe key names a *device*: its public half travels in every measurement it signs, so it must
never be derived from, or stored with, anything that names a person. The log key is a different
file owned by the collector's log (``<log dir>/log.key``); the two are never interchangeable.
"""

from __future__ import annotations

import grp
import os
import pwd
import stat
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from censorwatch.durable import fsync_dir

PROBE_KEY_ENV = "CENSORWATCH_PROBE_KEY"


class KeyFileError(Exception):
    """A key file is missing, unreadable, exposed, or would be overwritten."""


def default_probe_key_path() -> Path:
    """``$CENSORWATCH_PROBE_KEY``, else ``$XDG_CONFIG_HOME/censorwatch/probe.key``."""
    env = os.environ.get(PROBE_KEY_ENV)
    if env:
        return Path(env).expanduser()
    config = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(config) / "censorwatch" / "probe.key"


def _private_group(st: os.stat_result) -> bool:
    """Whether the directory's group is its owner's own (a user private group: same name, no
    other members), so that group write access gives nobody else anything."""
    try:
        group = grp.getgrgid(st.st_gid)
        owner = pwd.getpwuid(st.st_uid)
    except KeyError:
        return False
    return (
        owner.pw_gid == st.st_gid
        and group.gr_name == owner.pw_name
        and not (set(group.gr_mem) - {owner.pw_name})
    )


def exposed_directory(path: Path) -> str | None:
    """Why a key created at ``path`` could be replaced or read by another user, or None.

    The key's directory must belong to us (or root) and be writable by nobody else: whoever can
    write it can plant or swap names in it. Above it, a directory others can write is fine only
    if it is sticky (as ``/tmp``): then they cannot rename or remove an entry that is ours.
    Group write counts as others' unless the group is the owner's private group.
    """
    me = os.geteuid()
    directory = Path(os.path.abspath(Path(path).parent))
    first = True
    for current in (directory, *directory.parents):
        try:
            st = current.stat()
        except FileNotFoundError:
            continue  # to be created by us, 0700
        if st.st_uid not in (me, 0):
            return f"{current} belongs to another user (uid {st.st_uid})"
        others = bool(st.st_mode & stat.S_IWOTH)
        group = bool(st.st_mode & stat.S_IWGRP) and not _private_group(st)
        if others or group:
            who = "every user" if others else f"group {st.st_gid}"
            if first:
                return f"{current} is writable by {who}"
            if not st.st_mode & stat.S_ISVTX:
                return f"{current} is writable by {who} and not sticky"
        first = False
    return None


def generate_key_file(path: Path, *, force: bool = False) -> Ed25519PrivateKey:
    """Write a new PKCS#8 PEM key readable only by its owner; the old one only goes with force.

    The key is written to a temporary file created with mode 0600 and renamed into place, so a
    crash leaves either the old key or the new one, never a half-written or readable file.
    """
    path = Path(path)
    if path.exists() and not force:
        raise KeyFileError(f"{path} already exists (use --force to replace it)")
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)  # left by a crash of an earlier process with this pid
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, pem)
        os.fsync(fd)
    finally:
        os.close(fd)
    if force:
        os.replace(tmp, path)
    else:
        try:
            os.link(tmp, path)  # fails if someone created the file meanwhile
        except FileExistsError:
            raise KeyFileError(f"{path} already exists (use --force to replace it)") from None
        finally:
            tmp.unlink(missing_ok=True)
    fsync_dir(path.parent)
    return key


def load_private_key(path: Path) -> Ed25519PrivateKey:
    """Read a key file, refusing one that group or others can read (as ssh does)."""
    path = Path(path)
    try:
        mode = path.stat().st_mode
        data = path.read_bytes()
    except FileNotFoundError:
        raise KeyFileError(f"no key at {path} (create one with `censorwatch keys init`)") from None
    except OSError as exc:
        raise KeyFileError(f"cannot read key {path}: {exc.strerror}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise KeyFileError(f"{path} is accessible to other users; run: chmod 600 {path}")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise KeyFileError(f"{path} is not a PEM private key: {exc}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFileError(f"{path} is not an Ed25519 key")
    return key


def load_or_create(path: Path) -> Ed25519PrivateKey:
    """The key at ``path``, created on first use (the log's own key)."""
    if not Path(path).exists():
        try:
            return generate_key_file(path)
        except KeyFileError:
            pass  # created concurrently; read that one
    return load_private_key(path)
