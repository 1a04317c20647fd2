"""Parsing list parameters that arrive as a KFP list, a JSON list or a plain string."""

import json

from kubetfx.components.common.errors import ConfigError


def string_list(value, name: str, split, example: str) -> list[str] | None:
    """``value`` as a list of strings; None when unset. ``split`` cuts a plain (non-JSON) string."""
    if value is None or value == "" or value == []:
        return None
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                value = json.loads(text)
            except json.JSONDecodeError as err:
                raise ConfigError(f"{name}: not a valid JSON list ({err})") from None
        else:
            value = split(text)
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(f"{name} must be a list of strings like {example}, got {value!r}")
    return list(value)
