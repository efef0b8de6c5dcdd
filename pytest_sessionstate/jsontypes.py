"""The types of documents and updates, for users who annotate their code.

``update_json`` takes a mapping of dot paths (``str``) or segment tuples to
values.  A plain ``Mapping[str | tuple[str, ...], Any]`` would refuse a
``dict[str, Any]`` under ``mypy --strict`` (a mapping's key type is invariant),
so :data:`Updates` is a protocol whose key type is covariant: ``dict[str, Any]``,
``dict[tuple[str, str], int]`` and mixed mappings all fit.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, Protocol, TypeVar

__all__ = ["DotPath", "JSONObject", "Updates", "UpdatesMapping"]

#: A JSON object as read and written: ``str`` keys, JSON values.
JSONObject = dict[str, Any]

#: One update's key: a dot path (``"a.b"``, ``\\.`` for a literal dot) or a tuple of segments.
DotPath = str | tuple[str, ...]

_K_co = TypeVar("_K_co", covariant=True)


class UpdatesMapping(Protocol[_K_co]):
    """The part of :class:`~collections.abc.Mapping` that an update mapping needs."""

    def __iter__(self) -> Iterator[_K_co]: ...

    def __len__(self) -> int: ...

    def items(self) -> Iterable[tuple[_K_co, Any]]: ...


#: What ``update_json`` accepts: any mapping whose keys are dot paths or segment tuples.
Updates = UpdatesMapping[DotPath]
