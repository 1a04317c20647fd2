"""What a user error looks like on stderr: exit code 2, one short first line, the details indented after it."""

from kubetfx.components.common.errors import SHORT_LINE


def user_error(code: int, err: str, exit_code: int = 2) -> str:
    """The whole message as one string, after checking its shape (no traceback, a short ``kubetfx: `` line first)."""
    assert code == exit_code and "Traceback" not in err, err
    first, *details = err.strip().splitlines()
    assert first.startswith("kubetfx: ") and len(first) <= SHORT_LINE, err
    assert all(line.startswith("  ") for line in details), err
    return " ".join([first] + [line.strip() for line in details])
