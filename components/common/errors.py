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
