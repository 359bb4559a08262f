"""API keys and their roles: read, write, admin (each includes the one before).

Keys come from ``--keys-file`` (a JSON list, read again on SIGHUP) and from
``--api-key`` (one admin key). Only SHA-256 digests are kept in memory; the
file may hold a key itself (``"key"``) or its digest (``"sha256"``, 64 hex
digits), so that the file on disk need not hold the secret either. See
docs/security.md.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from dataclasses import dataclass, field
from enum import IntEnum
from pathlib import Path

log = logging.getLogger("shoal.keys")

MIN_KEY_LENGTH = 16
MAX_KEYS = 10_000
_HEX_DIGEST = re.compile(r"[0-9a-f]{64}")


class Role(IntEnum):
    READ = 1
    WRITE = 2
    ADMIN = 3

    @property
    def label(self) -> str:
        return self.name.lower()


class KeysFileError(ValueError):
    """A keys file that cannot be used; the message says where and why."""


def digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


@dataclass(frozen=True)
class KeyRing:
    """Key digests and their roles. Empty: this node asks for no key."""

    roles: tuple[tuple[bytes, Role], ...] = ()
    _by_digest: dict[bytes, Role] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Looked up by digest: what the lookup's timing could tell is about
        # the SHA-256 of the offered key, which says nothing of any real key.
        object.__setattr__(self, "_by_digest", dict(self.roles))

    def role_of(self, offered: str) -> Role | None:
        return self._by_digest.get(digest(offered))

    def with_key(self, key: str | None, role: Role) -> KeyRing:
        """With ``key`` added; it takes ``role`` even if the ring held it."""
        if not key:
            return self
        known = digest(key)
        return KeyRing((*(entry for entry in self.roles if entry[0] != known), (known, role)))

    def summary(self) -> str:
        counts = {role: sum(1 for _, r in self.roles if r is role) for role in Role}
        return ", ".join(f"{n} {role.label}" for role, n in counts.items())


def parse_keys(text: str, where: str) -> KeyRing:
    try:
        entries = json.loads(text)
    except ValueError as exc:
        raise KeysFileError(f"{where} is not JSON: {exc}") from None
    if not isinstance(entries, list):
        raise KeysFileError(f"{where} must hold a JSON list of {{key|sha256, role}} objects")
    if len(entries) > MAX_KEYS:
        raise KeysFileError(f"{where} holds {len(entries)} keys; at most {MAX_KEYS}")
    roles: list[tuple[bytes, Role]] = []
    for n, entry in enumerate(entries):
        at = f"{where}, entry {n}"
        if not isinstance(entry, dict):
            raise KeysFileError(f"{at} is not an object")
        unknown = set(entry) - {"key", "sha256", "role", "name"}
        if unknown:
            raise KeysFileError(f"{at} has unknown fields {sorted(unknown)}")
        try:
            role = Role[str(entry.get("role", "")).upper()]
        except KeyError:
            raise KeysFileError(f"{at}: role must be read, write or admin, "
                                f"not {entry.get('role')!r}") from None  # fmt: skip
        key, hashed = entry.get("key"), entry.get("sha256")
        if (key is None) == (hashed is None):
            raise KeysFileError(f"{at} needs exactly one of key and sha256")
        if key is not None:
            if not isinstance(key, str) or len(key) < MIN_KEY_LENGTH or not key.isprintable():
                raise KeysFileError(f"{at}: a key must be at least {MIN_KEY_LENGTH} printable "
                                    "characters")  # fmt: skip
            roles.append((digest(key), role))
        else:
            if not isinstance(hashed, str) or not _HEX_DIGEST.fullmatch(hashed):
                raise KeysFileError(f"{at}: sha256 must be 64 lowercase hex digits "
                                    "(sha256sum of the key, without a newline)")  # fmt: skip
            roles.append((bytes.fromhex(hashed), role))
    if not roles:
        raise KeysFileError(f"{where} holds no keys: a node given a keys file asks every "
                            "request for one, so it needs at least one")  # fmt: skip
    if len({known for known, _ in roles}) != len(roles):
        raise KeysFileError(f"{where} lists one key twice")
    return KeyRing(tuple(roles))


class KeySource:
    """The keys in force: the file's (read again by :meth:`reload`) and the
    single ``--api-key``. A reload that fails keeps the keys in force, so a
    typo in the file locks nobody out."""

    def __init__(self, path: Path | None, api_key: str | None) -> None:
        self.path = path
        self.api_key = api_key
        self.ring = self._read()

    def _read(self) -> KeyRing:
        ring = KeyRing()
        if self.path is not None:
            try:
                text = self.path.read_text()
            except OSError as exc:
                raise KeysFileError(f"keys file {self.path} cannot be read: {exc}") from None
            ring = parse_keys(text, f"keys file {self.path}")
        return ring.with_key(self.api_key, Role.ADMIN)

    def reload(self) -> bool:
        if self.path is None:
            log.info("SIGHUP: no keys file to read again (see --keys-file)")
            return False
        try:
            ring = self._read()
        except KeysFileError as exc:
            log.error("keys not reloaded, the old ones stay in force: %s", exc)
            return False
        self.ring = ring
        log.info("keys reloaded from %s: %s", self.path, ring.summary())
        return True
