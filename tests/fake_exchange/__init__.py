"""A Binance / AsterDEX futures-compatible exchange on loopback, for tests and benchmarks.

``async with open_fake_exchange(flavour="aster") as fake:`` serves REST and websockets on
``fake.rest_url`` / ``fake.ws_url`` (127.0.0.1, an ephemeral port).
"""

from ._exchange import EPOCH_BASE as EPOCH_BASE
from ._exchange import MALFORMED_FRAMES as MALFORMED_FRAMES
from ._exchange import FakeExchange as FakeExchange
from ._exchange import RequestRecord as RequestRecord
from ._exchange import WsCommand as WsCommand
from ._exchange import WsSession as WsSession
from ._exchange import open_fake_exchange as open_fake_exchange
from ._http import HttpRequest as HttpRequest
from ._http import HttpResponse as HttpResponse
from ._market import DEFAULT_SYMBOLS as DEFAULT_SYMBOLS
from ._market import SymbolSpec as SymbolSpec

__all__ = [
    "DEFAULT_SYMBOLS",
    "EPOCH_BASE",
    "MALFORMED_FRAMES",
    "FakeExchange",
    "HttpRequest",
    "HttpResponse",
    "RequestRecord",
    "SymbolSpec",
    "WsCommand",
    "WsSession",
    "open_fake_exchange",
]
