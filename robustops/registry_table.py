"""The one insertion rule of robustops' name registries (datasets, model families,
objectives): an entry of the registry's type, under a name not taken yet."""
from __future__ import annotations

from typing import Dict, TypeVar

Entry = TypeVar("Entry")


def add_entry(table: Dict[str, Entry], entry: Entry, entry_type: type, kind: str,
              register: str) -> Entry:
    """table[entry.name] = entry; TypeError unless entry is an `entry_type`, ValueError when
    the name is taken (kind names what is registered, register the public function)."""
    if not isinstance(entry, entry_type):
        raise TypeError(f"{register} takes a {entry_type.__name__}, got {type(entry).__name__}")
    if entry.name in table:
        raise ValueError(f"{kind} {entry.name!r} is registered already")
    table[entry.name] = entry
    return entry
