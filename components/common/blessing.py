"""Blessing markers: the Evaluator's and InfraValidator's verdict on a model, TFX-compatible.

A ModelBlessing artifact directory holds an empty marker file ``BLESSED`` or
``NOT_BLESSED`` (an InfraBlessing: ``INFRA_BLESSED`` / ``INFRA_NOT_BLESSED``),
exactly as TFX writes them, so TFX tools read our artifacts. Beside the marker,
``blessing.json`` records why: ``{"kind": "model"|"infra", "blessed": bool,
"reasons": [str, ...], "details": {...}}``.

``write_blessing`` writes ``blessing.json`` first and the marker last, each by an
atomic rename: a reader that sees a marker also sees its reasons.
"""

import json
import os
from dataclasses import dataclass, field

from kubetfx.components.common import fileio
from kubetfx.components.common.errors import ConfigError

BLESSED = "BLESSED"
NOT_BLESSED = "NOT_BLESSED"
INFRA_BLESSED = "INFRA_BLESSED"
INFRA_NOT_BLESSED = "INFRA_NOT_BLESSED"
BLESSING_FILE = "blessing.json"

_MARKERS = {"model": (BLESSED, NOT_BLESSED), "infra": (INFRA_BLESSED, INFRA_NOT_BLESSED)}
_PRODUCER = {"model": "the Evaluator", "infra": "the InfraValidator"}


@dataclass
class Blessing:
    """A verdict read back from a blessing directory."""

    kind: str  # "model" or "infra"
    blessed: bool
    reasons: list[str] = field(default_factory=list)
    details: dict = field(default_factory=dict)
    directory: str = ""


def _kind(infra: bool) -> str:
    return "infra" if infra else "model"


def write_blessing(directory: str, blessed: bool, reasons=(), *, infra: bool = False,
                   details: dict | None = None) -> Blessing:
    """Write a (model or infra) verdict into ``directory`` (created if missing).

    ``reasons``: one string or a list of human-readable sentences (why blessed / why not).
    ``details``: any JSON-serializable extras (metric values, thresholds, baseline version).
    Refuses to write the opposite verdict over an existing one.
    """
    kind = _kind(infra)
    positive, negative = _MARKERS[kind]
    marker, opposite = (positive, negative) if blessed else (negative, positive)
    if isinstance(reasons, str):
        reasons = [reasons]
    reasons = [str(reason) for reason in reasons]
    os.makedirs(directory, exist_ok=True)
    if os.path.exists(os.path.join(directory, opposite)):
        raise ConfigError(f"{directory} already holds {opposite}; refusing to also mark it {marker}")
    record = {"kind": kind, "blessed": bool(blessed), "reasons": reasons, "details": details or {}}
    fileio.atomic_write(os.path.join(directory, BLESSING_FILE), json.dumps(record, indent=2, sort_keys=True) + "\n")
    fileio.atomic_write(os.path.join(directory, marker), b"")
    return Blessing(kind, bool(blessed), reasons, details or {}, directory)


def read_blessing(directory: str, *, infra: bool = False) -> Blessing:
    """The verdict in ``directory``; ConfigError naming it if it has no (or both) markers.

    Reasons come from ``blessing.json`` when present ("reasons" list or "message"
    string); an unreadable ``blessing.json`` does not change the verdict, the
    problem is reported as a reason instead.
    """
    kind = _kind(infra)
    positive, negative = _MARKERS[kind]
    if not directory:
        raise ConfigError(f"no {kind} blessing directory given")
    if not os.path.isdir(directory):
        raise ConfigError(f"{kind} blessing directory {directory} does not exist "
                          f"(expected the output of {_PRODUCER[kind]})")
    has_positive = os.path.isfile(os.path.join(directory, positive))
    has_negative = os.path.isfile(os.path.join(directory, negative))
    if has_positive == has_negative:
        what = "both" if has_positive else "neither"
        raise ConfigError(f"{kind} blessing directory {directory} contains {what} of {positive} and {negative}; "
                          f"it must hold exactly one (written by {_PRODUCER[kind]})")
    reasons, details = [], {}
    path = os.path.join(directory, BLESSING_FILE)
    if os.path.isfile(path):
        try:
            with open(path, encoding="utf-8") as handle:
                record = json.load(handle)
            if not isinstance(record, dict):
                raise ValueError("not a JSON object")
            raw = record.get("reasons", record.get("message", []))
            reasons = [raw] if isinstance(raw, str) else [str(r) for r in raw or []]
            details = record.get("details") or {}
        except (OSError, ValueError, TypeError) as err:
            reasons = [f"(could not read {path}: {err})"]
    return Blessing(kind, has_positive, reasons, details, directory)


def is_blessed(directory: str) -> bool:
    """True for ``BLESSED``, False for ``NOT_BLESSED``; ConfigError naming the dir otherwise."""
    return read_blessing(directory).blessed


def is_infra_blessed(directory: str) -> bool:
    """True for ``INFRA_BLESSED``, False for ``INFRA_NOT_BLESSED``; ConfigError otherwise."""
    return read_blessing(directory, infra=True).blessed
