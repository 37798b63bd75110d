"""byodb: each user's chat content on a PostgreSQL database they own."""

__version__ = "0.1.0"
