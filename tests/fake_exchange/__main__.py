"""Run the fake exchange as a process: ``python -m tests.fake_exchange [options]``.

Prints one JSON line ``{"rest_url": ..., "ws_url": ..., "accounts": {...}}`` once it listens, then
serves until interrupted. ``--account NAME`` (repeatable) registers a funded trading account with
generated HMAC keys, printed in ``accounts`` (test credentials of a fake venue, nothing real).

Useful to point a local service at a fake venue.
"""

from __future__ import annotations

import argparse
import sys

import msgspec
import trio

from ._exchange import open_fake_exchange


def _print_json(payload: object) -> None:
    sys.stdout.write(msgspec.json.encode(payload).decode() + "\n")
    sys.stdout.flush()


async def serve(args: argparse.Namespace) -> None:
    async with open_fake_exchange(flavour=args.flavour, host=args.host, port=args.port) as fake:
        if args.tick:
            fake.start_ticker(args.tick)
        accounts = {}
        for name in args.account:
            account = fake.add_account(name, wallet=args.wallet)
            accounts[name] = {"api_key": account.api_key, "api_secret": account.api_secret}
        _print_json({"rest_url": fake.rest_url, "ws_url": fake.ws_url, "accounts": accounts})
        await trio.sleep_forever()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.fake_exchange", description=__doc__.splitlines()[0])
    parser.add_argument("--flavour", choices=["aster", "binance"], default="aster")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0: an ephemeral port")
    parser.add_argument("--tick", type=float, default=0.0, help="push every symbol every N seconds")
    parser.add_argument("--account", action="append", default=[], help="register a trading account (HMAC keys)")
    parser.add_argument("--wallet", default="10000", help="USDT wallet balance of each --account")
    args = parser.parse_args(argv)
    try:
        trio.run(serve, args)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
