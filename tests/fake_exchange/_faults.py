"""Faults on trading requests: :meth:`FakeExchange.fault_next` queues them, the HTTP layer applies them.

Kinds (``placed`` says whether the request is executed before the fault replaces its answer):

============== ============================================================== =================
kind           answer                                                         placed by default
============== ============================================================== =================
``"timeout"``  none: the connection stays open and silent (the client times out)  yes
``"drop"``     none: the connection is closed                                      yes
``"503"``      503 ``-1000`` "Unknown error, please check your request or try      yes
               again later." (Binance: execution status unknown)
``"unavailable"`` 503 ``-1001`` "Service Unavailable." (a failure)                 no
``"5xx"``      ``status`` (default 500) ``-1000`` "Request occur unknown error."   no
``"429"``      429 ``-1003`` with ``Retry-After`` (``retry_after``, default 1)     no
``"418"``      418 ``-1003`` "Way too many requests; IP banned..." + Retry-After   no
an int code    the venue's error for that code (-2021, -2019, -4164, -1021...)     no
               with its HTTP status (408 for -1007, 503 for -1001)
============== ============================================================== =================

Every kind accepts ``placed=True`` or ``False`` to choose. A fault matches the next request whose
path (if given) and method match; with no method it matches writes only (POST, PUT, DELETE).
The request is recorded either way (status 0 when no answer was sent).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

from ._errors import MESSAGES, VenueError
from actors.tools.loopback import HttpRequest, HttpResponse

_PLACED_BY_DEFAULT: Final = frozenset({"timeout", "drop", "503"})
KINDS: Final = ("timeout", "drop", "503", "unavailable", "5xx", "429", "418")


@dataclass(frozen=True)
class WriteFault:
    kind: str | int
    path: str | None
    method: str | None
    placed: bool
    status: int | None = None
    retry_after: float | None = None
    msg: str | None = None

    def matches(self, request: HttpRequest) -> bool:
        if self.path is not None and request.path != self.path:
            return False
        if self.method is None:
            return request.method != "GET"
        return self.method == "*" or request.method == self.method.upper()

    @property
    def silent(self) -> bool:
        """No HTTP answer at all (timeout or drop)."""
        return self.kind in ("timeout", "drop")

    @property
    def label(self) -> str:
        return str(self.kind)

    def response(self, now_ms: int) -> HttpResponse:
        """The answer that replaces the venue's (not for silent kinds)."""
        kind = self.kind
        if isinstance(kind, int):
            return VenueError(kind, self.msg, status=self.status).response()
        retry = [("retry-after", f"{self.retry_after if self.retry_after is not None else 1:g}")]
        if kind == "503":
            return VenueError(
                -1000, self.msg or "Unknown error, please check your request or try again later.", status=503
            ).response()
        if kind == "unavailable":
            return VenueError(-1001, self.msg or "Service Unavailable.", status=503).response()
        if kind == "5xx":
            return VenueError(-1000, self.msg or "Request occur unknown error.", status=self.status or 500).response()
        if kind == "429":
            text = "Too many requests; current limit of IP(127.0.0.1) request weight per 1 minute is 2400."
            return VenueError(-1003, self.msg or text, status=429).response(retry)
        if kind == "418":
            seconds = self.retry_after if self.retry_after is not None else 1
            until = now_ms + math.ceil(seconds * 1000)
            text = (
                f"Way too many requests; IP(127.0.0.1) banned until {until}. "
                "Please use the websocket for live updates to avoid bans."
            )
            return VenueError(-1003, self.msg or text, status=418).response(retry)
        raise ValueError(f"unknown fault kind {kind!r}")


class WriteFaults:
    """The queue of faults waiting for a matching request."""

    def __init__(self) -> None:
        self.queue: list[WriteFault] = []

    def add(
        self,
        kind: str | int,
        n: int,
        *,
        path: str | None,
        method: str | None,
        placed: bool | None,
        status: int | None,
        retry_after: float | None,
        msg: str | None,
    ) -> None:
        if isinstance(kind, int):
            if kind not in MESSAGES and msg is None:
                raise ValueError(f"no standard message for code {kind}: pass msg=")
        elif kind not in KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; expected one of {KINDS} or an error code")
        placed = kind in _PLACED_BY_DEFAULT if placed is None else placed
        self.queue.extend([WriteFault(kind, path, method, placed, status, retry_after, msg)] * n)

    def take(self, request: HttpRequest) -> WriteFault | None:
        for index, fault in enumerate(self.queue):
            if fault.matches(request):
                del self.queue[index]
                return fault
        return None
