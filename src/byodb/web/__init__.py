"""The FastAPI app: JSON API, server-rendered pages, auth."""
