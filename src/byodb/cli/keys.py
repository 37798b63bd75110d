"""``byodb keygen`` and ``byodb rotate-key``: the encryption key of stored credentials."""

from __future__ import annotations

import asyncio
import json

import typer
from sqlalchemy.ext.asyncio import create_async_engine

from byodb.cli.common import JsonOption, checked_settings, fail, start_main
from byodb.errors import ByodbError
from byodb.instances.lifecycle.config_store import rotate_credentials
from byodb.maindb.urls import async_url
from byodb.vault import Vault, generate_key_hex
from byodb.vault.keys import load_key_ring

commands = typer.Typer()


@commands.command()
def keygen() -> None:
    """Print a new encryption key (64 hex characters) for BYOD_ENCRYPTION_KEY."""

    typer.echo(generate_key_hex())


@commands.command("rotate-key")
def rotate_key(as_json: JsonOption = False) -> None:
    """Re-encrypt stored credentials with the current BYOD_ENCRYPTION_KEY (online).

    Put the old key in BYOD_PREVIOUS_ENCRYPTION_KEYS so existing ciphertexts still open.
    """

    settings = checked_settings()
    url, share = start_main(settings)

    async def run() -> int:

        engine = create_async_engine(async_url(url))
        try:
            return await rotate_credentials(engine, Vault(load_key_ring(settings)))
        finally:
            await engine.dispose()

    try:
        count = asyncio.run(run())
    except ByodbError as exc:
        fail(exc.message)
    finally:
        if share is not None:
            share.release()
    if as_json:
        typer.echo(json.dumps({"reencrypted": count}))
    else:
        typer.echo(f"re-encrypted {count} credential(s)")
