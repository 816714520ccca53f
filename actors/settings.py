"""Settings: ``settings.yaml`` + environment overrides, decoded into frozen msgspec Structs.

An unknown or misspelled key, or a value of the wrong type, stops start-up with a message naming
the key and the file. Environment variables override the main values:

==================  =====================
``EXECD_HOST``      ``server.host``
``EXECD_PORT``      ``server.port``
``EXECD_DB``        ``database.path``
``EXECD_LOG_LEVEL`` ``log_level``
==================  =====================

API tokens (``auth.tokens``, DESIGN.md §8) can also come from the environment:
``EXECD_API_TOKEN`` (one token, in clear) is an ``admin`` token, and ``EXECD_AUTH_TOKENS`` holds a
JSON list of entries shaped like the file's (``[{"sha256": "...", "role": "viewer"}]``), added to
the file's. Without any token the service serves loopback only: a ``server.host`` that is not a
loopback address is refused at start-up.

The environment also overrides the settings of a database, a broker and a cluster (one settings
file for every node; each node gets its own identity):

=======================  ==========================
``EXECD_DATABASE_URL``   ``database.url``
``EXECD_REDIS_URL``      ``broker.redis_url``
``EXECD_NODE_ID``        ``cluster.node_id``
``EXECD_ADVERTISE_URL``  ``cluster.advertise_url``
=======================  ==========================
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import re
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

import msgspec
import yaml

from .domain.risk import GlobalLimits, InvalidLimits, RiskLimits, merge_global_limits, merge_limits
from .venues.credentials import CredentialSettings
from .venues.limits import LimiterSettings

DEFAULT_SETTINGS_PATH = Path(__file__).resolve().parent.parent / "settings.yaml"
ACCOUNT_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}\Z")  # \Z: "$" would accept a trailing newline
LIVE_VENUES = ("asterdex", "asterdex-testnet", "binance-usdm", "binance-usdm-testnet")
PAPER_TWIN_SUFFIX = "-twin"  # a live account's paper twin is "<id>-twin"


class _Strict(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    pass


class ServerSettings(_Strict):
    host: str = "127.0.0.1"
    port: int = 8080
    max_body_bytes: int = 64 * 1024
    request_timeout_seconds: float = 10.0
    shutdown_grace_seconds: float = 10.0
    #: decisions in flight per decision-stream connection (``/v1/decisions/stream``); when full,
    #: the server stops reading that socket until one is answered
    stream_max_in_flight: int = 64


class DatabaseSettings(_Strict):
    path: str = "execd.sqlite3"
    synchronous: Literal["FULL", "NORMAL", "OFF"] = "FULL"
    max_batch: int = 1024
    read_threads: int = 4
    #: ``postgresql://...``: PostgreSQL instead of the SQLite file at ``path`` (required by a cluster)
    url: str | None = None


class BrokerSettings(_Strict):
    """Redis Streams intake and egress (off unless ``broker:`` is given)."""

    redis_url: str
    decisions_stream: str = "execd:decisions"  # in: {"account_id", "decision"}
    results_stream: str = "execd:results"  # out: stored decision results
    events_stream: str = "execd:events"  # out: the outbox, in seq order
    group: str = "execd"  # the consumer group of the service's intake
    max_in_flight: int = 256  # stream decisions submitted and not yet committed, per node
    read_count: int = 100  # entries per XREADGROUP
    stream_maxlen: int = 1_000_000  # results and events streams are trimmed (approximately) to this
    relay_batch: int = 500  # events per relay round
    relay_poll_seconds: float = 0.05  # how often the relay looks for other nodes' events


class ClusterSettings(_Strict):
    """Several nodes on one PostgreSQL database; accounts hash to ``shards`` owned by leases."""

    node_id: str
    #: the URL other nodes forward requests to (default: this node's bound address)
    advertise_url: str | None = None
    shards: int = 64
    lease_seconds: float = 10.0
    #: renewal period (default: a quarter of the lease)
    renew_seconds: float | None = None
    #: a live account stops sending orders this long before its lease could end
    live_order_margin_seconds: float = 2.0
    forward_timeout_seconds: float = 10.0

    @property
    def renew_interval(self) -> float:
        return self.renew_seconds if self.renew_seconds is not None else self.lease_seconds / 4


class SimVenueSettings(_Strict):
    seed: int = 7
    symbols: tuple[str, ...] = ("BTCUSDT", "ETHUSDT", "SOLUSDT")
    tick_interval_seconds: float = 0.25
    volatility_bps: float = 3.0
    #: made-up symbols S00000USDT... added to ``symbols`` (benchmarks: thousands of instruments)
    synthetic_symbols: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.synthetic_symbols <= 100_000:
            raise ValueError(f"synthetic_symbols must be between 0 and 100000, got {self.synthetic_symbols}")


class ReplayVenueSettings(_Strict):
    market: str | None = None
    exchange_info: str | None = None


class LiveVenueSettings(_Strict):
    symbols: tuple[str, ...] = ()  # always subscribed; accounts add the symbols they hold
    rest_url: str | None = None
    ws_url: str | None = None
    depth_levels: int = 20
    stale_after_seconds: float = 5.0
    poll_interval_seconds: float = 1.0
    leverage_brackets: str | None = None  # path to a saved leverageBracket response
    # live accounts' signed requests and user-data streams
    recv_window_ms: int = 5000
    request_timeout_seconds: float = 10.0
    #: an order not found this long after its receive window ended can no longer arrive
    settle_margin_seconds: float = 2.0
    user_stream_keepalive_seconds: float = 1800.0
    user_stream_reconnect_seconds: float = 0.5
    #: how often a live account reconciles with the venue (also after every stream reconnect)
    reconcile_interval_seconds: float = 60.0
    #: shares of the venue's request-weight and order-count limits per priority (entries stop
    #: first, closes and cancels last) and how long a request may wait for budget
    rate_limits: LimiterSettings = LimiterSettings()
    symbol_linger_seconds: float = 300.0  # a symbol subscribed for a decision, unheld, is released after this


Role = Literal["admin", "trader", "viewer"]
SHA256_HEX = re.compile(r"^[0-9a-f]{64}\Z")


class TokenSettings(_Strict):
    """One bearer token, by the hex SHA-256 of the token (never the token itself)."""

    sha256: str
    role: Role
    accounts: tuple[str, ...] | None = None  # the accounts a trader (or a viewer) may see; None: all
    name: str | None = None  # who holds it (shown in logs, never the token)


class AuthSettings(_Strict):
    tokens: tuple[TokenSettings, ...] = ()


class SupervisorSettings(_Strict):
    inbox_size: int = 64
    restart_backoff_initial_seconds: float = 0.5
    restart_backoff_max_seconds: float = 30.0
    max_restarts: int = 5
    restart_window_seconds: float = 60.0


class AccountSettings(_Strict):
    id: str
    mode: Literal["paper", "live"] = "paper"
    venue: str = "sim"
    balance: Decimal = Decimal("10000")
    risk: dict[str, Any] = {}
    max_slippage_bps: Decimal | None = Decimal("500")
    trigger_price: Literal["mark", "last"] = "mark"
    default_leverage: int = 1
    #: live accounts: where the secrets are (environment variables); without it, the encrypted
    #: store (``execd credentials set``) is used
    credentials: CredentialSettings | None = None
    #: live accounts: a position left without its stop-loss longer than this is closed
    protection_deadline_seconds: float = 10.0
    #: live accounts: also execute every accepted decision on a paper venue (divergence report)
    paper_twin: bool = False
    #: the paper twin's starting balance (default: this account's ``balance``)
    paper_twin_balance: Decimal | None = None
    #: set by the service on the paper twin it derives from a live account (not a key of the file)
    twin_of: str | None = None


class Settings(_Strict):
    server: ServerSettings = ServerSettings()
    database: DatabaseSettings = DatabaseSettings()
    venues: dict[str, dict[str, Any]] = msgspec.field(default_factory=lambda: {"sim": {}})
    risk: dict[str, Any] = {}
    global_risk: dict[str, Any] = {}  # service-wide order rates: max_orders_per_second / _per_minute
    supervisor: SupervisorSettings = SupervisorSettings()
    accounts: tuple[AccountSettings, ...] = ()
    log_level: str = "INFO"
    log_format: Literal["text", "json"] = "text"
    auth: AuthSettings = AuthSettings()
    broker: BrokerSettings | None = None
    cluster: ClusterSettings | None = None
    # Derived at load time (not keys of the file):
    source: str = "<defaults>"

    @property
    def risk_defaults(self) -> RiskLimits:
        return merge_limits(RiskLimits(), self.risk)

    @property
    def global_limits(self) -> GlobalLimits:
        return merge_global_limits(GlobalLimits(), self.global_risk)

    def venue_settings(self, name: str) -> SimVenueSettings | ReplayVenueSettings | LiveVenueSettings:
        raw = self.venues.get(name) or {}
        return _decode_venue(name, raw, self.source)

    def account_limits(self, account: AccountSettings) -> RiskLimits:
        return merge_limits(self.risk_defaults, account.risk)


class SettingsError(Exception):
    """Start-up refused: the message names the file and the key."""


def _venue_type(name: str) -> type[_Strict]:
    if name == "sim":
        return SimVenueSettings
    if name == "replay":
        return ReplayVenueSettings
    if name in LIVE_VENUES:
        return LiveVenueSettings
    raise SettingsError(f"unknown venue {name!r} (known: sim, replay, {', '.join(LIVE_VENUES)})")


def _decode_venue(name: str, raw: dict[str, Any], source: str) -> Any:
    try:
        return msgspec.convert(raw, _venue_type(name))
    except msgspec.ValidationError as exc:
        raise SettingsError(f"{source}: {_path_message(exc, prefix=f'venues.{name}')}") from None
    except SettingsError as exc:
        raise SettingsError(f"{source}: venues.{name}: {exc}") from None


def _path_message(exc: msgspec.ValidationError, prefix: str = "") -> str:
    """Turn msgspec's ``... - at `$.server.port``` into ``server.port: ...``."""
    text = str(exc)
    match = re.search(r"^(.*?)(?: - at `\$(.*)`)?$", text)
    assert match is not None
    message, path = match.group(1), (match.group(2) or "")
    path = path.lstrip(".")
    path = re.sub(r"\[(\d+)\]", r"[\1]", path)
    unknown = re.match(r"Object contains unknown field `(.+)`", message)
    if unknown:
        key = ".".join(p for p in (prefix, path, unknown.group(1)) if p)
        return f"{key}: unknown key (check its spelling)"
    key = ".".join(p for p in (prefix, path) if p)
    return f"{key}: {message}" if key else message


def _env_overrides(data: dict[str, Any], env: dict[str, str]) -> dict[str, Any]:
    data = dict(data)
    server = data.get("server") or {}
    database = data.get("database") or {}
    if not isinstance(server, dict) or not isinstance(database, dict):
        return data  # not a mapping: the decoder refuses it, naming the key
    server, database = dict(server), dict(database)
    if "EXECD_HOST" in env:
        server["host"] = env["EXECD_HOST"]
    if "EXECD_PORT" in env:
        try:
            server["port"] = int(env["EXECD_PORT"])
        except ValueError:
            raise SettingsError(f"EXECD_PORT must be an integer, got {env['EXECD_PORT']!r}") from None
    if "EXECD_DB" in env:
        database["path"] = env["EXECD_DB"]
    if "EXECD_LOG_LEVEL" in env:
        data["log_level"] = env["EXECD_LOG_LEVEL"]
    if "EXECD_LOG_FORMAT" in env:
        data["log_format"] = env["EXECD_LOG_FORMAT"]
    data = _env_tokens(data, env)
    if "EXECD_DATABASE_URL" in env:
        database["url"] = env["EXECD_DATABASE_URL"]
    for variable, section, key in (("EXECD_REDIS_URL", "broker", "redis_url"), ("EXECD_NODE_ID", "cluster", "node_id"),
                                   ("EXECD_ADVERTISE_URL", "cluster", "advertise_url")):
        if variable in env:
            values = data.get(section) or {}
            if isinstance(values, dict):
                data[section] = {**values, key: env[variable]}
    if server:
        data["server"] = server
    if database:
        data["database"] = database
    return data


def _env_tokens(data: dict[str, Any], env: dict[str, str]) -> dict[str, Any]:
    """``EXECD_API_TOKEN`` (an admin token in clear) and ``EXECD_AUTH_TOKENS`` (a JSON list of
    token entries) join the file's ``auth.tokens``."""
    extra: list[Any] = []
    if env.get("EXECD_API_TOKEN"):
        digest = hashlib.sha256(env["EXECD_API_TOKEN"].encode()).hexdigest()
        extra.append({"sha256": digest, "role": "admin", "name": "EXECD_API_TOKEN"})
    if env.get("EXECD_AUTH_TOKENS"):
        try:
            listed = json.loads(env["EXECD_AUTH_TOKENS"])
        except ValueError as exc:
            raise SettingsError(f"EXECD_AUTH_TOKENS is not valid JSON: {exc}") from None
        if not isinstance(listed, list):
            raise SettingsError("EXECD_AUTH_TOKENS must be a JSON list of {sha256, role[, accounts]} entries")
        extra.extend(listed)
    if not extra:
        return data
    auth = data.get("auth") or {}
    if not isinstance(auth, dict):
        return data  # not a mapping: the decoder refuses it, naming the key
    tokens = auth.get("tokens") or []
    if not isinstance(tokens, list):
        return data
    return {**data, "auth": {**auth, "tokens": [*tokens, *extra]}}


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a bind address) can be reached from this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def parse_settings(text: str, *, source: str = "settings.yaml", env: dict[str, str] | None = None) -> Settings:
    """Decode and validate settings text; raise :class:`SettingsError` naming file and key."""
    try:
        data = yaml.safe_load(text) if text.strip() else {}
    except yaml.YAMLError as exc:
        raise SettingsError(f"{source}: not valid YAML: {exc}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise SettingsError(f"{source}: the top level must be a mapping of keys, got {type(data).__name__}")
    data = _env_overrides(data, dict(os.environ) if env is None else env)
    data["source"] = source
    try:
        settings = msgspec.convert(data, Settings)
    except msgspec.ValidationError as exc:
        raise SettingsError(f"{source}: {_path_message(exc)}") from None
    _validate(settings, source)
    return settings


def _validate(settings: Settings, source: str) -> None:
    if not (0 <= settings.server.port <= 65535):
        raise SettingsError(f"{source}: server.port: must be between 0 and 65535, got {settings.server.port}")
    if not (1 <= settings.server.stream_max_in_flight <= 100_000):
        raise SettingsError(f"{source}: server.stream_max_in_flight: must be between 1 and 100000, "
                            f"got {settings.server.stream_max_in_flight}")
    _validate_auth(settings, source)
    url = settings.database.url
    if url is not None and not url.startswith(("postgresql://", "postgres://")):
        raise SettingsError(f"{source}: database.url: must be a postgresql:// URL, got {url!r}")
    cluster = settings.cluster
    if cluster is not None:
        if url is None:
            raise SettingsError(f"{source}: cluster: needs database.url (the nodes share a PostgreSQL database)")
        if not ACCOUNT_ID_PATTERN.match(cluster.node_id):
            raise SettingsError(f"{source}: cluster.node_id: {cluster.node_id!r} is not a valid node id")
        if not 1 <= cluster.shards <= 4096:
            raise SettingsError(f"{source}: cluster.shards: must be between 1 and 4096")
        if cluster.lease_seconds <= 0 or not 0 < cluster.renew_interval < cluster.lease_seconds:
            raise SettingsError(f"{source}: cluster.renew_seconds: must be positive and shorter than lease_seconds")
    if settings.broker is not None and not settings.broker.redis_url.startswith(("redis://", "rediss://", "unix://")):
        raise SettingsError(f"{source}: broker.redis_url: must be a redis:// URL")
    for name, raw in settings.venues.items():
        if not isinstance(raw, dict):
            raise SettingsError(f"{source}: venues.{name}: expected a mapping, got {type(raw).__name__}")
        _decode_venue(name, raw, source)
    try:
        defaults = settings.risk_defaults
    except InvalidLimits as exc:
        raise SettingsError(f"{source}: risk.{exc.field}: {exc.message}") from None
    try:
        settings.global_limits
    except InvalidLimits as exc:
        raise SettingsError(f"{source}: global_risk.{exc.field}: {exc.message}") from None
    seen: set[str] = set()
    for index, account in enumerate(settings.accounts):
        where = f"accounts[{index}]"
        if not ACCOUNT_ID_PATTERN.match(account.id):
            raise SettingsError(f"{source}: {where}.id: {account.id!r} is not a valid account id")
        if account.id in seen:
            raise SettingsError(f"{source}: {where}.id: duplicate account id {account.id!r}")
        seen.add(account.id)
        if account.venue not in settings.venues:
            raise SettingsError(
                f"{source}: {where}.venue: venue {account.venue!r} is not configured under venues"
            )
        if account.balance < 0:
            raise SettingsError(f"{source}: {where}.balance: must not be negative")
        if account.mode == "live" and account.venue not in LIVE_VENUES:
            raise SettingsError(
                f"{source}: {where}.venue: a live account trades on a venue ({', '.join(LIVE_VENUES)}), "
                f"not on {account.venue!r}"
            )
        if account.mode == "paper" and account.paper_twin:
            raise SettingsError(f"{source}: {where}.paper_twin: only a live account has a paper twin")
        _validate_paper_twin(settings, account, f"{source}: {where}")
        if account.protection_deadline_seconds <= 0:
            raise SettingsError(f"{source}: {where}.protection_deadline_seconds: must be positive")
        try:
            limits = merge_limits(defaults, account.risk)
        except InvalidLimits as exc:
            raise SettingsError(f"{source}: {where}.risk.{exc.field}: {exc.message}") from None
        if not (1 <= account.default_leverage <= 25):
            raise SettingsError(f"{source}: {where}.default_leverage: must be between 1 and 25")
        if account.default_leverage > limits.max_leverage:
            raise SettingsError(
                f"{source}: {where}.default_leverage: {account.default_leverage} is above the account's max_leverage "
                f"{limits.max_leverage}: a decision that names no leverage could never trade")


def paper_twin_id(account_id: str) -> str:
    """The id of a live account's paper twin."""
    return f"{account_id}{PAPER_TWIN_SUFFIX}"


def _validate_paper_twin(settings: Settings, account: AccountSettings, where: str) -> None:
    if account.twin_of is not None:
        raise SettingsError(f"{where}.twin_of: not a settings key (the service sets it on the paper twin it derives "
                            "from a live account with paper_twin: true)")
    if account.paper_twin_balance is not None:
        if not account.paper_twin:
            raise SettingsError(f"{where}.paper_twin_balance: only meaningful with paper_twin: true")
        if account.paper_twin_balance < 0:
            raise SettingsError(f"{where}.paper_twin_balance: must not be negative")
    if not account.paper_twin:
        return
    twin_id = paper_twin_id(account.id)
    if not ACCOUNT_ID_PATTERN.match(twin_id):
        raise SettingsError(f"{where}.id: {account.id!r} is too long for a paper twin: its twin {twin_id!r} must be "
                            f"at most 64 characters (the id at most {64 - len(PAPER_TWIN_SUFFIX)})")
    if any(other.id == twin_id for other in settings.accounts):
        raise SettingsError(f"{where}.paper_twin: the twin of {account.id!r} is named {twin_id!r}, which another "
                            "account of the file already uses")
    if settings.cluster is not None:
        raise SettingsError(f"{where}.paper_twin: a paper twin runs beside its live account on one node; it is not "
                            "supported in cluster mode")


def _validate_auth(settings: Settings, source: str) -> None:
    for index, token in enumerate(settings.auth.tokens):
        where = f"{source}: auth.tokens[{index}]"
        if not SHA256_HEX.match(token.sha256):
            raise SettingsError(f"{where}.sha256: must be the 64 lowercase hex digits of the token's SHA-256")
        if token.role == "admin" and token.accounts is not None:
            raise SettingsError(f"{where}.accounts: an admin token is not scoped to accounts")
        if token.role == "trader" and not token.accounts:
            raise SettingsError(f"{where}.accounts: a trader token needs the list of accounts it trades")
    if not settings.auth.tokens and not is_loopback(settings.server.host):
        raise SettingsError(
            f"{source}: server.host: {settings.server.host!r} is not a loopback address and no API token is "
            "configured (auth.tokens, EXECD_API_TOKEN or EXECD_AUTH_TOKENS): without tokens every caller would be "
            "an admin, so execd serves loopback only (127.0.0.1)")


def load_settings(path: str | Path | None = None, *, env: dict[str, str] | None = None) -> Settings:
    """Load ``path`` (default: the ``settings.yaml`` shipped with the service)."""
    settings_path = Path(path) if path is not None else DEFAULT_SETTINGS_PATH
    try:
        text = settings_path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SettingsError(f"{settings_path}: cannot read settings: {exc.strerror}") from None
    return parse_settings(text, source=str(settings_path), env=env)
