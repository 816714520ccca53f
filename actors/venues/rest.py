"""Public (unsigned, read-only) REST client of one AsterDEX / Binance USDⓈ-M venue.

The client is polite by construction:

* request weight is tracked from ``X-MBX-USED-WEIGHT-1M``; above ``weight_slowdown_ratio`` of the
  venue's limit, requests wait for the minute to roll instead of running into a 429;
* a **429** pauses every request to the venue (``Retry-After`` when present, exponential
  otherwise) and is retried;
* a **418** (IP ban) stops every request to the venue until the ban ends (``Retry-After``, or
  ``ban_default_seconds``): callers get :class:`VenueBanned` immediately, without any traffic;
* timeouts, transport errors and 5xx are retried with exponential backoff and jitter (tenacity,
  sleeping with ``trio.sleep`` so that trio's virtual clock drives it in tests);
* an error body ``{"code": -1121, "msg": "Invalid symbol."}`` becomes :class:`VenueError`.

Exceptions::

    VenueIOError
     ├── VenueError(code, msg, http_status)   the venue refused the request
     │    └── RateLimited(retry_after)         429, still limited after every retry
     ├── VenueBanned(retry_after)              418: the IP is banned, nothing is sent until it ends
     ├── VenueUnavailable                      timeout / transport error / 5xx after every retry
     └── EndpointNotPublic                     the endpoint needs a signature on this venue

There is deliberately no method that writes (orders, leverage, cancels): those belong to the
signed live adapter.
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Final

import httpx
import msgspec
import tenacity
import trio

from actors.domain.market import LeverageBracket, MarkPrice, OrderBook
from actors.venues.parsing import (
    ExchangeInfo,
    parse_book_ticker,
    parse_depth,
    parse_error_body,
    parse_exchange_info,
    parse_leverage_brackets,
    parse_premium_index,
    parse_server_time,
)
from actors.venues.profiles import VenueProfile

__all__ = [
    "EndpointNotPublic",
    "PublicRestClient",
    "RateLimited",
    "RestSettings",
    "RestStats",
    "VenueBanned",
    "VenueError",
    "VenueIOError",
    "VenueUnavailable",
]

log = logging.getLogger("actors.venues")

_WEIGHT_HEADER: Final = "x-mbx-used-weight-1m"
_DEPTH_LIMITS: Final = (5, 10, 20, 50, 100, 500, 1000)


class VenueIOError(Exception):
    """Base of every error raised by the venue I/O layer."""


class VenueError(VenueIOError):
    """The venue answered with an error (its ``{"code", "msg"}`` body when it sent one)."""

    def __init__(self, code: int, msg: str, http_status: int, *, venue: str = "") -> None:
        self.code = code
        self.msg = msg
        self.http_status = http_status
        self.venue = venue
        prefix = f"{venue}: " if venue else ""
        super().__init__(f"{prefix}HTTP {http_status}, code {code}: {msg}")


class RateLimited(VenueError):
    """HTTP 429. ``retry_after`` is the venue's ``Retry-After`` in seconds, if it sent one."""

    def __init__(self, code: int, msg: str, *, retry_after: float | None, venue: str = "") -> None:
        super().__init__(code, msg, 429, venue=venue)
        self.retry_after = retry_after


class VenueBanned(VenueIOError):
    """HTTP 418: the venue banned this IP; no request is sent until ``retry_after`` has passed."""

    def __init__(self, venue: str, retry_after: float) -> None:
        self.venue = venue
        self.retry_after = retry_after
        super().__init__(f"{venue}: IP banned by the venue (HTTP 418), {retry_after:.1f} s left")


class VenueUnavailable(VenueIOError):
    """The venue could not be reached or answered 5xx, after every retry."""

    def __init__(self, venue: str, detail: str, *, http_status: int | None = None) -> None:
        self.venue = venue
        self.detail = detail
        self.http_status = http_status
        super().__init__(f"{venue}: unavailable: {detail}")


class EndpointNotPublic(VenueIOError):
    """The endpoint requires a signed request on this venue; use the signed client."""


class RestSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Timeouts, retries and politeness of the REST client."""

    timeout_seconds: float = 10.0
    #: attempts per request, the first included (429 / 5xx / transport errors are retried)
    max_attempts: int = 5
    backoff_initial_seconds: float = 0.5
    backoff_max_seconds: float = 30.0
    #: each backoff is multiplied by a random factor in [1, 1 + jitter)
    jitter: float = 0.25
    ban_default_seconds: float = 120.0
    #: wait for the next minute above this fraction of the request-weight limit
    weight_slowdown_ratio: float = 0.9
    #: None: the profile's (or exchangeInfo's) REQUEST_WEIGHT per minute
    weight_limit_per_minute: int | None = None
    #: ``leverageBracket`` is signed on the real venues; the fake exchange serves it unsigned
    leverage_brackets_unsigned: bool = False
    max_connections: int = 8

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if not 0 < self.weight_slowdown_ratio <= 1:
            raise ValueError("weight_slowdown_ratio must be in (0, 1]")
        if self.backoff_initial_seconds < 0 or self.backoff_max_seconds < self.backoff_initial_seconds:
            raise ValueError("backoff must satisfy 0 <= initial <= max")


class RestStats(msgspec.Struct, kw_only=True):
    """Counters of one client (mutated by the client only; read them freely)."""

    requests: int = 0
    retries: int = 0
    backoffs_429: int = 0
    bans_418: int = 0
    errors: int = 0
    weight_slowdowns: int = 0
    used_weight_1m: int = 0
    #: answers by "<path> <HTTP status>" ("<path> error" without one), and seconds spent by path
    answers: dict[str, int] = msgspec.field(default_factory=dict)
    seconds: dict[str, float] = msgspec.field(default_factory=dict)


class PublicRestClient:
    """Read-only market-data REST client of one venue (one ``httpx.AsyncClient``).

    Use it as an async context manager, or call :meth:`aclose`. ``clock`` returns epoch
    seconds (the service's clock); it stamps ``received_at`` and places minute boundaries.
    Back-off deadlines use ``trio.current_time()``.
    """

    def __init__(
        self,
        profile: VenueProfile,
        *,
        clock: Callable[[], float],
        settings: RestSettings | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.profile = profile
        self.settings = settings or RestSettings()
        self.stats = RestStats()
        #: server time minus local clock, seconds (see :meth:`measure_clock_offset`)
        self.clock_offset: float | None = None
        self._clock = clock
        self._rng = rng or random.Random()
        self._weight_limit = self.settings.weight_limit_per_minute or profile.request_weight_per_minute
        self._weight_minute = -1  # the minute (clock() // 60) of the last weight reading
        self._paused_until = -math.inf  # trio time; set by 429s
        self._banned_until = -math.inf  # trio time; set by 418s
        limits = httpx.Limits(max_connections=self.settings.max_connections)
        self._http = httpx.AsyncClient(
            base_url=profile.rest_url,
            transport=transport,
            timeout=httpx.Timeout(self.settings.timeout_seconds),
            limits=limits,
            headers={"Accept": "application/json", "User-Agent": "execd/0.1"},
        )

    # -- lifecycle --------------------------------------------------------------------------

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> PublicRestClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    # -- state ------------------------------------------------------------------------------

    @property
    def weight_limit(self) -> int:
        return self._weight_limit

    def ban_seconds_left(self) -> float:
        """Seconds until the current 418 ban ends (0 when not banned)."""
        return max(0.0, self._banned_until - trio.current_time())

    # -- endpoints --------------------------------------------------------------------------

    async def ping(self) -> None:
        await self._get(self.profile.paths.ping)

    async def server_time(self) -> int:
        """The venue's time, epoch milliseconds."""
        return parse_server_time(await self._get(self.profile.paths.time))

    async def measure_clock_offset(self) -> float:
        """Measure (and remember in :attr:`clock_offset`) server time minus local clock, seconds.

        The local time is taken at the midpoint of the round trip.
        """
        sent = self._clock()
        server_ms = await self.server_time()
        received = self._clock()
        self.clock_offset = server_ms / 1000 - (sent + received) / 2
        return self.clock_offset

    async def exchange_info_raw(self) -> bytes:
        """The raw exchangeInfo body (for :func:`~actors.venues.parsing.build_instruments`)."""
        return await self._get(self.profile.paths.exchange_info)

    async def exchange_info(self) -> ExchangeInfo:
        """Every symbol's filters; also adopts the venue's stated REQUEST_WEIGHT limit."""
        info = parse_exchange_info(await self.exchange_info_raw())
        if self.settings.weight_limit_per_minute is None and info.request_weight_per_minute:
            self._weight_limit = info.request_weight_per_minute
        return info

    async def depth(self, symbol: str, limit: int = 20) -> OrderBook:
        """L2 book snapshot (``limit`` one of 5, 10, 20, 50, 100, 500, 1000)."""
        if limit not in _DEPTH_LIMITS:
            raise ValueError(f"depth limit must be one of {_DEPTH_LIMITS}, got {limit}")
        raw = await self._get(self.profile.paths.depth, {"symbol": symbol, "limit": str(limit)})
        return parse_depth(raw, symbol, self._clock())

    async def book_ticker(self, symbol: str) -> OrderBook:
        """Best bid and ask (a top-of-book :class:`OrderBook`, ``depth=False``)."""
        raw = await self._get(self.profile.paths.book_ticker, {"symbol": symbol})
        return parse_book_ticker(raw, self._clock())

    async def premium_index(self, symbol: str) -> MarkPrice:
        """Mark price, index price and funding of one symbol."""
        raw = await self._get(self.profile.paths.premium_index, {"symbol": symbol})
        return parse_premium_index(raw, self._clock())

    async def leverage_brackets(self, symbol: str | None = None) -> dict[str, tuple[LeverageBracket, ...]]:
        """Maintenance-margin brackets, only where the venue serves them unsigned.

        Raises:
            EndpointNotPublic: unless ``RestSettings.leverage_brackets_unsigned`` is set.
        """
        if not self.settings.leverage_brackets_unsigned:
            raise EndpointNotPublic(
                f"{self.profile.name}: leverageBracket is a signed (USER_DATA) endpoint; "
                "use the signed client or the default bracket ladder"
            )
        params = {"symbol": symbol} if symbol else None
        return parse_leverage_brackets(await self._get(self.profile.paths.leverage_bracket, params))

    # -- machinery --------------------------------------------------------------------------

    async def _get(self, path: str, params: Mapping[str, str] | None = None) -> bytes:
        """GET ``path`` with retries; return the body of a 200."""
        retrying = tenacity.AsyncRetrying(
            sleep=trio.sleep,
            stop=tenacity.stop_after_attempt(self.settings.max_attempts),
            wait=self._backoff,
            retry=tenacity.retry_if_exception_type((RateLimited, VenueUnavailable)),
            before_sleep=self._before_retry,
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                return await self._attempt(path, params)
        raise AssertionError("unreachable: tenacity either returns or re-raises")  # pragma: no cover

    async def _attempt(self, path: str, params: Mapping[str, str] | None) -> bytes:
        await self._wait_until_allowed()
        self.stats.requests += 1
        started = trio.current_time()
        try:
            response = await self._http.get(path, params=params)
        except httpx.RequestError as exc:  # transport errors and timeouts, undecodable bodies
            self.stats.errors += 1
            self._note_answer(path, "error", started)
            raise VenueUnavailable(self.profile.name, f"GET {path}: {type(exc).__name__}: {exc}") from exc
        self._note_answer(path, str(response.status_code), started)
        self._note_weight(response)
        status = response.status_code
        if status == 200:
            return response.content
        self.stats.errors += 1
        body = parse_error_body(response.content)
        code = _int_code(body.code) if body else 0
        msg = body.msg if body else response.text[:200]
        if status == 429:
            raise RateLimited(code, msg, retry_after=_retry_after(response), venue=self.profile.name)
        if status == 418:
            self._start_ban(_retry_after(response), msg)
            raise VenueBanned(self.profile.name, self.ban_seconds_left())
        if status >= 500:
            detail = f"GET {path}: HTTP {status}" + (f", code {code}: {msg}" if body else "")
            raise VenueUnavailable(self.profile.name, detail, http_status=status)
        raise VenueError(code, msg, status, venue=self.profile.name)

    def _note_answer(self, path: str, status: str, started: float) -> None:
        """Count the answer by endpoint and status, and the time it took (for the metrics)."""
        key = f"{path} {status}"
        self.stats.answers[key] = self.stats.answers.get(key, 0) + 1
        self.stats.seconds[path] = self.stats.seconds.get(path, 0.0) + (trio.current_time() - started)

    async def _wait_until_allowed(self) -> None:
        """Refuse during a ban; wait out a 429 pause and a nearly spent weight budget."""
        now = trio.current_time()
        if now < self._banned_until:
            raise VenueBanned(self.profile.name, self._banned_until - now)
        if now < self._paused_until:
            await trio.sleep_until(self._paused_until)
        threshold = self.settings.weight_slowdown_ratio * self._weight_limit
        if self.stats.used_weight_1m >= threshold and self._current_minute() == self._weight_minute:
            wait = 60.0 - self._clock() % 60.0
            self.stats.weight_slowdowns += 1
            log.warning(
                "%s: request weight %d of %d used this minute; waiting %.1f s for the next minute",
                self.profile.name,
                self.stats.used_weight_1m,
                self._weight_limit,
                wait,
            )
            await trio.sleep(wait)
            self.stats.used_weight_1m = 0

    def _current_minute(self) -> int:
        return int(self._clock() // 60)

    def _note_weight(self, response: httpx.Response) -> None:
        header = response.headers.get(_WEIGHT_HEADER)
        if header is None:
            return
        try:
            self.stats.used_weight_1m = int(header)
        except ValueError:
            log.debug("%s: unreadable %s header %r", self.profile.name, _WEIGHT_HEADER, header)
            return
        self._weight_minute = self._current_minute()

    def _start_ban(self, retry_after: float | None, msg: str) -> None:
        seconds = retry_after if retry_after is not None else self.settings.ban_default_seconds
        self._banned_until = max(self._banned_until, trio.current_time() + seconds)
        self.stats.bans_418 += 1
        log.error(
            "%s: IP banned (HTTP 418): %s; no request to this venue for %.1f s",
            self.profile.name,
            msg or "no message",
            seconds,
        )

    def _backoff(self, state: tenacity.RetryCallState) -> float:
        """Retry-After of a 429 when present, else exponential with multiplicative jitter."""
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, RateLimited) and exc.retry_after is not None:
            return exc.retry_after
        s = self.settings
        base = min(s.backoff_max_seconds, s.backoff_initial_seconds * 2 ** (state.attempt_number - 1))
        return base * (1.0 + s.jitter * self._rng.random())

    def _before_retry(self, state: tenacity.RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        wait = state.next_action.sleep if state.next_action else 0.0
        self.stats.retries += 1
        if isinstance(exc, RateLimited):
            self.stats.backoffs_429 += 1
            # every request to this venue waits, not only the one that hit the limit
            self._paused_until = max(self._paused_until, trio.current_time() + wait)
            log.warning(
                "%s: rate limited (HTTP 429, Retry-After %s); pausing requests for %.2f s (attempt %d)",
                self.profile.name,
                "absent" if exc.retry_after is None else f"{exc.retry_after:g}",
                wait,
                state.attempt_number,
            )
        else:
            log.warning("%s: %s; retrying in %.2f s (attempt %d)", self.profile.name, exc, wait, state.attempt_number)


def _retry_after(response: httpx.Response) -> float | None:
    """``Retry-After`` in seconds (delta-seconds form only; an HTTP date is ignored)."""
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


def _int_code(code: int | str) -> int:
    if isinstance(code, int):
        return code
    try:
        return int(code)
    except ValueError:
        return 0
