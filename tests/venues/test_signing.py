"""Request signing: Binance's published HMAC example and Aster V3 EIP-712 signatures."""

from __future__ import annotations

from urllib.parse import parse_qsl

import pytest

from actors.venues.signing import (
    NonceSequence,
    api_wallet_signature,
    encode_params,
    hmac_signature,
    recover_api_wallet_signer,
    sign_api_wallet_params,
    sign_hmac_params,
    signer_address,
    strip_signature,
)

# Binance's published example (USDⓈ-M "SIGNED Endpoint Examples for POST /fapi/v1/order")
EXAMPLE_SECRET = "2b5eb11e18796d12d88f13dc27dbbd02c2cc51ff7059765ed9821957d82bb4d9"
EXAMPLE_PARAMS = [
    ("symbol", "BTCUSDT"),
    ("side", "BUY"),
    ("type", "LIMIT"),
    ("quantity", "1"),
    ("price", "9000"),
    ("timeInForce", "GTC"),
    ("recvWindow", "5000"),
    ("timestamp", "1591702613943"),
]
EXAMPLE_SIGNATURE = "3c661234138461fcc7a7d8746c6558c9842d4e10870d2ecbedf7777cad694af9"

# a throwaway key made up for the tests
SIGNER_KEY = "0x" + "1f" * 32
USER = "0x63DD5aCC6b1aa0f563956C0e534DD30B6dcF7C4e"


def test_binance_published_hmac_example() -> None:
    total = encode_params(EXAMPLE_PARAMS)
    assert total == (
        "symbol=BTCUSDT&side=BUY&type=LIMIT&quantity=1&price=9000&timeInForce=GTC&recvWindow=5000&timestamp=1591702613943"
    )
    assert hmac_signature(EXAMPLE_SECRET, total) == EXAMPLE_SIGNATURE
    assert sign_hmac_params(EXAMPLE_PARAMS, EXAMPLE_SECRET) == f"{total}&signature={EXAMPLE_SIGNATURE}"


def test_hmac_covers_the_exact_encoded_string() -> None:
    # the signature is over what is sent: percent-encoding included, order kept
    params = [("symbol", "BTCUSDT"), ("newClientOrderId", "a:b/c"), ("timestamp", "1")]
    signed = sign_hmac_params(params, EXAMPLE_SECRET)
    assert signed.startswith("symbol=BTCUSDT&newClientOrderId=a%3Ab%2Fc&timestamp=1&signature=")
    assert signed.endswith(hmac_signature(EXAMPLE_SECRET, "symbol=BTCUSDT&newClientOrderId=a%3Ab%2Fc&timestamp=1"))
    assert strip_signature(signed) == "symbol=BTCUSDT&newClientOrderId=a%3Ab%2Fc&timestamp=1"


@pytest.mark.parametrize("chain_id", [1666, 714])
def test_api_wallet_signature_recovers_to_the_signer(chain_id: int) -> None:
    signer = signer_address(SIGNER_KEY)
    encoded = sign_api_wallet_params(
        [("symbol", "ASTERUSDT"), ("side", "BUY"), ("type", "MARKET"), ("quantity", "20")],
        nonce=1_748_310_859_508_867,
        user=USER,
        signer=signer,
        signer_key=SIGNER_KEY,
        chain_id=chain_id,
    )
    msg, _, tail = encoded.rpartition("&signature=")
    # business params first, then nonce, user, signer, then the signature
    assert [k for k, _ in parse_qsl(encoded)] == ["symbol", "side", "type", "quantity", "nonce", "user", "signer", "signature"]
    assert msg == strip_signature(encoded)
    assert tail.startswith("0x") and len(tail) == 2 + 65 * 2
    assert recover_api_wallet_signer(msg, tail, chain_id) == signer
    # another chain id or another message recovers to someone else
    assert recover_api_wallet_signer(msg, tail, 1 if chain_id != 1 else 2) != signer
    assert recover_api_wallet_signer(msg + "&x=1", tail, chain_id) != signer


def test_api_wallet_signature_is_deterministic() -> None:
    assert api_wallet_signature(SIGNER_KEY, "a=1", 1666) == api_wallet_signature(SIGNER_KEY, "a=1", 1666)
    assert api_wallet_signature(SIGNER_KEY, "a=1", 1666) != api_wallet_signature(SIGNER_KEY, "a=2", 1666)


def test_nonces_strictly_increase_even_when_the_clock_does_not() -> None:
    nonces = NonceSequence()
    assert [nonces.next(t) for t in (1_000, 1_000, 999, 2_000, 1_500)] == [1_000, 1_001, 1_002, 2_000, 2_001]
