"""Request signing of the venues' two authentication schemes. Pure: no I/O, no clock.

**HMAC-SHA256** (Binance USDⓈ-M, AsterDEX V1): ``signature`` is the hex HMAC-SHA256, keyed with
the API secret, of ``totalParams`` -- the exact query string and form body that are sent -- and
is appended last. The client sends the parameters of a request in one place only (the query
string of a GET/DELETE, the form body of a POST/PUT), so ``totalParams`` is that one string.

**EIP-712 API wallet** (AsterDEX V3): the signer (API-wallet) key signs the typed data
``Message{msg: string}`` in the domain ``{name: "AsterSignTransaction", version: "1", chainId,
verifyingContract: 0x0…0}``, where ``msg`` is the urlencoded parameter string that is sent. The
official pages disagree on which auth parameters go into ``msg`` and in which order (the order
demo appends ``nonce`` and ``signer`` only, the Noop demo appends ``nonce``, ``user``,
``signer``, CCXT prepends them). We send the business parameters, then ``nonce``, ``user`` and
``signer``, exactly as the Noop demo and every explicit message template of the V3 doc do
(``...&nonce={nonce}&user={user}&signer={signer}``); ``user`` is kept because the doc's table of
authentication parameters lists it and it names the account unambiguously. Whatever the server
does, it can only verify the string it receives, and ``msg`` is byte for byte that string. The
signature is sent as ``0x``-prefixed hex of the 65-byte ``r‖s‖v``, as the official demo (written
for hexbytes < 1.0, whose ``hex()`` kept the prefix) does.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from typing import Any, Final
from urllib.parse import urlencode

# eth-account (and the curve arithmetic it precomputes) loads with the first API-wallet signature:
# half a second of start-up that HMAC-only and paper services do not pay

__all__ = [
    "ASTER_SIGNING_DOMAIN",
    "NonceSequence",
    "api_wallet_signature",
    "aster_typed_data",
    "encode_params",
    "hmac_signature",
    "recover_api_wallet_signer",
    "sign_api_wallet_params",
    "sign_hmac_params",
    "signer_address",
    "strip_signature",
]

Params = Sequence[tuple[str, str]]

#: the EIP-712 domain of Aster's V3 API signatures (``chainId`` is per network)
ASTER_SIGNING_DOMAIN: Final = {
    "name": "AsterSignTransaction",
    "version": "1",
    "verifyingContract": "0x0000000000000000000000000000000000000000",
}

_EIP712_TYPES: Final = {
    "EIP712Domain": [
        {"name": "name", "type": "string"},
        {"name": "version", "type": "string"},
        {"name": "chainId", "type": "uint256"},
        {"name": "verifyingContract", "type": "address"},
    ],
    "Message": [{"name": "msg", "type": "string"}],
}


def encode_params(params: Params) -> str:
    """``k=v&k=v`` in the given order, form-urlencoded (what is sent, and what is signed)."""
    return urlencode(list(params))


def hmac_signature(secret: str, total_params: str) -> str:
    """Hex HMAC-SHA256 of ``total_params`` keyed with ``secret``."""
    return hmac.new(secret.encode(), total_params.encode(), hashlib.sha256).hexdigest()


def sign_hmac_params(params: Params, secret: str) -> str:
    """The parameter string to send: ``params`` urlencoded, then ``&signature=<hex>``."""
    total = encode_params(params)
    signature = hmac_signature(secret, total)
    return f"{total}&signature={signature}" if total else f"signature={signature}"


def aster_typed_data(msg: str, chain_id: int) -> dict[str, Any]:
    """The full EIP-712 typed data that an Aster V3 signature covers."""
    return {
        "types": _EIP712_TYPES,
        "primaryType": "Message",
        "domain": {**ASTER_SIGNING_DOMAIN, "chainId": chain_id},
        "message": {"msg": msg},
    }


def api_wallet_signature(signer_key: str, msg: str, chain_id: int) -> str:
    """``0x``-prefixed hex signature (r‖s‖v) of ``msg`` by the API-wallet key."""
    from eth_account import Account
    from eth_account.messages import encode_typed_data

    signed = Account.sign_message(encode_typed_data(full_message=aster_typed_data(msg, chain_id)), private_key=signer_key)
    return "0x" + bytes(signed.signature).hex()


def recover_api_wallet_signer(msg: str, signature: str, chain_id: int) -> str:
    """The checksummed address that produced ``signature`` over ``msg`` (verification side)."""
    from eth_account import Account
    from eth_account.messages import encode_typed_data

    return str(Account.recover_message(encode_typed_data(full_message=aster_typed_data(msg, chain_id)), signature=signature))


def signer_address(signer_key: str) -> str:
    """The checksummed address of an API-wallet private key."""
    from eth_account import Account

    return str(Account.from_key(signer_key).address)


def sign_api_wallet_params(
    params: Params, *, nonce: int, user: str, signer: str, signer_key: str, chain_id: int
) -> str:
    """The parameter string to send: business params, ``nonce``, ``user``, ``signer``, then
    ``signature`` (see the module docstring for why this set and this order)."""
    msg = encode_params([*params, ("nonce", str(nonce)), ("user", user), ("signer", signer)])
    return f"{msg}&signature={api_wallet_signature(signer_key, msg, chain_id)}"


def strip_signature(encoded: str) -> str:
    """``encoded`` without its ``signature`` parameter (for logs and verification)."""
    return "&".join(part for part in encoded.split("&") if not part.startswith("signature="))


class NonceSequence:
    """Strictly increasing microsecond nonces (Aster V3 refuses a nonce it has already seen).

    Pure: the caller passes the current (server-corrected) time in microseconds.
    """

    def __init__(self) -> None:
        self._last = 0

    def next(self, now_us: int) -> int:
        self._last = max(now_us, self._last + 1)
        return self._last
