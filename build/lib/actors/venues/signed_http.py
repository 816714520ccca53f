"""Signed HTTP to one venue for one account: signing, clock offset, rate limits, error
classification and retries. :class:`~actors.venues.trading.TradingClient` builds on it.

Outcome classification (the heart of it)::

    VenueIOError
     ├── VenueError(code, msg, http_status)   definitive refusal: the venue did not act
     │    ├── CredentialsRejected              -2014 / -2015 / -1022 / HTTP 401
     │    ├── TimestampRejected                -1021 (or Aster V3's -4225 Nonce Expired)
     │    ├── ListenKeyInvalid                 -1125
     │    └── RateLimited(retry_after)         429 (every request to the venue then pauses)
     │         └── LocalRateLimited            refused here, before the venue's limit: not sent
     ├── VenueBanned(retry_after)              418: nothing is sent until the ban ends
     ├── VenueUnavailable                      a read failed after every retry, or a write
     │                                         provably never left (connect failure)
     └── AmbiguousOutcome                      a write whose outcome is unknown: timeout or
                                               connection lost after sending, any 5xx,
                                               -1000 / -1001 / -1006 / -1007, 408, or an
                                               unreadable 200 body

Retries: reads (GET) retry transient failures with exponential backoff and jitter (tenacity,
sleeping with ``trio.sleep``); a 429 pause is waited out by the limiter before the next attempt.
Writes are never resent once they may have reached the venue -- a new order above all: the caller
resolves an :class:`AmbiguousOutcome` by querying the client order id. A write that never left
(connect error, pool timeout) is retried. Idempotent writes (cancel-all, leverage, margin type,
listen key) also retry ambiguous outcomes. A timestamp / nonce refusal resyncs the clock with
``GET /time`` and retries once (safe: the venue refused the request).

Parameters go in the query string of a GET / DELETE and in the form body of a POST / PUT (both
venues accept either; Aster's V3 demo sends DELETE in the query string), so the signed string is
exactly the one string that is sent. Secrets never reach a log line, an exception or a repr:
parameters are logged without ``signature``, and the ``httpx`` logger's request lines are redacted.
"""

from __future__ import annotations

import logging
import random
import re
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Final, Literal

import httpx
import msgspec
import tenacity
import trio

from actors.venues.credentials import ApiWalletCredentials, Credentials, HmacCredentials
from actors.venues.limits import LocalRateLimited, OrderCounter, Priority, VenueLimiter, retry_after_seconds
from actors.venues.parsing import parse_error_body, parse_server_time
from actors.venues.profiles import EndpointPaths, VenueProfile
from actors.venues.rest import RateLimited, VenueBanned, VenueError, VenueIOError, VenueUnavailable
from actors.venues.signing import NonceSequence, encode_params, sign_api_wallet_params, sign_hmac_params, strip_signature

__all__ = [
    "AmbiguousOutcome",
    "Auth",
    "CallKind",
    "CredentialsRejected",
    "ListenKeyInvalid",
    "SignedHttp",
    "TimestampRejected",
    "TradingSettings",
    "TradingStats",
]

log = logging.getLogger("actors.venues.trading")

Auth = Literal["signed", "api_key", "none"]
#: read: GET, retried; write: never resent once it may have arrived; idempotent: a write that may
#: be resent (cancel-all, leverage, margin type, listen key)
CallKind = Literal["read", "write", "idempotent"]

_CREDENTIAL_CODES: Final = frozenset({-2014, -2015, -1022})
_CLOCK_CODES: Final = frozenset({-1021, -4225})
_AMBIGUOUS_CODES: Final = frozenset({-1000, -1001, -1006, -1007})
_OVERLOADED_CODES: Final = frozenset({-1008})
_RATE_CODES: Final = frozenset({-1003, -1015})
_LISTEN_KEY_CODE: Final = -1125
#: raised before a byte of the request was written: safe to send again
_NOT_SENT_ERRORS: Final = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.UnsupportedProtocol)


class CredentialsRejected(VenueError):
    """The venue refused the credentials (bad key, signature, permissions or IP whitelist)."""


class TimestampRejected(VenueError):
    """The venue refused the timestamp or nonce (still refused after one resync and retry)."""


class ListenKeyInvalid(VenueError):
    """-1125: the listen key does not exist (expired or closed); create a new one."""


class AmbiguousOutcome(VenueIOError):
    """A write may or may not have been executed. Resolve it by querying (client order id)."""

    def __init__(self, venue: str, method: str, path: str, reason: str, *, http_status: int | None = None) -> None:
        self.venue = venue
        self.method = method
        self.path = path
        self.reason = reason
        self.http_status = http_status
        super().__init__(f"{venue}: outcome of {method} {path} unknown ({reason}); query before acting again")


class _NotSent(VenueUnavailable):
    """The request provably never left (the connection could not be made)."""


class _Transient(VenueUnavailable):
    """A read the venue could not serve now (5xx, timeout, -1001/-1007/-1008...)."""


class TradingSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Timeouts, retries and signing options of a trading client."""

    recv_window_ms: int = 5000
    connect_timeout_seconds: float = 5.0
    timeout_seconds: float = 10.0
    #: attempts of a read (and of an idempotent write), the first included
    max_attempts: int = 4
    #: attempts of a write whose connection could not even be made
    max_unsent_attempts: int = 3
    backoff_initial_seconds: float = 0.25
    backoff_max_seconds: float = 8.0
    #: each backoff is multiplied by a random factor in [1, 1 + jitter)
    jitter: float = 0.25
    max_connections: int = 4

    def __post_init__(self) -> None:
        if not 0 < self.recv_window_ms <= 60_000:
            raise ValueError("recv_window_ms must be in (0, 60000]")
        if self.max_attempts < 1 or self.max_unsent_attempts < 1:
            raise ValueError("attempts must be at least 1")
        if not 0 <= self.backoff_initial_seconds <= self.backoff_max_seconds:
            raise ValueError("backoff must satisfy 0 <= initial <= max")


class TradingStats:
    """Counters of one client, for metrics. Mutated by the client only; read them freely."""

    def __init__(self) -> None:
        #: (endpoint, outcome) → count; endpoint ``"POST /fapi/v1/order"``, outcome an HTTP
        #: status, ``"not_sent"``, ``"transport_error"`` or ``"timeout"``
        self.requests: Counter[tuple[str, str]] = Counter()
        self.latency_seconds_total: dict[str, float] = {}
        self.latency_seconds_max: dict[str, float] = {}
        self.venue_error_codes: Counter[int] = Counter()
        self.retries = 0
        self.clock_resyncs = 0
        self.ambiguous = 0
        self.limiter_wait_seconds = 0.0
        self.used_weight_1m: int | None = None
        self.order_count_10s: int | None = None
        self.order_count_1m: int | None = None

    def snapshot(self) -> dict[str, object]:
        """A plain, JSON-friendly copy."""
        return {
            "requests": {f"{endpoint} {outcome}": n for (endpoint, outcome), n in sorted(self.requests.items())},
            "latency_seconds_total": dict(self.latency_seconds_total),
            "latency_seconds_max": dict(self.latency_seconds_max),
            "venue_error_codes": {str(code): n for code, n in self.venue_error_codes.items()},
            "retries": self.retries,
            "clock_resyncs": self.clock_resyncs,
            "ambiguous": self.ambiguous,
            "limiter_wait_seconds": self.limiter_wait_seconds,
            "used_weight_1m": self.used_weight_1m,
            "order_count_10s": self.order_count_10s,
            "order_count_1m": self.order_count_1m,
        }


_SIGNATURE_IN_TEXT: Final = re.compile(r"signature=[^&\s\"']*")


class _RedactSignatures(logging.Filter):
    """httpx logs every request URL at INFO; a signed GET carries its signature there."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "signature=" in message:
            record.msg = _SIGNATURE_IN_TEXT.sub("signature=<redacted>", message)
            record.args = ()
        return True


_REDACT: Final = _RedactSignatures()


def _install_redaction() -> None:
    for name in ("httpx", "httpcore"):
        logger = logging.getLogger(name)
        if _REDACT not in logger.filters:
            logger.addFilter(_REDACT)


class SignedHttp:
    """Signed requests of one account to one venue (one ``httpx.AsyncClient``)."""

    def __init__(
        self,
        profile: VenueProfile,
        credentials: Credentials,
        *,
        account_id: str,
        clock: Callable[[], float],
        limiter: VenueLimiter,
        settings: TradingSettings | None = None,
        rest_url: str | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        rng: random.Random | None = None,
    ) -> None:
        if isinstance(credentials, ApiWalletCredentials):
            if profile.api_wallet_paths is None or profile.chain_id is None:
                raise ValueError(f"{profile.name} does not take API-wallet credentials")
            self.paths: EndpointPaths = profile.api_wallet_paths
        else:
            self.paths = profile.paths
        self.profile = profile
        self.account_id = account_id
        self.settings = settings or TradingSettings()
        self.stats = TradingStats()
        self.limiter = limiter
        self.orders = OrderCounter.for_profile(profile)
        #: server time minus local clock, milliseconds (None until :meth:`sync_time`)
        self.clock_offset_ms: int | None = None
        self._credentials = credentials
        self._clock = clock
        self._rng = rng or random.Random()
        self._nonces = NonceSequence()
        _install_redaction()
        s = self.settings
        headers = {"Accept": "application/json", "User-Agent": "execd/0.1"}
        if isinstance(credentials, HmacCredentials):
            headers["X-MBX-APIKEY"] = credentials.api_key
        self._http = httpx.AsyncClient(
            base_url=rest_url or profile.rest_url,
            transport=transport,
            timeout=httpx.Timeout(s.timeout_seconds, connect=s.connect_timeout_seconds),
            limits=httpx.Limits(max_connections=s.max_connections),
            headers=headers,
        )

    def __repr__(self) -> str:
        return f"<SignedHttp {self.profile.name} account={self.account_id} key={self._credentials.key_id}>"

    @property
    def key_id(self) -> str:
        return self._credentials.key_id

    @property
    def api_wallet(self) -> bool:
        return isinstance(self._credentials, ApiWalletCredentials)

    async def aclose(self) -> None:
        await self._http.aclose()

    # -- clock ------------------------------------------------------------------------------

    async def sync_time(self) -> float:
        """Measure server time minus local clock (at the round trip's midpoint); seconds."""
        sent = self._clock()
        raw = await self.call("GET", self.paths.time, (), auth="none", weight=1, priority=Priority.EXIT)
        received = self._clock()
        server_ms = parse_server_time(raw)
        self.clock_offset_ms = round(server_ms - (sent + received) / 2 * 1000)
        log.debug("%s: clock offset %+d ms", self.profile.name, self.clock_offset_ms)
        return self.clock_offset_ms / 1000

    def _server_ms(self) -> int:
        return int(self._clock() * 1000) + (self.clock_offset_ms or 0)

    # -- requests ---------------------------------------------------------------------------

    async def call(
        self,
        method: str,
        path: str,
        params: Sequence[tuple[str, str]],
        *,
        auth: Auth = "signed",
        kind: CallKind = "read",
        weight: int = 1,
        priority: Priority = Priority.READ,
        order_count: int = 0,
    ) -> bytes:
        """Send one request (with the retries its ``kind`` allows); the body of a 2xx.

        A signed request made before the first :meth:`sync_time` syncs the clock first.
        """
        if auth == "signed" and self.clock_offset_ms is None:
            await self.sync_time()
        try:
            return await self._retrying(method, path, params, auth, kind, weight, priority, order_count)
        except TimestampRejected as exc:
            log.warning("%s: %s; resyncing the clock and retrying once", self.profile.name, exc.msg)
            self.stats.clock_resyncs += 1
            await self.sync_time()
            return await self._retrying(method, path, params, auth, kind, weight, priority, order_count)

    async def _retrying(
        self,
        method: str,
        path: str,
        params: Sequence[tuple[str, str]],
        auth: Auth,
        kind: CallKind,
        weight: int,
        priority: Priority,
        order_count: int,
    ) -> bytes:
        s = self.settings
        retryable: tuple[type[Exception], ...]
        if kind == "write":
            retryable, attempts = (_NotSent,), s.max_unsent_attempts
        elif kind == "idempotent":
            retryable, attempts = (VenueUnavailable, RateLimited, AmbiguousOutcome), s.max_attempts
        else:
            retryable, attempts = (VenueUnavailable, RateLimited), s.max_attempts
        retrying = tenacity.AsyncRetrying(
            sleep=trio.sleep,
            stop=tenacity.stop_after_attempt(attempts),
            wait=self._backoff,
            retry=tenacity.retry_if_exception(
                lambda exc: isinstance(exc, retryable) and not isinstance(exc, LocalRateLimited)
            ),
            before_sleep=self._before_retry,
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                return await self._attempt(method, path, params, auth, kind, weight, priority, order_count)
        raise AssertionError("unreachable: tenacity either returns or re-raises")  # pragma: no cover

    def _backoff(self, state: tenacity.RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, RateLimited):
            return 0.0  # the limiter holds the next attempt until the 429 pause ends
        s = self.settings
        base = min(s.backoff_max_seconds, s.backoff_initial_seconds * 2 ** (state.attempt_number - 1))
        return base * (1.0 + s.jitter * self._rng.random())

    def _before_retry(self, state: tenacity.RetryCallState) -> None:
        self.stats.retries += 1
        exc = state.outcome.exception() if state.outcome else None
        wait = state.next_action.sleep if state.next_action else 0.0
        log.warning("%s: %s; retrying in %.2f s (attempt %d)", self.profile.name, exc, wait, state.attempt_number)

    def _encode(self, params: Sequence[tuple[str, str]], auth: Auth) -> str:
        if auth != "signed":
            return encode_params(params)
        creds = self._credentials
        if isinstance(creds, HmacCredentials):
            stamped = [*params, ("recvWindow", str(self.settings.recv_window_ms)), ("timestamp", str(self._server_ms()))]
            return sign_hmac_params(stamped, creds.api_secret)
        assert self.profile.chain_id is not None
        now_us = int((self._clock() * 1000 + (self.clock_offset_ms or 0)) * 1000)
        nonce = self._nonces.next(now_us)
        return sign_api_wallet_params(
            params,
            nonce=nonce,
            user=creds.user,
            signer=creds.signer,
            signer_key=creds.signer_key,
            chain_id=self.profile.chain_id,
        )

    async def _attempt(
        self,
        method: str,
        path: str,
        params: Sequence[tuple[str, str]],
        auth: Auth,
        kind: CallKind,
        weight: int,
        priority: Priority,
        order_count: int,
    ) -> bytes:
        endpoint = f"{method} {path}"
        orders = self.orders if order_count else None
        waited = await self.limiter.acquire(
            weight=weight, priority=priority, clock=self._clock, orders=orders, order_count=order_count
        )
        self.stats.limiter_wait_seconds += waited
        encoded = self._encode(params, auth)  # after the wait: a fresh timestamp / nonce
        if method in ("GET", "DELETE"):
            url, content, headers = (f"{path}?{encoded}" if encoded else path), None, None
        else:
            url, content = path, encoded.encode()
            headers = {"Content-Type": "application/x-www-form-urlencoded"}
        sent_at, started = self._clock(), trio.current_time()
        try:
            response = await self._http.request(method, url, content=content, headers=headers)
        except _NOT_SENT_ERRORS as exc:
            self.stats.requests[(endpoint, "not_sent")] += 1
            raise _NotSent(self.profile.name, f"{endpoint}: not sent: {type(exc).__name__}") from exc
        except httpx.RequestError as exc:
            outcome = "timeout" if isinstance(exc, httpx.TimeoutException) else "transport_error"
            self.stats.requests[(endpoint, outcome)] += 1
            self._note_latency(endpoint, started)
            self._log(endpoint, encoded, outcome, started)
            raise self._unknown(kind, method, path, f"{type(exc).__name__} after sending") from exc
        self._note_latency(endpoint, started)
        status = response.status_code
        self.stats.requests[(endpoint, str(status))] += 1
        self.limiter.record_response(response.headers, sent_at=sent_at, now=self._clock(), orders=orders)
        self._note_counters(response)
        self._log(endpoint, encoded, str(status), started)
        if 200 <= status < 300:
            self.limiter.record_success()
            return response.content
        raise self._failure(response, kind, method, path)

    def _unknown(self, kind: CallKind, method: str, path: str, reason: str, status: int | None = None) -> Exception:
        """The outcome of a write is unknown; for a read it is merely a transient failure."""
        if kind == "read":
            return _Transient(self.profile.name, f"{method} {path}: {reason}", http_status=status)
        self.stats.ambiguous += 1
        return AmbiguousOutcome(self.profile.name, method, path, reason, http_status=status)

    def _failure(self, response: httpx.Response, kind: CallKind, method: str, path: str) -> Exception:
        status = response.status_code
        body = parse_error_body(response.content)
        code = _int_code(body.code) if body else 0
        msg = body.msg if body else response.text[:200]
        venue = self.profile.name
        if code:
            self.stats.venue_error_codes[code] += 1
        retry_after = retry_after_seconds(response.headers.get("retry-after"))
        if status == 418:
            ban = self.limiter.record_418(retry_after, self._clock())
            return VenueBanned(venue, ban)
        if status == 429 or code in _RATE_CODES:
            if status == 429 or code == -1003:
                self.limiter.record_429(retry_after, self._clock())
            return RateLimited(code, msg, retry_after=retry_after, venue=venue)
        if status >= 500 or status == 408 or code in _AMBIGUOUS_CODES:
            detail = f"HTTP {status}" + (f", code {code}: {msg}" if body else "")
            return self._unknown(kind, method, path, detail, status)
        if status == 401 or code in _CREDENTIAL_CODES:
            return CredentialsRejected(code, msg, status, venue=venue)
        if code in _CLOCK_CODES:
            return TimestampRejected(code, msg, status, venue=venue)
        if code == _LISTEN_KEY_CODE:
            return ListenKeyInvalid(code, msg, status, venue=venue)
        if code in _OVERLOADED_CODES and kind != "write":
            return _Transient(venue, f"{method} {path}: code {code}: {msg}", http_status=status)
        return VenueError(code, msg, status, venue=venue)

    def _note_latency(self, endpoint: str, started: float) -> None:
        elapsed = trio.current_time() - started
        self.stats.latency_seconds_total[endpoint] = self.stats.latency_seconds_total.get(endpoint, 0.0) + elapsed
        self.stats.latency_seconds_max[endpoint] = max(self.stats.latency_seconds_max.get(endpoint, 0.0), elapsed)

    def _note_counters(self, response: httpx.Response) -> None:
        for header, attribute in (
            ("x-mbx-used-weight-1m", "used_weight_1m"),
            ("x-mbx-order-count-10s", "order_count_10s"),
            ("x-mbx-order-count-1m", "order_count_1m"),
        ):
            value = response.headers.get(header)
            if value is not None and value.isdigit():
                setattr(self.stats, attribute, int(value))

    def _log(self, endpoint: str, encoded: str, outcome: str, started: float) -> None:
        if log.isEnabledFor(logging.DEBUG):
            elapsed_ms = (trio.current_time() - started) * 1000
            log.debug("%s %s [%s] -> %s in %.0f ms", endpoint, strip_signature(encoded), self.account_id, outcome, elapsed_ms)


def _int_code(code: int | str) -> int:
    if isinstance(code, int):
        return code
    try:
        return int(code)
    except ValueError:
        return 0
