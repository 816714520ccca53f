"""Venue errors of the fake exchange: the ``{"code", "msg"}`` bodies and HTTP statuses the venues use.

Messages are the venues' own texts (Aster's and Binance's error-code lists are the same for every
code used here). HTTP statuses: 401 for API-key rejections (-2014, -2015), as Binance's futures API
answers them; 400 for every other request error (-1021 and -1022 included); 408 for -1007 and 503
for -1001 (the statuses Binance documents for a backend timeout and an internal error); 429 for
the order-rate limit (-1015).
"""

from __future__ import annotations

from typing import Any, Final

import msgspec

from actors.tools.loopback import HttpResponse

_encode = msgspec.json.Encoder().encode

#: the venue's standard message for each code this fake answers with
MESSAGES: Final[dict[int, str]] = {
    -1000: "An unknown error occured while processing the request.",
    -1001: "Internal error; unable to process your request. Please try again.",
    -1007: "Timeout waiting for response from backend server. Send status unknown; execution status unknown.",
    -1015: "Too many new orders.",
    -1021: "Timestamp for this request is outside of the recvWindow.",
    -1022: "Signature for this request is not valid.",
    -1102: "A mandatory parameter was not sent, was empty/null, or malformed.",
    -1106: "A parameter was sent when not required.",
    -1111: "Precision is over the maximum defined for this asset.",
    -1115: "Invalid timeInForce.",
    -1116: "Invalid orderType.",
    -1117: "Invalid side.",
    -1121: "Invalid symbol.",
    -1125: "This listenKey does not exist.",
    -1128: "Combination of optional parameters invalid.",
    -1130: "Invalid data sent for a parameter.",
    -1136: "Invalid newOrderRespType.",
    -2011: "Unknown order sent.",
    -2013: "Order does not exist.",
    -2014: "API-key format invalid.",
    -2015: "Invalid API-key, IP, or permissions for action, request ip: 127.0.0.1",
    -2019: "Margin is insufficient.",
    -2021: "Order would immediately trigger.",
    -2022: "ReduceOnly Order is rejected.",
    -2027: "Exceeded the maximum allowable position at current leverage.",
    -4002: "Price greater than max price.",
    -4003: "Quantity less than zero.",
    -4004: "Quantity less than min quantity.",
    -4005: "Quantity greater than max quantity.",
    -4013: "Price less than min price.",
    -4014: "Price not increased by tick size.",
    -4015: "Client order id is not valid.",
    -4016: "Price is higher than mark price multiplier cap.",
    -4023: "Qty not increased by step size.",
    -4024: "Price is lower than mark price multiplier floor.",
    -4028: "Invalid leverage",
    -4046: "No need to change margin type.",
    -4047: "Margin type cannot be changed if there exists open orders.",
    -4048: "Margin type cannot be changed if there exists position.",
    -4061: "Order's position side does not match user's setting.",
    -4116: "ClientOrderId is duplicated.",
    -4120: "Order type not supported for this endpoint. Please use the Algo Order API endpoints instead.",
    -4130: "An open stop or take profit order with GTE and closePosition in the direction is existing.",
    -4131: "The counterparty's best price does not meet the PERCENT_PRICE filter limit",
    -4137: "Quantity must be zero with closePosition equals true",
    -4161: "Leverage reduction is not supported in Isolated Margin Mode with open positions",
    -4164: "Order's notional must be no smaller than 5 (unless you choose reduce only)",
    -4225: "Nonce Expired",
    -5021: "Due to the order could not be filled immediately, the FOK order has been rejected.",
    -5022: "Due to the order could not be executed as maker, the Post Only order will be rejected.",
}

_STATUS: Final[dict[int, int]] = {-2014: 401, -2015: 401, -1001: 503, -1007: 408, -1015: 429}


def http_status_of(code: int) -> int:
    """The HTTP status the venues answer a given error code with."""
    return _STATUS.get(code, 400)


class VenueError(Exception):
    """A request the venue refuses: becomes a ``{"code", "msg"}`` body with the venue's status."""

    def __init__(self, code: int, msg: str | None = None, *, status: int | None = None) -> None:
        self.code = code
        self.msg = (
            msg if msg is not None else MESSAGES.get(code, "An unknown error occured while processing the request.")
        )
        self.status = status if status is not None else http_status_of(code)
        super().__init__(f"{self.code}: {self.msg}")

    def response(self, headers: list[tuple[str, str]] | None = None) -> HttpResponse:
        return HttpResponse(self.status, _encode({"code": self.code, "msg": self.msg}), headers or [])


def missing(name: str) -> VenueError:
    """-1102 naming the missing parameter, as the venues do."""
    return VenueError(-1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed.")


def invalid(name: str) -> VenueError:
    """-1130 naming the parameter whose value is not valid."""
    return VenueError(-1130, f"Data sent for parameter '{name}' is not valid.")


def not_required(name: str) -> VenueError:
    """-1106 naming a parameter sent where the venue refuses it."""
    return VenueError(-1106, f"Parameter '{name}' sent when not required.")


def json_response(payload: Any, status: int = 200, headers: list[tuple[str, str]] | None = None) -> HttpResponse:
    return HttpResponse(status, _encode(payload), headers or [])
