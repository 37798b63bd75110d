"""Your data, portable: the export archive (``export``) and imports from byodb exports,
ChatGPT and Claude (``imports``). The format is documented in docs/export-format.md."""
