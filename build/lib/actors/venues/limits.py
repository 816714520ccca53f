"""Rate limits of the signed venue clients: one :class:`VenueLimiter` per venue (request weight is
counted per IP, so every account's client shares it), one :class:`OrderCounter` per credential
(order counts are per account).

The venues count in fixed windows (weight per minute; orders per 10 s and per minute) and report
the running totals in ``X-MBX-USED-WEIGHT-1M`` and ``X-MBX-ORDER-COUNT-10S`` / ``-1M``. The
limiter keeps its own count of what it lets through and adopts the venue's figure when that is
higher (other processes on the same IP, requests of the same window still in flight).

Requests carry a :class:`Priority`. Each priority may fill a window only up to its share of the
venue's limit (``entry_share`` < ``read_share`` < ``exit_share`` < 1), so closes, cancels and
protective orders always find headroom that new entries cannot use, and nothing runs into the
venue's own limit. A request over its share waits for the next window if that is within its
bounded wait, and is refused locally (:class:`LocalRateLimited`, nothing sent) otherwise.

A 429 pauses every request to the venue (``Retry-After`` when present, exponential otherwise); a
418 stops them all until the ban ends: :class:`~actors.venues.rest.VenueBanned` at once, no
traffic. The state machine is pure (every method takes ``now``, epoch seconds); only
:meth:`VenueLimiter.acquire` sleeps.
"""

from __future__ import annotations

import enum
import logging
import math
from collections.abc import Callable, Mapping
from typing import Final

import msgspec
import trio

from actors.venues.profiles import VenueProfile
from actors.venues.rest import RateLimited, VenueBanned

__all__ = [
    "LimiterSettings",
    "LimiterStatistics",
    "LocalRateLimited",
    "OrderCounter",
    "Priority",
    "VenueLimiter",
    "retry_after_seconds",
]

log = logging.getLogger("actors.venues")

WEIGHT_HEADER: Final = "x-mbx-used-weight-1m"
ORDER_COUNT_10S_HEADER: Final = "x-mbx-order-count-10s"
ORDER_COUNT_1M_HEADER: Final = "x-mbx-order-count-1m"
_EPSILON: Final = 1e-6  # float slack when placing a time on a window boundary


class Priority(enum.IntEnum):
    """Who yields first when the budget runs low."""

    #: orders that open or add exposure
    ENTRY = 0
    #: queries and reconciliation
    READ = 1
    #: closes, cancels, protective orders: keep headroom the others cannot use
    EXIT = 2


class LocalRateLimited(RateLimited):
    """Refused locally, before the venue's limit: nothing was sent. Retry after ``retry_after``."""

    def __init__(self, venue: str, detail: str, *, retry_after: float) -> None:
        super().__init__(0, detail, retry_after=retry_after, venue=venue)
        self.http_status = 0
        self.args = (f"{venue}: rate budget exhausted, request not sent: {detail} (retry in {retry_after:.2f} s)",)


class LimiterSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Shares of the venue's limits per priority, and how long a request may wait for budget."""

    entry_share: float = 0.6
    read_share: float = 0.8
    exit_share: float = 0.95
    #: the longest a request waits for budget (EXIT and READ) before it is refused
    max_wait_seconds: float = 10.0
    #: the longest a new entry waits (a late entry is worse than none)
    entry_max_wait_seconds: float = 2.0
    #: pause after a 429 without ``Retry-After``: doubled on each consecutive 429, up to the max
    backoff_429_seconds: float = 1.0
    backoff_429_max_seconds: float = 60.0
    #: a 418 without ``Retry-After`` bans for this long
    ban_default_seconds: float = 120.0

    def __post_init__(self) -> None:
        if not 0 < self.entry_share <= self.read_share <= self.exit_share <= 1:
            raise ValueError("shares must satisfy 0 < entry_share <= read_share <= exit_share <= 1")
        if self.max_wait_seconds < 0 or self.entry_max_wait_seconds < 0:
            raise ValueError("waits must not be negative")

    def share(self, priority: Priority) -> float:
        return (self.entry_share, self.read_share, self.exit_share)[priority]

    def max_wait(self, priority: Priority) -> float:
        return self.entry_max_wait_seconds if priority is Priority.ENTRY else self.max_wait_seconds


class LimiterStatistics(msgspec.Struct, frozen=True, kw_only=True):
    """A snapshot of a limiter (for metrics)."""

    venue: str
    used_weight: int
    weight_limit: int
    paused_seconds: float
    banned_seconds: float
    waits: int
    refusals: int
    rate_limited_429: int
    bans_418: int


def retry_after_seconds(value: str | None) -> float | None:
    """``Retry-After`` in seconds (delta-seconds form only; an HTTP date is ignored)."""
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


class _Window:
    """Units used in the current fixed, epoch-aligned window of ``length`` seconds."""

    __slots__ = ("index", "length", "limit", "used")

    def __init__(self, length: float, limit: int) -> None:
        self.length = length
        self.limit = limit
        self.index = -1
        self.used = 0

    def _index(self, now: float) -> int:
        return math.floor((now + _EPSILON) / self.length)

    def current(self, now: float) -> int:
        index = self._index(now)
        if index > self.index:  # a clock stepping back keeps the window it is in
            self.index, self.used = index, 0
        return self.used

    def add(self, units: int, now: float) -> None:
        self.used = self.current(now) + units

    def observe(self, value: int, sent_at: float, now: float) -> None:
        """Adopt the venue's count if it is of the current window and higher than ours."""
        if self._index(sent_at) == self._index(now):
            self.used = max(self.current(now), value)

    def wait_for(self, units: int, share: float, now: float) -> float:
        """Seconds until ``units`` fit under ``share`` of the limit (0: they fit now)."""
        if units <= 0 or self.current(now) + units <= share * self.limit:
            return 0.0
        return max(0.0, (self.index + 1) * self.length - now)


def _header_int(headers: Mapping[str, str], name: str) -> int | None:
    value = headers.get(name)
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        return None


class OrderCounter:
    """Order counts of one credential (10 s and 1 min windows, as the venue counts them)."""

    def __init__(self, *, per_minute: int, per_10_seconds: int | None = None) -> None:
        self._minute = _Window(60.0, per_minute)
        self._ten = _Window(10.0, per_10_seconds) if per_10_seconds else None

    @classmethod
    def for_profile(cls, profile: VenueProfile) -> OrderCounter:
        return cls(per_minute=profile.orders_per_minute, per_10_seconds=profile.orders_per_10_seconds)

    def counts(self, now: float) -> tuple[int | None, int]:
        """``(orders this 10 s window or None, orders this minute)``."""
        return (self._ten.current(now) if self._ten else None, self._minute.current(now))

    def wait_for(self, orders: int, share: float, now: float) -> float:
        waits = [self._minute.wait_for(orders, share, now)]
        if self._ten is not None:
            waits.append(self._ten.wait_for(orders, share, now))
        return max(waits)

    def record_sent(self, orders: int, now: float) -> None:
        self._minute.add(orders, now)
        if self._ten is not None:
            self._ten.add(orders, now)

    def record_headers(self, headers: Mapping[str, str], *, sent_at: float, now: float) -> None:
        minute = _header_int(headers, ORDER_COUNT_1M_HEADER)
        if minute is not None:
            self._minute.observe(minute, sent_at, now)
        ten = _header_int(headers, ORDER_COUNT_10S_HEADER)
        if ten is not None and self._ten is not None:
            self._ten.observe(ten, sent_at, now)


class VenueLimiter:
    """Request weight, 429 pauses and 418 bans of one venue, shared by all its signed clients."""

    def __init__(self, venue: str, *, weight_per_minute: int, settings: LimiterSettings | None = None) -> None:
        self.venue = venue
        self.settings = settings or LimiterSettings()
        self._weight = _Window(60.0, weight_per_minute)
        self._paused_until = -math.inf
        self._banned_until = -math.inf
        self._consecutive_429 = 0
        self.waits = 0
        self.refusals = 0
        self.rate_limited_429 = 0
        self.bans_418 = 0

    @classmethod
    def for_profile(cls, profile: VenueProfile, settings: LimiterSettings | None = None) -> VenueLimiter:
        return cls(profile.name, weight_per_minute=profile.request_weight_per_minute, settings=settings)

    def __repr__(self) -> str:
        return f"<VenueLimiter {self.venue} weight {self._weight.used}/{self._weight.limit}>"

    # -- pure state machine -----------------------------------------------------------------

    def delay(
        self, *, weight: int, priority: Priority, now: float, orders: OrderCounter | None = None, order_count: int = 0
    ) -> float:
        """Seconds this request must wait before it may be sent (0: now).

        Raises:
            VenueBanned: the venue banned this IP (418) and the ban has not ended.
        """
        if now < self._banned_until:
            raise VenueBanned(self.venue, self._banned_until - now)
        share = self.settings.share(priority)
        wait = max(0.0, self._paused_until - now, self._weight.wait_for(weight, share, now))
        if orders is not None and order_count:
            wait = max(wait, orders.wait_for(order_count, share, now))
        return wait

    def record_sent(self, *, weight: int, now: float, orders: OrderCounter | None = None, order_count: int = 0) -> None:
        self._weight.add(weight, now)
        if orders is not None and order_count:
            orders.record_sent(order_count, now)

    def record_response(
        self, headers: Mapping[str, str], *, sent_at: float, now: float, orders: OrderCounter | None = None
    ) -> None:
        """Adopt the venue's counters from a response (any status)."""
        used = _header_int(headers, WEIGHT_HEADER)
        if used is not None:
            self._weight.observe(used, sent_at, now)
        if orders is not None:
            orders.record_headers(headers, sent_at=sent_at, now=now)

    def record_success(self) -> None:
        self._consecutive_429 = 0

    def record_429(self, retry_after: float | None, now: float) -> float:
        """Pause every request; returns the pause in seconds."""
        self.rate_limited_429 += 1
        self._consecutive_429 += 1
        s = self.settings
        pause = (
            retry_after
            if retry_after is not None
            else min(s.backoff_429_max_seconds, s.backoff_429_seconds * 2 ** (self._consecutive_429 - 1))
        )
        self._paused_until = max(self._paused_until, now + pause)
        log.warning("%s: rate limited (HTTP 429); every request waits %.2f s", self.venue, pause)
        return pause

    def record_418(self, retry_after: float | None, now: float) -> float:
        """Stop every request until the ban ends; returns the ban in seconds."""
        self.bans_418 += 1
        ban = retry_after if retry_after is not None else self.settings.ban_default_seconds
        self._banned_until = max(self._banned_until, now + ban)
        log.error("%s: IP banned (HTTP 418); no request to this venue for %.1f s", self.venue, ban)
        return ban

    def adopt_weight_limit(self, weight_per_minute: int) -> None:
        """Use the venue's stated REQUEST_WEIGHT limit (from exchangeInfo)."""
        if weight_per_minute > 0:
            self._weight.limit = weight_per_minute

    def statistics(self, now: float) -> LimiterStatistics:
        return LimiterStatistics(
            venue=self.venue,
            used_weight=self._weight.current(now),
            weight_limit=self._weight.limit,
            paused_seconds=max(0.0, self._paused_until - now),
            banned_seconds=max(0.0, self._banned_until - now),
            waits=self.waits,
            refusals=self.refusals,
            rate_limited_429=self.rate_limited_429,
            bans_418=self.bans_418,
        )

    # -- the one async part -----------------------------------------------------------------

    async def acquire(
        self,
        *,
        weight: int,
        priority: Priority,
        clock: Callable[[], float],
        orders: OrderCounter | None = None,
        order_count: int = 0,
    ) -> float:
        """Wait (bounded) until the request may be sent, then count it; returns the time waited.

        Raises:
            VenueBanned: during a 418 ban (at once).
            LocalRateLimited: the budget would not be available within the priority's max wait.
        """
        waited = 0.0
        while True:
            now = clock()
            wait = self.delay(weight=weight, priority=priority, now=now, orders=orders, order_count=order_count)
            if wait <= 0:
                self.record_sent(weight=weight, now=now, orders=orders, order_count=order_count)
                return waited
            if waited + wait > self.settings.max_wait(priority) + _EPSILON:
                self.refusals += 1
                raise LocalRateLimited(
                    self.venue,
                    f"{priority.name.lower()} request needs {wait:.2f} s more (weight {weight}, orders {order_count})",
                    retry_after=wait,
                )
            self.waits += 1
            await trio.sleep(wait)
            waited += wait
