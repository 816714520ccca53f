"""The trading side's public API on :class:`FakeExchange` (a mixin): accounts, faults, scripting, inspection.

Accounts (``account`` arguments take the account or its name)::

    acct = fake.add_account("alice", wallet="10000")                  # HMAC keys generated
    acct = fake.add_account("bob", api_key=KEY, api_secret=SECRET)    # Binance / Aster V1
    acct = fake.add_account("carol", user=MAIN, signer=API_WALLET)    # Aster V3 (no private key)

Faults on writes: :meth:`fault_next` (kinds in ``_faults.py``). Behind the client's back:
:meth:`trade_externally`, :meth:`close_externally`, :meth:`cancel_as_venue`, :meth:`liquidate`,
:meth:`pay_funding`, :meth:`set_balance`, :meth:`expire_listen_key`, :meth:`drop_user_streams`.
Inspection: :meth:`orders`, :meth:`algo_orders`, :meth:`trades`, :meth:`position`,
:meth:`user_events`, :meth:`order_requests`.
"""

from __future__ import annotations

import itertools
import random
import string
from collections.abc import Callable
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Literal

from . import _scripting as scripting
from ._accounts import Account, AlgoOrder, Income, Order, Position, Side, Trade
from ._faults import WriteFaults
from ._trading import NEW_ORDER_PATHS, TradingSide

if TYPE_CHECKING:
    from ._exchange import RequestRecord

AccountRef = Account | str
_ALNUM = string.ascii_letters + string.digits


def _decimal(value: Decimal | str | int) -> Decimal:
    return value if isinstance(value, Decimal) else Decimal(str(value))


class TradingFacade:
    """Accounts, fault injection, scripting and inspection of the trading side."""

    _trading: TradingSide
    _write_faults: WriteFaults
    _account_ids: itertools.count[int]
    _key_random: random.Random
    requests: list[RequestRecord]
    _notify: Callable[[], None]

    # -- accounts ------------------------------------------------------------------------------

    def add_account(
        self,
        name: str | None = None,
        *,
        api_key: str | None = None,
        api_secret: str | None = None,
        user: str | None = None,
        signer: str | None = None,
        wallet: Decimal | str | int = "10000",
        maker_rate: Decimal | str = "0.0002",
        taker_rate: Decimal | str = "0.0004",
        leverage: int = 20,
        margin_type: Literal["ISOLATED", "CROSSED"] = "ISOLATED",
    ) -> Account:
        """Register a trading account; without credentials it gets generated HMAC keys.

        ``api_key`` / ``api_secret``: HMAC credentials (Binance, Aster V1); keys are 64 letters
        and digits as the venues issue them. ``user`` / ``signer``: an Aster V3 API wallet (the
        fake recovers the signer from each signature, so it needs no private key).
        """
        account_id = next(self._account_ids)
        if api_key is None and signer is None:
            api_key = "".join(self._key_random.choice(_ALNUM) for _ in range(64))
            api_secret = "".join(self._key_random.choice(_ALNUM) for _ in range(64))
        if (api_key is None) != (api_secret is None):
            raise ValueError("api_key and api_secret go together")
        if (signer is not None) and user is None:
            raise ValueError("an Aster V3 API wallet (signer) belongs to a user (main wallet address)")
        account = Account(
            name=name or f"account-{account_id}",
            account_id=account_id,
            wallet=_decimal(wallet),
            api_key=api_key,
            api_secret=api_secret,
            user=user,
            signer=signer,
            maker_rate=_decimal(maker_rate),
            taker_rate=_decimal(taker_rate),
            default_leverage=leverage,
            default_margin_type=margin_type,
        )
        if account.name in self._trading.engine.accounts:
            raise ValueError(f"an account named {account.name!r} exists")
        self._trading.auth.register(account)
        self._trading.engine.accounts[account.name] = account
        return account

    def account(self, ref: AccountRef) -> Account:
        return ref if isinstance(ref, Account) else self._trading.engine.accounts[ref]

    @property
    def accounts(self) -> dict[str, Account]:
        return self._trading.engine.accounts

    @property
    def chain_id(self) -> int:
        """EIP-712 chainId Aster V3 signatures are verified with (1666; 714 for the testnet)."""
        return self._trading.auth.chain_id

    @chain_id.setter
    def chain_id(self, value: int) -> None:
        self._trading.auth.chain_id = value

    @property
    def order_limits(self) -> dict[str, int]:
        """New orders allowed per account: ``{"10s": 300, "1m": 1200}`` (Binance), ``{"1m": 1200}`` (Aster)."""
        return self._trading.order_limits

    # -- faults --------------------------------------------------------------------------------

    def fault_next(
        self,
        kind: str | int,
        n: int = 1,
        *,
        path: str | None = None,
        method: str | None = None,
        placed: bool | None = None,
        status: int | None = None,
        retry_after: float | None = None,
        msg: str | None = None,
    ) -> None:
        """Apply ``kind`` to the next ``n`` matching requests (writes unless ``method`` says).

        Kinds: ``"timeout"``, ``"drop"``, ``"503"``, ``"unavailable"``, ``"5xx"``, ``"429"``,
        ``"418"`` or a venue error code (``-2021``, ``-2019``, ``-4164``, ``-1001``, ``-1007``,
        ``-1021``...). ``placed`` chooses whether the request is executed first.
        """
        self._write_faults.add(
            kind, n, path=path, method=method, placed=placed, status=status, retry_after=retry_after, msg=msg
        )

    def clear_faults(self) -> None:
        """Drop every fault still queued by :meth:`fault_next`."""
        self._write_faults.queue.clear()

    # -- behind the client's back --------------------------------------------------------------

    def trade_externally(self, account: AccountRef, symbol: str, side: Side, quantity: Decimal | str) -> Order:
        """A trader places a MARKET order in the venue's app (client id ``web_...``)."""
        return scripting.trade_externally(self._trading.engine, self.account(account), symbol, side, _decimal(quantity))

    def close_externally(self, account: AccountRef, symbol: str) -> Order | None:
        """A trader closes the whole position in the venue's app."""
        return scripting.close_externally(self._trading.engine, self.account(account), symbol)

    def cancel_as_venue(
        self,
        account: AccountRef,
        *,
        client_id: str | None = None,
        order_id: int | None = None,
        algo_id: int | None = None,
    ) -> Order | AlgoOrder:
        """The venue (or the app) cancels an open order or algo order."""
        acct = self.account(account)
        if algo_id is not None:
            algos = self._trading.algos
            assert algos is not None, "algo orders exist on the Binance flavour only"
            return algos.cancel(acct, acct.algo_orders[algo_id])
        order = acct.orders[order_id] if order_id is not None else acct.order_by_client_id(client_id or "")
        if order is None:
            raise KeyError(f"no order {client_id or order_id!r} on {acct.name}")
        return self._trading.engine.cancel(acct, order)

    def liquidate(self, account: AccountRef, symbol: str, price: Decimal | str | None = None) -> Order | None:
        """The venue liquidates the position (at the bankruptcy price unless ``price``)."""
        fill = None if price is None else _decimal(price)
        return scripting.liquidate(self._trading.engine, self.account(account), symbol, fill)

    def pay_funding(self, account: AccountRef, symbol: str, rate: Decimal | str | None = None) -> Decimal:
        """Settle funding on the position of ``symbol``; returns what the account received."""
        return scripting.pay_funding(
            self._trading.engine, self.account(account), symbol, None if rate is None else _decimal(rate)
        )

    def set_balance(self, account: AccountRef, wallet: Decimal | str | int) -> None:
        """Transfer so that the account's wallet balance becomes ``wallet``."""
        scripting.set_balance(self._trading.engine, self.account(account), _decimal(wallet))

    def expire_listen_key(self, account: AccountRef) -> None:
        """Expire the account's listen key now: ``listenKeyExpired``, then -1125 on PUT."""
        self._trading.streams.expire(self.account(account))

    def drop_user_streams(self) -> int:
        """Abort every user-data websocket. Returns how many."""
        return self._trading.streams.drop_all()

    # -- inspection ----------------------------------------------------------------------------

    def orders(self, account: AccountRef, *, client_id: str | None = None, symbol: str | None = None) -> list[Order]:
        """Every order of the account (open or not), oldest first, optionally by client id / symbol."""
        return [
            o
            for o in self.account(account).orders.values()
            if (client_id is None or o.client_id == client_id) and (symbol is None or o.symbol == symbol)
        ]

    def open_orders(self, account: AccountRef, symbol: str | None = None) -> list[Order]:
        return self.account(account).open_orders(symbol)

    def algo_orders(self, account: AccountRef, *, client_algo_id: str | None = None) -> list[AlgoOrder]:
        return [a for a in self.account(account).algo_orders.values() if client_algo_id in (None, a.client_algo_id)]

    def trades(self, account: AccountRef, symbol: str | None = None) -> list[Trade]:
        return [t for t in self.account(account).trades if symbol in (None, t.symbol)]

    def income(self, account: AccountRef, income_type: str | None = None) -> list[Income]:
        return [e for e in self.account(account).income if income_type in (None, e.income_type)]

    def position(self, account: AccountRef, symbol: str) -> Position:
        return self.account(account).position(symbol)

    def listen_key(self, account: AccountRef) -> str | None:
        """The account's active listen key, if any."""
        key = self.account(account).listen_key
        return key.key if key is not None and key.active else None

    def user_events(self, account: AccountRef, event_type: str | None = None) -> list[dict[str, Any]]:
        """Every user-data event produced for the account (whether or not a websocket was there)."""
        return [e for e in self.account(account).events if event_type in (None, e.get("e"))]

    def order_requests(self, client_id: str | None = None) -> list[RequestRecord]:
        """New-order requests that reached the venue (POST order / algoOrder), by client id if given."""
        return [
            r
            for r in self.requests
            if r.method == "POST"
            and r.path in NEW_ORDER_PATHS
            and (client_id is None or client_id in (r.query.get("newClientOrderId"), r.query.get("clientAlgoId")))
        ]
