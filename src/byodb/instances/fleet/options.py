"""What an operator (or the automatic rollout) asks of a fleet run, checked before anything
is written."""

from __future__ import annotations

from dataclasses import dataclass

from byodb.errors import InvalidInput


@dataclass(frozen=True)
class RunOptions:
    to_version: int
    canary: int = 0
    concurrency: int = 20
    per_host: int = 4
    max_failure_ratio: float = 0.1
    dry_run: bool = False
    started_by: str = "operator"

    def check(self, supported: range) -> None:
        """Refuse options that make no sense, naming the field (nothing is written)."""
        if self.to_version not in supported:
            raise InvalidInput(f"to_version must be between {supported.start} and "
                               f"{supported.stop - 1} (the versions this release supports)")
        if self.canary < 0:
            raise InvalidInput("canary must be 0 or more")
        if self.concurrency < 1 or self.per_host < 1:
            raise InvalidInput("concurrency and per_host must be at least 1")
        if not 0.0 <= self.max_failure_ratio <= 1.0:
            raise InvalidInput("max_failure_ratio must be between 0 and 1")
