"""Small Markdown builders for the reports shown in the KFP UI."""

import math

_SPARK = "▁▂▃▄▅▆▇█"


def fmt(value, digits: int = 4) -> str:
    """Human formatting of a number for a table cell."""
    if value is None:
        return "–"
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if value != 0 and (abs(value) >= 1e6 or abs(value) < 1e-3):
            return f"{value:.{digits - 1}e}"
        return f"{value:,.{digits}g}" if abs(value) < 1e4 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def percent(part: float, whole: float) -> str:
    return "–" if not whole else f"{100.0 * part / whole:.1f}%"


def escape(text) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def table(headers: list[str], rows: list[list]) -> str:
    """A GitHub-flavoured Markdown table (the KFP UI renders these)."""
    lines = ["| " + " | ".join(escape(h) for h in headers) + " |",
             "|" + "|".join("---" for _ in headers) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(escape(c) for c in row) + " |")
    return "\n".join(lines)


def sparkline(counts) -> str:
    """A histogram as unicode block characters, readable inside a table cell."""
    counts = list(counts)
    top = max(counts) if counts else 0
    if not top:
        return ""
    return "".join(_SPARK[min(len(_SPARK) - 1, int(c / top * (len(_SPARK) - 1) + 0.5))] for c in counts)


def bounds(low, high, format_value=fmt, unbounded: str = "–") -> str:
    """A range for a table cell: "[a, b]", "≥ a", "≤ b" or ``unbounded``."""
    if low is not None and high is not None:
        return f"[{format_value(low)}, {format_value(high)}]"
    if low is not None:
        return f"≥ {format_value(low)}"
    if high is not None:
        return f"≤ {format_value(high)}"
    return unbounded
