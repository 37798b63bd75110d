"""Durable background jobs on the main database's queue (procrastinate)."""
