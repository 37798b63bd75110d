"""The long-lived objects of one process (web app or worker), built once from settings."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import create_engine
from sqlalchemy.engine import Engine
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from byodb.assistant import ChatModel, chat_model_from_settings
from byodb.assistant.embeddings import EmbeddingModel, embedding_model_from_settings
from byodb.instances.guard import Resolver, system_resolver
from byodb.maindb.urls import async_url, sync_url
from byodb.routing import Router
from byodb.settings import Settings
from byodb.vault import Vault
from byodb.vault.keys import load_key_ring


@dataclass
class Runtime:
    settings: Settings
    main_url: str
    main: AsyncEngine
    vault: Vault
    router: Router
    chat_model: ChatModel
    resolver: Resolver
    embedder: EmbeddingModel

    def main_sync_engine(self) -> Engine:
        """A pool-less sync engine on main, for thread-bound work (data moves)."""
        return create_engine(sync_url(self.main_url), poolclass=NullPool)

    async def close(self) -> None:
        await self.router.close()
        await self.main.dispose()


def build_runtime(settings: Settings, main_url: str, *,
                  resolver: Resolver = system_resolver,
                  chat_model: ChatModel | None = None,
                  embedder: EmbeddingModel | None = None) -> Runtime:
    main = create_async_engine(async_url(main_url), pool_size=10, max_overflow=10)
    vault = Vault(load_key_ring(settings))
    router = Router(main, vault, settings, resolver)
    return Runtime(
        settings=settings,
        main_url=main_url,
        main=main,
        vault=vault,
        router=router,
        chat_model=chat_model or chat_model_from_settings(settings),
        resolver=resolver,
        embedder=embedder or embedding_model_from_settings(settings),
    )
