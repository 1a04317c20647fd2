"""User-facing errors.

A ``KubetfxError`` carries a message that says what is wrong and where (file,
column, field) and how to fix it. Executors raise it instead of letting a
library exception escape; the CLI and the component entry point print it
without a traceback.
"""


class KubetfxError(Exception):
    """An error the user can act on; the message names the file/column/field."""


class InputDataError(KubetfxError):
    """The input data is missing, empty or malformed."""


class ConfigError(KubetfxError):
    """A component parameter, schema or config file is invalid."""


class AnomaliesFoundError(KubetfxError):
    """Data validation found anomalies and the component was told to fail on them."""


SHORT_LINE = 170  # characters of a message's first line, its "kubetfx: " prefix included
_BREAKS = (("; ", " ("), (". ", ": "))  # where to cut a long first line, the first group preferred


def user_message(message, prefix: str = "kubetfx: ") -> str:
    """``prefix`` + one short first line (what is wrong and where), then the details on indented lines.

    A first line longer than :data:`SHORT_LINE` (prefix included) is cut at its last ``; `` or `` (``
    that keeps it short (else ``. `` or ``: ``, else a space); what follows goes on the next lines.
    """
    lines = [line.strip() for line in str(message).strip().splitlines() if line.strip()] or ["(no message)"]
    first, details = lines[0], lines[1:]
    limit = max(60, SHORT_LINE - len(prefix))
    if len(first) > limit:
        window = first[:limit]
        cut = -1
        for marks in _BREAKS:
            cut = max((window.rfind(mark) for mark in marks if window.rfind(mark) >= 30), default=-1)
            if cut >= 0:
                break
        if cut < 0:
            cut = window.rfind(" ") if window.rfind(" ") > 30 else limit
        first, rest = first[:cut].rstrip(" ;:"), first[cut:].lstrip(" ;")
        details.insert(0, rest)
    return prefix + first + "".join(f"\n  {line}" for line in details)
