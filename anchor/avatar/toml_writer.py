"""A tiny TOML writer for avatar manifests (scalars, lists of scalars, nested tables).

The standard library reads TOML but cannot write it, and the manifest needs nothing fancier.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Any

_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def _key(k: str) -> str:
    return k if _BARE_KEY.match(k) else json.dumps(k, ensure_ascii=False)


def _value(v: Any, where: str) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str):
        # JSON string escapes are valid TOML basic-string escapes.
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, list | tuple):
        return "[" + ", ".join(_value(x, where) for x in v) + "]"
    if v is None:
        raise TypeError(f"{where}: TOML has no null")
    raise TypeError(f"{where}: cannot write {type(v).__name__} as TOML")


def dumps(data: Mapping[str, Any]) -> str:
    """TOML text for a nested mapping; scalars of a table come before its sub-tables."""
    lines: list[str] = []

    def table(d: Mapping[str, Any], prefix: list[str]) -> None:
        # None has no TOML form: the key is left out, and loading gives the field its default
        scalars = [(k, v) for k, v in d.items() if not isinstance(v, Mapping) and v is not None]
        subtables = [(k, v) for k, v in d.items() if isinstance(v, Mapping)]
        if prefix and (scalars or not subtables):
            if lines:
                lines.append("")
            lines.append("[" + ".".join(_key(p) for p in prefix) + "]")
        for k, v in scalars:
            lines.append(f"{_key(k)} = {_value(v, '.'.join([*prefix, k]))}")
        for k, v in subtables:
            table(v, [*prefix, k])

    table(data, [])
    return "\n".join(lines) + "\n"
