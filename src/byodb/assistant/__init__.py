"""Model providers behind small interfaces: chat replies (and, later, embeddings)."""

from byodb.assistant.chat import ChatModel, ChatTurn, OfflineChatModel, chat_model_from_settings

__all__ = ["ChatModel", "ChatTurn", "OfflineChatModel", "chat_model_from_settings"]
