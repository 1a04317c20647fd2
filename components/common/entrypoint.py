"""What a component body calls: run the executor, turn user errors into a clean exit.

A ``KubetfxError`` is printed as one actionable message (what and where) and the
task fails with exit code 1, instead of a traceback from deep inside a library.
"""

import sys

from kubetfx.components.common.errors import KubetfxError, user_message


def call(executor_fn, **kwargs) -> dict:
    try:
        return executor_fn(**kwargs)
    except KubetfxError as err:
        print(user_message(err), file=sys.stderr, flush=True)
        raise SystemExit(1) from None
