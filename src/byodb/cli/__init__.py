"""The ``byodb`` command."""
