"""A value that must never be printed: ``repr``/``str`` are redacted, unwrap explicitly."""

from __future__ import annotations

from typing import Generic, TypeVar

T = TypeVar("T")


class Secret(Generic[T]):
    """Holds a secret. Only :meth:`reveal` returns it, at the line that needs it."""

    __slots__ = ("_value",)

    def __init__(self, value: T):
        self._value = value

    def reveal(self) -> T:
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __reduce__(self) -> str | tuple[object, ...]:
        # Refuse pickling so a secret never lands in a job payload or cache by accident.
        raise TypeError("Secret values cannot be pickled")
