"""``execd credentials``: manage the encrypted venue credentials of the service database.

    execd credentials set ACCOUNT --venue V [--user ADDR --signer ADDR] [--db FILE | --settings FILE]
    execd credentials list [--db FILE | --settings FILE]
    execd credentials delete ACCOUNT --venue V [--db FILE | --settings FILE]

Secrets are never taken from the command line (argv is visible to every user of the machine and
kept in shell history): ``set`` prompts without echo on a terminal, or reads stdin otherwise --
the API key and then the secret, one per line (HMAC), or the API-wallet private key (with
``--user`` and ``--signer``, AsterDEX V3). The master key comes from ``EXECD_MASTER_KEY``.

Wire it into the main parser with :func:`add_credentials_parser`; it sets ``fn`` to
:func:`run_credentials_cli`.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import TextIO

from actors.venues.credentials import (
    ApiWalletCredentials,
    CredentialsError,
    CredentialStore,
    Credentials,
    HmacCredentials,
    master_key_from_env,
)
from actors.venues.profiles import PROFILES

__all__ = ["add_credentials_parser", "run_credentials_cli"]


def add_credentials_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    """Add ``credentials {set,list,delete}`` to ``subparsers``; returns the new parser."""
    common = argparse.ArgumentParser(add_help=False)
    where = common.add_mutually_exclusive_group()
    where.add_argument("--db", help="service database file (default: the settings' database.path)")
    where.add_argument("--settings", help="settings file whose database to use")

    parser = subparsers.add_parser("credentials", help="manage encrypted venue credentials (EXECD_MASTER_KEY)")
    commands = parser.add_subparsers(dest="credentials_command", required=True)

    p = commands.add_parser(
        "set",
        parents=[common],
        help="store the credentials of an account (secrets from a hidden prompt or stdin)",
        description="HMAC (Binance, AsterDEX V1): API key then secret. AsterDEX V3: --user and --signer, "
        "then the API-wallet private key. Read without echo on a terminal, else one per line from stdin.",
    )
    p.add_argument("account")
    p.add_argument("--venue", required=True, choices=sorted(PROFILES))
    p.add_argument("--user", help="AsterDEX V3: main wallet address")
    p.add_argument("--signer", help="AsterDEX V3: API wallet address")

    commands.add_parser("list", parents=[common], help="list stored credentials (masked)")

    p = commands.add_parser("delete", parents=[common], help="delete the stored credentials of an account")
    p.add_argument("account")
    p.add_argument("--venue", required=True, choices=sorted(PROFILES))

    parser.set_defaults(fn=run_credentials_cli)
    return parser


def run_credentials_cli(
    args: argparse.Namespace,
    *,
    env: Mapping[str, str] | None = None,
    stdin: TextIO | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
    prompt: Callable[[str], str] = getpass.getpass,
) -> int:
    """Run ``execd credentials ...``; returns the exit status (0 ok, 1 error, 2 bad usage)."""
    stdin = stdin or sys.stdin
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    try:
        path = _database_path(args, env)
        if args.credentials_command == "set":
            credentials = _read_credentials(args, stdin, prompt)
            store = CredentialStore.open(path, master_key_from_env(env))
            try:
                store.put(args.account, args.venue, credentials)
            finally:
                store.close()
            print(
                f"stored {credentials.kind} credentials of account {args.account} on {args.venue} "
                f"(key {credentials.key_id})",
                file=stdout,
            )
            return 0
        if args.credentials_command == "list":
            key = _optional_master_key(env)
            store = CredentialStore.open(path, key)
            try:
                entries = store.entries()
            finally:
                store.close()
            if not entries:
                print("(no stored credentials)", file=stdout)
            for entry in entries:
                created = datetime.fromtimestamp(entry.created_at, UTC).strftime("%Y-%m-%d %H:%M:%SZ")
                detail = entry.error or (f"{entry.kind} key {entry.key_id}" if entry.key_id else "(encrypted)")
                print(f"{entry.account_id}  {entry.venue}  {created}  {detail}", file=stdout)
            return 0
        store = CredentialStore.open(path, None)
        try:
            deleted = store.delete(args.account, args.venue)
        finally:
            store.close()
        if not deleted:
            print(f"execd: no stored credentials for account {args.account} on {args.venue}", file=stderr)
            return 1
        print(f"deleted the credentials of account {args.account} on {args.venue}", file=stdout)
        return 0
    except _UsageError as exc:
        print(f"execd credentials: {exc}", file=stderr)
        return 2
    except (CredentialsError, ValueError, OSError) as exc:
        print(f"execd: {exc}", file=stderr)
        return 1


class _UsageError(Exception):
    pass


def _database_path(args: argparse.Namespace, env: Mapping[str, str] | None) -> str:
    if args.db:
        return str(args.db)
    from actors.settings import SettingsError, load_settings

    try:
        settings = load_settings(args.settings, env=dict(env) if env is not None else None)
    except SettingsError as exc:
        raise _UsageError(f"cannot find the database: {exc} (or pass --db)") from None
    return settings.database.path


def _optional_master_key(env: Mapping[str, str] | None) -> str | None:
    try:
        return master_key_from_env(env)
    except CredentialsError:
        return None  # list without key ids


def _read_credentials(args: argparse.Namespace, stdin: TextIO, prompt: Callable[[str], str]) -> Credentials:
    wallet = args.user is not None or args.signer is not None
    if wallet and (args.user is None or args.signer is None):
        raise _UsageError("--user and --signer go together (AsterDEX V3 API wallet)")
    if wallet and PROFILES[args.venue].family != "asterdex":
        raise _UsageError(f"{args.venue} does not use API wallets; omit --user/--signer")
    interactive = stdin.isatty()

    def secret(label: str) -> str:
        if interactive:
            return prompt(f"{label}: ")
        line = stdin.readline()
        if not line.strip():
            raise _UsageError(f"expected the {label} on stdin (one value per line)")
        return line.strip()

    if wallet:
        return ApiWalletCredentials(args.user, args.signer, secret("API wallet private key"))
    return HmacCredentials(secret("API key"), secret("API secret"))
