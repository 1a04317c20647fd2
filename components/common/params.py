"""Parsing list parameters that arrive as a KFP list, a JSON list or a plain string."""

import json

from kubetfx.components.common.errors import ConfigError


def string_list(value, name: str, split, example: str) -> list[str] | None:
    """``value`` as a list of strings; None when unset. ``split`` cuts a plain (non-JSON) string."""
    if value is None or value == "" or value == []:
        return None
    if isinstance(value, str):
        value = json_list_or_split(value, name, split)
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(f"{name} must be a list of strings like {example}, got {value!r}")
    return list(value)


def json_list_or_split(text: str, name: str, split, bad_json: str = "{name}: not a valid JSON list ({reason})") -> list:
    """A JSON list (text starting with ``[``) parsed, else ``split(text)``; bad JSON raises ``bad_json``
    filled in with the parameter's name and the parser's reason."""
    text = text.strip()
    if not text.startswith("["):
        return split(text)
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise ConfigError(bad_json.format(name=name, reason=err)) from None
