"""Request authentication as the venues do it: HMAC-SHA256 keys and Aster V3 API wallets (EIP-712).

HMAC (Binance, Aster V1)
    Header ``X-MBX-APIKEY`` (missing or not 64 letters/digits: -2014; unknown: -2015, both HTTP
    401). Signed requests carry ``timestamp`` (ms), optional ``recvWindow`` (default 5000, at most
    60000) and ``signature`` = hex HMAC-SHA256(secret, totalParams), where totalParams is the raw
    query string concatenated (no ``&``) with the raw form body, ``signature`` removed; the hex is
    compared case-insensitively (-1022 on mismatch). The timestamp must satisfy
    ``timestamp < serverTime + 1000 and serverTime - timestamp <= recvWindow`` (-1021).
    USER_STREAM endpoints (listenKey) need the key only.

EIP-712 (Aster V3, ``/fapi/v3/...``)
    Parameters ``nonce`` (µs), ``signer`` (API wallet), optional ``user`` (main wallet; the
    official order demo omits it, the signer identifies the account), ``signature``. The signed
    message is the typed data ``Message{msg: string}`` of domain ``AsterSignTransaction`` v1,
    chainId 1666 (714 on testnet; :attr:`Authenticator.chain_id`), verifying contract 0x0, where
    ``msg`` is the parameter string exactly as sent without the ``signature`` parameter (query and
    body joined by ``&`` if both are used). The signer is recovered from the signature and must be
    the one registered for the account (-1022 otherwise; unknown signer or a ``user`` it does not
    belong to: -2015). The nonce must be within 10 s of server time (-1021, the V1 code: Aster
    documents no V3 code for it); the last 100 nonces of each user are kept: a reused nonce, or one
    below the oldest kept when 100 are kept, is ``{"code":-4225,"msg":"Nonce Expired"}`` (the only
    nonce error Aster documents, and the answer its own demo shows to a reused nonce).
"""

from __future__ import annotations

import bisect
import hashlib
import hmac
from collections.abc import Callable
from typing import Final, Literal

from eth_account import Account as EthAccount
from eth_account.messages import encode_typed_data

from ._accounts import Account, is_api_key
from ._errors import VenueError, invalid, missing
from actors.tools.loopback import HttpRequest

Security = Literal["SIGNED", "USER_STREAM"]

NONCE_WINDOW_US: Final = 10_000_000
NONCES_KEPT: Final = 100
MAX_RECV_WINDOW: Final = 60_000
_ZERO_ADDRESS: Final = "0x0000000000000000000000000000000000000000"


def strip_signature(raw: str) -> str:
    """``raw`` (a urlencoded parameter string) without its ``signature=...`` parameter."""
    return "&".join(part for part in raw.split("&") if part and not part.startswith("signature="))


def hmac_payload(request: HttpRequest) -> str:
    """Binance's totalParams: query string then body, concatenated, signature removed."""
    return strip_signature(request.raw_query) + strip_signature(request.body.decode("utf-8", "replace"))


def v3_message(request: HttpRequest) -> str:
    """The ``msg`` an Aster V3 client signs: the parameter string as sent, minus the signature."""
    parts = [strip_signature(request.raw_query), strip_signature(request.body.decode("utf-8", "replace"))]
    return "&".join(part for part in parts if part)


def typed_message(msg: str, chain_id: int) -> dict[str, object]:
    """The EIP-712 typed data Aster V3 signs (domain AsterSignTransaction, type Message{msg})."""
    return {
        "types": {
            "EIP712Domain": [
                {"name": "name", "type": "string"},
                {"name": "version", "type": "string"},
                {"name": "chainId", "type": "uint256"},
                {"name": "verifyingContract", "type": "address"},
            ],
            "Message": [{"name": "msg", "type": "string"}],
        },
        "primaryType": "Message",
        "domain": {
            "name": "AsterSignTransaction",
            "version": "1",
            "chainId": chain_id,
            "verifyingContract": _ZERO_ADDRESS,
        },
        "message": {"msg": msg},
    }


class Authenticator:
    """Credentials of every account and the per-user nonce memory of V3."""

    def __init__(self, server_ms: Callable[[], int], chain_id: int = 1666) -> None:
        self.server_ms = server_ms
        #: EIP-712 chainId the fake verifies V3 signatures with (1666 mainnet, 714 testnet)
        self.chain_id = chain_id
        self._by_api_key: dict[str, Account] = {}
        self._by_signer: dict[str, Account] = {}
        self._nonces: dict[int, list[int]] = {}

    def register(self, account: Account) -> None:
        if account.api_key is not None:
            if not is_api_key(account.api_key):
                raise ValueError("an API key is 64 letters and digits, as the venues issue them")
            self._by_api_key[account.api_key] = account
        if account.signer is not None:
            self._by_signer[account.signer.lower()] = account

    # -- HMAC ----------------------------------------------------------------------------------

    def hmac(self, request: HttpRequest, security: Security) -> Account:
        """The account an HMAC (Binance / Aster V1) request authenticates as, or :class:`VenueError`."""
        key = request.headers.get("x-mbx-apikey", "")
        if not is_api_key(key):
            raise VenueError(-2014)
        account = self._by_api_key.get(key)
        if account is None or account.api_secret is None:
            raise VenueError(-2015)
        if security == "USER_STREAM":
            return account
        params = request.params
        timestamp_text = params.get("timestamp", "")
        if not timestamp_text.isdigit():
            raise missing("timestamp")
        recv_text = params.get("recvWindow", "5000")
        if not recv_text.isdigit() or not 0 < int(recv_text) <= MAX_RECV_WINDOW:
            raise invalid("recvWindow")
        signature = params.get("signature", "")
        if not signature:
            raise missing("signature")
        expected = hmac.new(account.api_secret.encode(), hmac_payload(request).encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, signature.lower()):
            raise VenueError(-1022)
        self._check_timestamp(int(timestamp_text), int(recv_text))
        return account

    def _check_timestamp(self, timestamp: int, recv_window: int) -> None:
        server = self.server_ms()
        if timestamp >= server + 1000:
            raise VenueError(-1021, "Timestamp for this request was 1000ms ahead of the server's time.")
        if server - timestamp > recv_window:
            raise VenueError(-1021)

    # -- EIP-712 -------------------------------------------------------------------------------

    def eip712(self, request: HttpRequest) -> Account:
        """The account an Aster V3 request authenticates as, or :class:`VenueError`."""
        params = request.params
        for name in ("nonce", "signer", "signature"):
            if not params.get(name):
                raise missing(name)
        account = self._by_signer.get(params["signer"].lower())
        if account is None or account.signer is None:
            raise VenueError(-2015)
        user = params.get("user")
        if user is not None and (account.user is None or user.lower() != account.user.lower()):
            raise VenueError(-2015)
        if self.recover_signer(v3_message(request), params["signature"]) != account.signer.lower():
            raise VenueError(-1022)
        nonce_text = params["nonce"]
        if not nonce_text.isdigit():
            raise missing("nonce")
        self._use_nonce(account, int(nonce_text))
        return account

    def recover_signer(self, msg: str, signature: str) -> str | None:
        """Lower-case address that signed ``msg`` as Aster V3 typed data, None if unreadable."""
        try:
            raw = bytes.fromhex(signature.removeprefix("0x"))
            encoded = encode_typed_data(full_message=typed_message(msg, self.chain_id))
            return str(EthAccount.recover_message(encoded, signature=raw)).lower()
        except Exception:  # malformed hex, wrong length, invalid curve point: not a valid signature
            return None

    def _use_nonce(self, account: Account, nonce: int) -> None:
        if abs(nonce - self.server_ms() * 1000) > NONCE_WINDOW_US:
            raise VenueError(-1021)
        kept = self._nonces.setdefault(account.account_id, [])
        index = bisect.bisect_left(kept, nonce)
        if index < len(kept) and kept[index] == nonce:
            raise VenueError(-4225)  # duplicate: Aster's demo shows -4225 for a reused nonce
        if len(kept) >= NONCES_KEPT and nonce < kept[0]:
            raise VenueError(-4225)
        kept.insert(index, nonce)
        if len(kept) > NONCES_KEPT:
            del kept[0]
