"""User-data stream events against the official payloads (and one recorded ALGO_UPDATE)."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import msgspec
import pytest

from actors.venues.parsing import ParseError
from actors.venues.user_events import (
    AccountUpdate,
    AlgoUpdate,
    ConditionalOrderTriggerReject,
    ListenKeyExpired,
    MarginCall,
    OrderTradeUpdate,
    parse_user_event,
)

PAYLOADS = Path(__file__).parent / "payloads" / "account"


def load(name: str) -> bytes:
    return (PAYLOADS / name).read_bytes()


def check_order_update(raw: bytes) -> None:
    event = parse_user_event(raw)
    assert isinstance(event, OrderTradeUpdate)
    assert (event.symbol, event.client_order_id, event.order_id) == ("BTCUSDT", "TEST", 8886774)
    assert (event.execution_type, event.status, event.orig_type) == ("NEW", "NEW", "TRAILING_STOP_MARKET")
    assert event.stop_price == Decimal("7103.04") and event.commission_asset == "USDT"
    assert event.event_time == 1568879465651


def check_account_update(raw: bytes) -> None:
    event = parse_user_event(raw)
    assert isinstance(event, AccountUpdate) and event.reason == "ORDER"
    assert [b.asset for b in event.balances] == ["USDT", "BUSD"]
    assert event.balances[0].wallet_balance == Decimal("122624.12345678")
    assert [p.position_side for p in event.positions] == ["BOTH", "LONG", "SHORT"]
    assert event.positions[2].quantity == Decimal("-10") and event.positions[2].accumulated_realized == Decimal("-45.04000000")


def check_algo_update(raw: bytes) -> None:
    event = parse_user_event(raw)
    assert isinstance(event, AlgoUpdate) and event.algo_type == "CONDITIONAL"


def check_trigger_reject(raw: bytes) -> None:
    event = parse_user_event(raw)
    assert isinstance(event, ConditionalOrderTriggerReject)
    assert (event.symbol, event.order_id) == ("ETHUSDT", 155618472834) and "FOK" in event.reason


def check_margin_call(raw: bytes) -> None:
    event = parse_user_event(raw)
    assert isinstance(event, MarginCall) and event.cross_wallet_balance == Decimal("3.16812045")
    (position,) = event.positions
    assert (position.symbol, position.maintenance_margin) == ("ETHUSDT", Decimal("1.614445"))


def check_listen_key_expired(raw: bytes) -> None:
    event = parse_user_event(raw)
    assert isinstance(event, ListenKeyExpired) and event.event_time > 1_500_000_000_000


def check_ignored(raw: bytes) -> None:
    assert parse_user_event(raw) is None


CHECKS: dict[str, Callable[[bytes], None]] = {
    "aster_ws_ORDER_TRADE_UPDATE.json": check_order_update,
    "binance_ws_ORDER_TRADE_UPDATE.json": check_order_update,
    "aster_ws_ACCOUNT_UPDATE.json": check_account_update,
    "binance_ws_ACCOUNT_UPDATE.json": check_account_update,
    "binance_ws_ALGO_UPDATE.json": check_algo_update,
    "binance_ws_ALGO_UPDATE_triggered_recorded.json": check_algo_update,
    "binance_ws_CONDITIONAL_ORDER_TRIGGER_REJECT.json": check_trigger_reject,
    "aster_ws_MARGIN_CALL.json": check_margin_call,
    "binance_ws_MARGIN_CALL.json": check_margin_call,
    "aster_ws_listenKeyExpired.json": check_listen_key_expired,
    "binance_ws_listenKeyExpired.json": check_listen_key_expired,
    "binance_ws_TRADE_LITE.json": check_ignored,
    "aster_ws_ACCOUNT_CONFIG_UPDATE_account.json": check_ignored,
    "aster_ws_ACCOUNT_CONFIG_UPDATE_leverage.json": check_ignored,
    "binance_ws_ACCOUNT_CONFIG_UPDATE_account.json": check_ignored,
    "binance_ws_ACCOUNT_CONFIG_UPDATE_leverage.json": check_ignored,
}


def test_every_stream_payload_file_has_a_check() -> None:
    assert sorted(p.name for p in PAYLOADS.glob("*_ws_*.json")) == sorted(CHECKS)


@pytest.mark.parametrize("name", sorted(CHECKS))
def test_official_payload_parses(name: str) -> None:
    CHECKS[name](load(name))


def test_binance_order_update_extras() -> None:
    event = parse_user_event(load("binance_ws_ORDER_TRADE_UPDATE.json"))
    assert isinstance(event, OrderTradeUpdate)
    assert (event.expiry_reason, event.position_side, event.working_type) == ("0", "LONG", "CONTRACT_PRICE")
    assert event.transaction_time == 1568879465650 and event.realized_pnl == 0


def test_algo_update_fields() -> None:
    cancelled = parse_user_event(load("binance_ws_ALGO_UPDATE.json"))
    assert isinstance(cancelled, AlgoUpdate)
    assert (cancelled.client_algo_id, cancelled.algo_id, cancelled.status) == ("Q5xaq5EGKgXXa0fD7fs0Ip", 2148719, "CANCELED")
    assert cancelled.trigger_price == Decimal("750") and cancelled.actual_order_id is None
    assert cancelled.reject_reason == "Reduce Only reject"
    # the recorded message is wrapped as a combined-stream message
    triggered = parse_user_event(load("binance_ws_ALGO_UPDATE_triggered_recorded.json"))
    assert isinstance(triggered, AlgoUpdate)
    assert (triggered.status, triggered.order_type, triggered.actual_order_id) == ("TRIGGERED", "STOP_MARKET", 88937381063)
    assert triggered.trigger_time == 1765431097019 and triggered.client_algo_id == "O-20251211-053131-TEST-000-1"


def test_binance_listen_key_expired_has_a_string_event_time() -> None:
    event = parse_user_event(load("binance_ws_listenKeyExpired.json"))
    assert event == ListenKeyExpired(event_time=1736996475556)


def test_a_fill_event() -> None:
    raw = msgspec.json.encode({
        "e": "ORDER_TRADE_UPDATE", "E": 2, "T": 1,
        "o": {"s": "ETHUSDT", "c": "e-1", "S": "BUY", "o": "MARKET", "f": "GTC", "q": "0.5", "p": "0", "ap": "2000.5",
              "sp": "0", "x": "TRADE", "X": "FILLED", "i": 7, "l": "0.5", "z": "0.5", "L": "2000.5", "N": "USDT",
              "n": "0.40010000", "T": 1, "t": 99, "m": False, "R": False, "wt": "CONTRACT_PRICE", "ot": "MARKET",
              "ps": "BOTH", "cp": False, "rp": "0"},
    })
    event = parse_user_event(raw)
    assert isinstance(event, OrderTradeUpdate)
    assert (event.last_filled_qty, event.last_filled_price, event.commission) == (
        Decimal("0.5"), Decimal("2000.5"), Decimal("0.40010000")
    )
    assert event.stop_price is None and event.trade_id == 99 and event.expiry_reason is None


def test_unknown_and_malformed_messages() -> None:
    assert parse_user_event(b'{"e": "SOMETHING_NEW", "E": 1}') is None
    assert parse_user_event(b'{"result": null, "id": 1}') is None
    with pytest.raises(ParseError):
        parse_user_event(b"not json")
    with pytest.raises(ParseError, match="ORDER_TRADE_UPDATE"):
        parse_user_event(b'{"e": "ORDER_TRADE_UPDATE", "E": 1, "o": {"s": "X"}}')
