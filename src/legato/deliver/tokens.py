"""The unsubscribe token: who may stop a message, signed so nobody else can.

The token in an unsubscribe link used to be ``sha256("{message_id}:{customer_id}")``: with
sequential message ids and guessable customer ids anyone could compute every customer's
link and unsubscribe them, or pass a link they made up as the brand's. It is now an HMAC
(RFC 2104, SHA-256) under a secret key only the operator holds:

    token = base32(message id) "." base32(HMAC(key, "{message_id}:{customer_id}"))[:26]

The message id travels in the clear so a link can be verified on its own (find the
message, recompute the MAC for its customer); 26 base32 characters keep 130 bits of the MAC.
Base32 (a-z, 2-7), not hex: a hex token sometimes holds 13+ digits that pass the Luhn check,
and the content guard rightly blocks what looks like a card number.

**The key** comes from, in order: ``LEGATO_SECRET`` (comma-separated keys, the current one
first, then those still accepted); the file named by ``LEGATO_SECRET_FILE``; the file
``legato.secret`` beside a SQLite database; or ``$XDG_DATA_HOME/legato/secret`` (by default
``~/.local/share/legato/secret``) for a server database. A missing file is created with a
fresh random key, readable by its owner only (0600); a file others can read is refused.

**Rotation** (``legato secret rotate``) puts a new key first and keeps the previous ones, so
links already sent keep working: a key retired less than :data:`KEEP_RETIRED_DAYS` ago is
still accepted. Tokens themselves do not expire; CAN-SPAM asks that an opt-out link work for
at least 30 days after the message is sent, and a link that works longer harms nobody.
"""

from __future__ import annotations

import base64
import functools
import hmac
import os
import secrets
import stat
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from hashlib import sha256
from pathlib import Path

from sqlalchemy import Engine
from sqlalchemy.engine import make_url

from legato.errors import LegatoError

SECRET_ENV = "LEGATO_SECRET"
SECRET_FILE_ENV = "LEGATO_SECRET_FILE"
KEEP_RETIRED_DAYS = 90  # > the 30 days CAN-SPAM asks a link to keep working
MAC_CHARS = 26  # base32 characters of the MAC in a token: 130 bits


class SecretError(LegatoError):
    """The signing key cannot be read or created."""


@dataclass(frozen=True)
class KeyRing:
    """The current signing key first, then retired keys that are still accepted."""

    keys: tuple[bytes, ...]
    source: str  # where the keys came from, for messages

    @property
    def current(self) -> bytes:
        return self.keys[0]


def _b32(data: bytes) -> str:
    return base64.b32encode(data).decode("ascii").rstrip("=").lower()


# Base32 codes each 5 bytes apart, so a text's code is its 20-byte head's followed by the
# rest's. The dispatcher signs a token per message, and the standard library's base32 was a
# tenth of its work per webhook: a batch's message ids share their first 24 characters (one
# random prefix per write), so the head's code is kept, and a MAC needs only its first 20
# bytes for its 26 characters.
_HEAD = 20


@functools.lru_cache(maxsize=256)
def _b32_head(head: bytes) -> str:
    return _b32(head)


def _b32_text(text: str) -> str:
    data = text.encode()
    return _b32_head(data[:_HEAD]) + _b32(data[_HEAD:]) if len(data) > _HEAD else _b32(data)


def _mac(key: bytes, message_id: object, customer_id: str) -> str:
    return _b32(hmac.digest(key, f"{message_id}:{customer_id}".encode(), "sha256")[:_HEAD])[:MAC_CHARS]


def message_token(message_id: object, customer_id: str, ring: KeyRing) -> str:
    """The unsubscribe token of one message to one customer, signed with the current key."""
    return f"{_b32_text(str(message_id))}.{_mac(ring.current, message_id, customer_id)}"


def token_message_id(token: str) -> str | None:
    """The message id a token names (not yet verified), or None if it is no token of ours."""
    head, dot, mac = token.strip().lower().partition(".")
    if not dot or len(mac) != MAC_CHARS or not head:
        return None
    try:
        return base64.b32decode(head.upper() + "=" * (-len(head) % 8)).decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        return None


def verify_token(token: str, message_id: object, customer_id: str, ring: KeyRing) -> bool:
    """True if ``token`` was signed for this message and customer by any key still accepted."""
    if token_message_id(token) != str(message_id):
        return False
    given = token.strip().lower().partition(".")[2]
    return any(hmac.compare_digest(given, _mac(key, message_id, customer_id)) for key in ring.keys)


def link_signature(message_id: object, url: str, ring: KeyRing) -> str:
    """The signature of one tracked link's target in one message (the click redirect carries it):
    without it the redirect would send anyone anywhere under the brand's name (an open redirect)."""
    return _link_mac(ring.current, message_id, url)


def verify_link(message_id: object, url: str, signature: str, ring: KeyRing) -> bool:
    """True if ``signature`` was made for this message's link to ``url`` by any key still accepted."""
    given = signature.strip().lower()
    return len(given) == MAC_CHARS and any(hmac.compare_digest(given, _link_mac(key, message_id, url)) for key in ring.keys)


def _link_mac(key: bytes, message_id: object, url: str) -> str:
    # "link:" keeps a link's MAC apart from a message token's ("{message_id}:{customer_id}"):
    # a message id is a UUID, never the word "link".
    return _b32(hmac.new(key, f"link:{message_id}:{url}".encode(), sha256).digest())[:MAC_CHARS]


# --- where the keys live ---------------------------------------------------------------------


def secret_path(database_url: str | None) -> Path:
    """The key file for a database: named by the environment, beside SQLite, or per user."""
    named = os.environ.get(SECRET_FILE_ENV)
    if named:
        return Path(named)
    if database_url:
        url = make_url(database_url)
        if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
            return Path(url.database).resolve().parent / "legato.secret"
    data_home = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return data_home / "legato" / "secret"


def ring_for(engine: Engine) -> KeyRing:
    """The key ring of the database ``engine`` is connected to."""
    return key_ring(engine.url.render_as_string(hide_password=False))


def key_ring(database_url: str | None, *, now: datetime | None = None) -> KeyRing:
    """The keys to sign and verify with (see the module docstring for where they come from)."""
    given = os.environ.get(SECRET_ENV)
    if given is not None:
        keys = tuple(part.strip().encode() for part in given.split(",") if part.strip())
        if not keys or any(len(key) < 16 for key in keys):
            raise SecretError(f"{SECRET_ENV} must hold one or more keys of at least 16 characters, separated by commas",
                              hint="generate one with: python3 -c 'import secrets; print(secrets.token_hex(32))'")
        return KeyRing(keys, f"${SECRET_ENV}")
    path = secret_path(database_url)
    if not path.exists():
        _create(path, (now or datetime.now(timezone.utc), secrets.token_bytes(32)))
    return KeyRing(tuple(key for _, key in _read(path)), str(path))


def _create(path: Path, entry: tuple[datetime, bytes]) -> None:
    """A new key file, 0600 from its first byte; if another process made it first, theirs stands."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    except OSError as exc:
        raise SecretError(f"cannot create the signing key file {path}: {exc}", hint=f"make its folder writable, or set {SECRET_ENV} or {SECRET_FILE_ENV}") from None
    with os.fdopen(handle, "w", encoding="ascii") as out:
        out.write(f"{entry[0].isoformat()} {entry[1].hex()}\n")


def rotate_secret(database_url: str | None, *, now: datetime | None = None) -> tuple[Path, int]:
    """Put a new key first in the key file; keep the keys retired less than KEEP_RETIRED_DAYS ago.

    Returns the file and how many keys it now holds. With ``LEGATO_SECRET`` set, the keys
    are the environment's to rotate: put the new key first and keep the old one after it.
    """
    if os.environ.get(SECRET_ENV) is not None:
        raise SecretError(f"the keys come from ${SECRET_ENV}; rotate them there",
                          hint=f"set {SECRET_ENV}=NEW,OLD and drop OLD after {KEEP_RETIRED_DAYS} days")
    now = now or datetime.now(timezone.utc)
    path = secret_path(database_url)
    entries = _read(path) if path.exists() else []
    kept = [(now, secrets.token_bytes(32))]
    # A key was retired when the next newer key was created; entries are newest first.
    for (created_after, _), (created, key) in zip([kept[0], *entries], entries):
        if now - created_after < timedelta(days=KEEP_RETIRED_DAYS):
            kept.append((created, key))
    _write(path, kept)
    return path, len(kept)


def _read(path: Path) -> list[tuple[datetime, bytes]]:
    try:
        mode = path.stat().st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise SecretError(f"{path} can be read by other users", hint=f"chmod 600 {path}")
        lines = path.read_text(encoding="ascii").split()
    except (OSError, UnicodeDecodeError) as exc:
        raise SecretError(f"cannot read the signing key file {path}: {exc}", hint=f"check its owner and permissions, or set {SECRET_ENV}") from None
    try:
        entries = [(datetime.fromisoformat(lines[i]), bytes.fromhex(lines[i + 1])) for i in range(0, len(lines) - 1, 2)]
    except ValueError:
        entries = []
    if not entries or len(lines) % 2:
        raise SecretError(f"{path} is not a Legato key file (lines of: TIME HEX-KEY)", hint="restore it from a backup, or move it away to start with a new key")
    return entries


def _write(path: Path, entries: list[tuple[datetime, bytes]]) -> None:
    text = "".join(f"{created.isoformat()} {key.hex()}\n" for created, key in entries)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(path.name + ".new")
        # Created 0600 from the first byte (not chmod after writing), then moved into place.
        handle = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(handle, "w", encoding="ascii") as out:
            out.write(text)
        os.chmod(temporary, 0o600)
        os.replace(temporary, path)
    except OSError as exc:
        raise SecretError(f"cannot write the signing key file {path}: {exc}", hint=f"make its folder writable, or set {SECRET_ENV} or {SECRET_FILE_ENV}") from None
