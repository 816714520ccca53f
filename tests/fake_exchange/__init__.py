"""A Binance / AsterDEX futures-compatible exchange on loopback, for tests and benchmarks.

``async with open_fake_exchange(flavour="aster") as fake:`` serves REST and websockets on
``fake.rest_url`` / ``fake.ws_url`` (127.0.0.1, an ephemeral port): public market data, and a
trading side (accounts, signed endpoints, matching, positions, Binance algo orders, user-data
streams, faults on writes). See ``_exchange.py`` for the map of the modules.
"""

from ._accounts import Account as Account
from ._accounts import AlgoOrder as AlgoOrder
from ._accounts import Income as Income
from ._accounts import Order as Order
from ._accounts import Position as Position
from ._accounts import Trade as Trade
from ._exchange import EPOCH_BASE as EPOCH_BASE
from ._exchange import MALFORMED_FRAMES as MALFORMED_FRAMES
from ._exchange import FakeExchange as FakeExchange
from ._exchange import RequestRecord as RequestRecord
from ._exchange import WsCommand as WsCommand
from ._exchange import WsSession as WsSession
from ._exchange import open_fake_exchange as open_fake_exchange
from ._faults import KINDS as FAULT_KINDS
from actors.tools.loopback import HttpRequest as HttpRequest
from actors.tools.loopback import HttpResponse as HttpResponse
from actors.tools.venue_market import DEFAULT_SYMBOLS as DEFAULT_SYMBOLS
from actors.tools.venue_market import SymbolSpec as SymbolSpec

__all__ = [
    "DEFAULT_SYMBOLS",
    "EPOCH_BASE",
    "FAULT_KINDS",
    "MALFORMED_FRAMES",
    "Account",
    "AlgoOrder",
    "FakeExchange",
    "HttpRequest",
    "HttpResponse",
    "Income",
    "Order",
    "Position",
    "RequestRecord",
    "SymbolSpec",
    "Trade",
    "WsCommand",
    "WsSession",
    "open_fake_exchange",
]
