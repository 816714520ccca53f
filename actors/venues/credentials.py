"""Venue credentials: typed, never printed, resolved from the environment or an encrypted store.

* :class:`HmacCredentials` (Binance, AsterDEX V1) and :class:`ApiWalletCredentials` (AsterDEX V3)
  hold the secrets of one account. Their ``repr``/``str`` show a masked key id (``dbef…cc83``)
  at most; they are plain slotted classes, so msgspec and json refuse to serialise them.
* :class:`CredentialSettings` is the settings shape embedded in an account's settings:
  ``{api_key_env, api_secret_env}`` (HMAC) or ``{user, signer, signer_key_env}`` (V3). The
  settings name environment variables, never secrets.
* :class:`CredentialStore` keeps credentials in the service's SQLite database (table
  ``credentials``), encrypted with Fernet under a key derived by scrypt from ``EXECD_MASTER_KEY``
  and a random per-record salt stored with the record. A wrong master key is reported as such
  (Fernet authenticates), never decrypted to garbage.
* :func:`resolve_credentials` picks the settings' environment variables, else the store, and
  names the account and the missing piece when neither has them.

The ``execd credentials`` command lives in :mod:`actors.venues.credentials_cli`.
"""

from __future__ import annotations

import base64
import hmac
import os
import re
import sqlite3
import time
from collections.abc import Callable, Mapping
from typing import ClassVar, Final, Literal

import msgspec
from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from actors.persistence import migrate, open_connection
from actors.venues.signing import signer_address

__all__ = [
    "MASTER_KEY_ENV",
    "ApiWalletCredentials",
    "CredentialSettings",
    "CredentialStore",
    "Credentials",
    "CredentialsError",
    "CredentialStoreError",
    "HmacCredentials",
    "MissingCredentials",
    "StoredCredentials",
    "WrongMasterKey",
    "credentials_from_env",
    "mask",
    "master_key_from_env",
    "resolve_credentials",
]

MASTER_KEY_ENV: Final = "EXECD_MASTER_KEY"
MIN_MASTER_KEY_LENGTH: Final = 16

_ADDRESS = re.compile(r"^0x[0-9a-fA-F]{40}\Z")
_PRIVATE_KEY = re.compile(r"^(0x)?[0-9a-fA-F]{64}\Z")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*\Z")


class CredentialsError(Exception):
    """Base of the credential errors (their messages never contain a secret)."""


class MissingCredentials(CredentialsError):
    """An account has no usable credentials (names the account and what is missing)."""


class CredentialStoreError(CredentialsError):
    """The encrypted store cannot be used (no master key, corrupted record...)."""


class WrongMasterKey(CredentialStoreError):
    """A record does not decrypt with this master key."""


def mask(value: str) -> str:
    """``dbef…cc83``: enough to tell keys apart, too little to use one."""
    return f"{value[:4]}…{value[-4:]}" if len(value) >= 16 else "…"


class HmacCredentials:
    """API key and secret of an HMAC-signed account (Binance USDⓈ-M, AsterDEX V1)."""

    __slots__ = ("api_key", "api_secret")
    kind: ClassVar[Literal["hmac"]] = "hmac"

    def __init__(self, api_key: str, api_secret: str) -> None:
        api_key, api_secret = api_key.strip(), api_secret.strip()
        if not api_key or not api_secret:
            raise ValueError("HMAC credentials need a non-empty API key and secret")
        if any(c.isspace() for c in api_key + api_secret):
            raise ValueError("an API key or secret cannot contain whitespace")
        self.api_key = api_key
        self.api_secret = api_secret

    @property
    def key_id(self) -> str:
        """The masked API key."""
        return mask(self.api_key)

    def __repr__(self) -> str:
        return f"HmacCredentials(api_key={self.key_id})"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, HmacCredentials):
            return NotImplemented
        return hmac.compare_digest(self.api_key, other.api_key) and hmac.compare_digest(self.api_secret, other.api_secret)

    __hash__ = None  # type: ignore[assignment]


class ApiWalletCredentials:
    """An AsterDEX V3 API wallet: the main wallet ``user``, the API wallet ``signer`` and its key."""

    __slots__ = ("signer", "signer_key", "user")
    kind: ClassVar[Literal["api_wallet"]] = "api_wallet"

    def __init__(self, user: str, signer: str, signer_key: str) -> None:
        user, signer, signer_key = user.strip(), signer.strip(), signer_key.strip()
        for name, address in (("user", user), ("signer", signer)):
            if not _ADDRESS.match(address):
                raise ValueError(f"{name} must be a 0x-prefixed 20-byte hex address, got {address!r}")
        if not _PRIVATE_KEY.match(signer_key):
            raise ValueError("signer_key must be a 32-byte hex private key")
        signer_key = signer_key if signer_key.startswith("0x") else "0x" + signer_key
        if signer_address(signer_key).lower() != signer.lower():
            raise ValueError(f"signer_key is not the key of signer {signer}")
        self.user = user
        self.signer = signer
        self.signer_key = signer_key

    @property
    def key_id(self) -> str:
        """The masked signer address."""
        return mask(self.signer)

    def __repr__(self) -> str:
        return f"ApiWalletCredentials(user={self.user}, signer={self.signer})"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ApiWalletCredentials):
            return NotImplemented
        return (self.user.lower(), self.signer.lower()) == (other.user.lower(), other.signer.lower()) and (
            hmac.compare_digest(self.signer_key.lower(), other.signer_key.lower())
        )

    __hash__ = None  # type: ignore[assignment]


Credentials = HmacCredentials | ApiWalletCredentials


# --------------------------------------------------------------------------------- settings


class CredentialSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Where an account's credentials come from; embed as ``credentials:`` in account settings.

    Either ``{api_key_env, api_secret_env}`` (HMAC) or ``{user, signer, signer_key_env}``
    (AsterDEX V3 API wallet). The ``*_env`` fields name environment variables.
    """

    api_key_env: str | None = None
    api_secret_env: str | None = None
    user: str | None = None
    signer: str | None = None
    signer_key_env: str | None = None

    def __post_init__(self) -> None:
        hmac_fields = (self.api_key_env, self.api_secret_env)
        wallet_fields = (self.user, self.signer, self.signer_key_env)
        if any(f is not None for f in hmac_fields) and any(f is not None for f in wallet_fields):
            raise ValueError("credentials: give either api_key_env/api_secret_env or user/signer/signer_key_env")
        if any(f is not None for f in hmac_fields) and None in hmac_fields:
            raise ValueError("credentials: HMAC credentials need both api_key_env and api_secret_env")
        if any(f is not None for f in wallet_fields) and None in wallet_fields:
            raise ValueError("credentials: API-wallet credentials need user, signer and signer_key_env")
        if all(f is None for f in (*hmac_fields, *wallet_fields)):
            raise ValueError("credentials: empty; give api_key_env/api_secret_env or user/signer/signer_key_env")
        for name in (self.api_key_env, self.api_secret_env, self.signer_key_env):
            if name is not None and not _ENV_NAME.match(name):
                raise ValueError(f"credentials: {name!r} is not an environment variable name")
        for field, address in (("user", self.user), ("signer", self.signer)):
            if address is not None and not _ADDRESS.match(address):
                raise ValueError(f"credentials.{field}: not a 0x-prefixed 20-byte hex address: {address!r}")

    @property
    def kind(self) -> Literal["hmac", "api_wallet"]:
        return "hmac" if self.api_key_env is not None else "api_wallet"


def credentials_from_env(
    account_id: str, settings: CredentialSettings, env: Mapping[str, str] | None = None
) -> Credentials:
    """Read the secrets named by ``settings`` from the environment.

    Raises:
        MissingCredentials: a variable is unset or empty (the message names account and variable).
    """
    source = os.environ if env is None else env

    def read(field: str, name: str | None) -> str:
        assert name is not None
        value = source.get(name, "").strip()
        if not value:
            raise MissingCredentials(
                f"account {account_id!r}: environment variable {name} (credentials.{field}) is not set"
            )
        return value

    try:
        if settings.kind == "hmac":
            return HmacCredentials(
                read("api_key_env", settings.api_key_env), read("api_secret_env", settings.api_secret_env)
            )
        assert settings.user is not None and settings.signer is not None
        return ApiWalletCredentials(settings.user, settings.signer, read("signer_key_env", settings.signer_key_env))
    except ValueError as exc:  # the values themselves are never echoed
        raise MissingCredentials(f"account {account_id!r}: invalid credentials in the environment: {exc}") from None


def resolve_credentials(
    account_id: str,
    venue: str,
    settings: CredentialSettings | None,
    *,
    env: Mapping[str, str] | None = None,
    store: CredentialStore | None = None,
) -> Credentials:
    """The account's credentials: from the environment if its settings name variables, else
    from the encrypted store.

    Raises:
        MissingCredentials: neither source has them.
        WrongMasterKey: the stored record does not decrypt with the master key.
    """
    if settings is not None:
        return credentials_from_env(account_id, settings, env)
    stored = store.get(account_id, venue) if store is not None else None
    if stored is None:
        raise MissingCredentials(
            f"account {account_id!r} on {venue}: no credentials; add `credentials:` to its settings "
            f"or run `execd credentials set {account_id} --venue {venue}`"
        )
    return stored


# ------------------------------------------------------------------------------------ store

_MAGIC: Final = b"EXC1"
_SALT_BYTES: Final = 16
DEFAULT_KDF_COST_LOG2: Final = 15  # scrypt n = 2**15, r = 8, p = 1: 32 MiB, ~0.1 s per record


class _Secret(msgspec.Struct, frozen=True, kw_only=True):
    """The plaintext of one record; account and venue are bound in to stop record swapping."""

    account_id: str
    venue: str
    kind: Literal["hmac", "api_wallet"]
    api_key: str = ""
    api_secret: str = ""
    user: str = ""
    signer: str = ""
    signer_key: str = ""


class StoredCredentials(msgspec.Struct, frozen=True, kw_only=True):
    """One row of the store as listed: no secret; ``key_id`` is masked (None when undecryptable)."""

    account_id: str
    venue: str
    created_at: float
    kind: str | None = None
    key_id: str | None = None
    error: str | None = None


def master_key_from_env(env: Mapping[str, str] | None = None) -> str:
    """``EXECD_MASTER_KEY``, which must be set and at least 16 characters long."""
    value = (os.environ if env is None else env).get(MASTER_KEY_ENV, "")
    if not value:
        raise CredentialStoreError(f"{MASTER_KEY_ENV} is not set; it protects the stored credentials")
    if len(value) < MIN_MASTER_KEY_LENGTH:
        raise CredentialStoreError(f"{MASTER_KEY_ENV} must be at least {MIN_MASTER_KEY_LENGTH} characters long")
    return value


def _record_id(account_id: str, venue: str) -> str:
    return f"{account_id}@{venue}"


class CredentialStore:
    """Encrypted credentials in the ``credentials`` table of the service database.

    Synchronous (a CLI and start-up path; call it through ``trio.to_thread`` from the service).
    ``master_key`` may be None to list and delete without decrypting.
    """

    def __init__(
        self,
        conn: sqlite3.Connection,
        master_key: str | None,
        *,
        clock: Callable[[], float] = time.time,
        kdf_cost_log2: int = DEFAULT_KDF_COST_LOG2,
    ) -> None:
        if not 10 <= kdf_cost_log2 <= 22:
            raise ValueError("kdf_cost_log2 must be between 10 and 22")
        self._conn = conn
        self._master_key = master_key.encode() if master_key is not None else None
        self._clock = clock
        self._cost = kdf_cost_log2

    def __repr__(self) -> str:
        return f"<CredentialStore master_key={'set' if self._master_key else 'unset'}>"

    @classmethod
    def open(cls, path: str, master_key: str | None, **options: object) -> CredentialStore:
        """Open (and migrate, if new) the service database at ``path``."""
        conn = open_connection(path)
        migrate(conn)
        return cls(conn, master_key, **options)  # type: ignore[arg-type]

    def close(self) -> None:
        self._conn.close()

    def put(self, account_id: str, venue: str, credentials: Credentials) -> None:
        """Store (or replace) the credentials of ``account_id`` on ``venue``."""
        if isinstance(credentials, HmacCredentials):
            secret = _Secret(
                account_id=account_id, venue=venue, kind="hmac", api_key=credentials.api_key, api_secret=credentials.api_secret
            )
        else:
            secret = _Secret(
                account_id=account_id,
                venue=venue,
                kind="api_wallet",
                user=credentials.user,
                signer=credentials.signer,
                signer_key=credentials.signer_key,
            )
        blob = self._encrypt(msgspec.json.encode(secret))
        with self._conn:
            self._conn.execute(
                "INSERT INTO credentials (id, venue, account_id, ciphertext, created_at) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT(id) DO UPDATE SET ciphertext=excluded.ciphertext, created_at=excluded.created_at",
                (_record_id(account_id, venue), venue, account_id, blob, self._clock()),
            )

    def get(self, account_id: str, venue: str) -> Credentials | None:
        """The stored credentials, or None if there are none.

        Raises:
            WrongMasterKey: the record does not decrypt with this master key.
            CredentialStoreError: no master key, or a corrupted record.
        """
        row = self._conn.execute(
            "SELECT ciphertext FROM credentials WHERE id = ?", (_record_id(account_id, venue),)
        ).fetchone()
        if row is None:
            return None
        secret = self._decrypt_record(bytes(row[0]), account_id, venue)
        if secret.kind == "hmac":
            return HmacCredentials(secret.api_key, secret.api_secret)
        return ApiWalletCredentials(secret.user, secret.signer, secret.signer_key)

    def delete(self, account_id: str, venue: str) -> bool:
        """Remove a record; True if there was one."""
        with self._conn:
            cursor = self._conn.execute("DELETE FROM credentials WHERE id = ?", (_record_id(account_id, venue),))
        return cursor.rowcount > 0

    def entries(self) -> list[StoredCredentials]:
        """Every record, masked (decrypted only to show the key id, when a master key is set)."""
        rows = self._conn.execute(
            "SELECT account_id, venue, created_at, ciphertext FROM credentials ORDER BY account_id, venue"
        ).fetchall()
        listed: list[StoredCredentials] = []
        for account_id, venue, created_at, blob in rows:
            entry = StoredCredentials(account_id=account_id, venue=venue, created_at=created_at)
            if self._master_key is not None:
                try:
                    secret = self._decrypt_record(bytes(blob), account_id, venue)
                except CredentialStoreError as exc:
                    entry = msgspec.structs.replace(entry, error=str(exc))
                else:
                    key_id = mask(secret.api_key) if secret.kind == "hmac" else mask(secret.signer)
                    entry = msgspec.structs.replace(entry, kind=secret.kind, key_id=key_id)
            listed.append(entry)
        return listed

    # -- encryption -----------------------------------------------------------------------

    def _fernet(self, salt: bytes, cost: int) -> Fernet:
        if self._master_key is None:
            raise CredentialStoreError(f"{MASTER_KEY_ENV} is not set; it protects the stored credentials")
        key = Scrypt(salt=salt, length=32, n=2**cost, r=8, p=1).derive(self._master_key)
        return Fernet(base64.urlsafe_b64encode(key))

    def _encrypt(self, plaintext: bytes) -> bytes:
        salt = os.urandom(_SALT_BYTES)
        token = self._fernet(salt, self._cost).encrypt(plaintext)
        return _MAGIC + bytes([self._cost]) + salt + token

    def _decrypt_record(self, blob: bytes, account_id: str, venue: str) -> _Secret:
        where = f"credentials of account {account_id!r} on {venue}"
        header = len(_MAGIC) + 1 + _SALT_BYTES
        if len(blob) <= header or not blob.startswith(_MAGIC) or not 10 <= blob[len(_MAGIC)] <= 22:
            raise CredentialStoreError(f"{where}: not a record of this store (corrupted?)")
        cost, salt, token = blob[len(_MAGIC)], blob[len(_MAGIC) + 1 : header], blob[header:]
        try:
            plaintext = self._fernet(salt, cost).decrypt(token)
        except InvalidToken:
            raise WrongMasterKey(f"{where}: cannot be decrypted: wrong {MASTER_KEY_ENV}, or a corrupted record") from None
        try:
            secret = msgspec.json.decode(plaintext, type=_Secret)
        except msgspec.DecodeError:
            raise CredentialStoreError(f"{where}: decrypted to an unexpected shape") from None
        if (secret.account_id, secret.venue) != (account_id, venue):
            raise CredentialStoreError(f"{where}: the record belongs to another account or venue")
        return secret
