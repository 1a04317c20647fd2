"""Finding and reading input files on local disk or object stores (gs://, s3://).

Local paths use the OS directly; URIs with a scheme go through pyarrow's
filesystems, which ship GCS and S3 support in the standard wheels.
"""

import fnmatch
import glob
import os
import re

from kubetfx.components.common.errors import InputDataError

SPAN_TOKEN = "{SPAN}"
_HIDDEN_PREFIXES = (".", "_")


def _is_remote(uri: str) -> bool:
    return "://" in uri and not uri.startswith("file://")


def _strip_file_scheme(uri: str) -> str:
    return uri[len("file://"):] if uri.startswith("file://") else uri


def _visible(path: str) -> bool:
    return not os.path.basename(path.rstrip("/")).startswith(_HIDDEN_PREFIXES)


def _glob(pattern: str) -> list[str]:
    """Files matching a glob; a matching directory contributes its visible files."""
    if _is_remote(pattern):
        return _remote_glob(pattern)
    files = []
    for match in sorted(glob.glob(pattern)):
        if os.path.isdir(match):
            files.extend(sorted(os.path.join(match, name) for name in os.listdir(match)
                                if _visible(name) and os.path.isfile(os.path.join(match, name))))
        elif os.path.isfile(match) and _visible(match):
            files.append(match)
    return files


def _remote_glob(pattern: str) -> list[str]:
    from pyarrow import fs as pafs

    scheme, rest = pattern.split("://", 1)
    filesystem, path = pafs.FileSystem.from_uri(f"{scheme}://{rest.split('*')[0].split('?')[0]}")
    base = path if not any(ch in rest for ch in "*?[") else path.rsplit("/", 1)[0]
    infos = filesystem.get_file_info(pafs.FileSelector(base, recursive=True, allow_not_found=True))
    target = rest if any(ch in rest for ch in "*?[") else rest.rstrip("/")
    files = []
    for info in infos:
        if info.type != pafs.FileType.File or not _visible(info.path):
            continue
        if fnmatch.fnmatch(info.path, target) or fnmatch.fnmatch(os.path.dirname(info.path), target):
            files.append(f"{scheme}://{info.path}")
    return sorted(files)


def _glob_regex(pattern: str) -> str:
    """Regex for a glob fragment: ``*`` and ``?`` stay within one path component."""
    return "".join("[^/]*" if ch == "*" else "[^/]" if ch == "?" else re.escape(ch) for ch in pattern)


def resolve_input(uri: str) -> tuple[list[str], int | None]:
    """Expand an input URI into (files, span).

    ``uri`` is a file, a directory, a glob, or a pattern containing ``{SPAN}``
    (then only the files of the highest span are returned, with its number).
    """
    uri = _strip_file_scheme(uri.strip())
    if not uri:
        raise InputDataError("no input given: set input_uri to a file, directory, glob or {SPAN} pattern")
    span = None
    if SPAN_TOKEN in uri:
        regex = re.compile(r"(\d+)".join(_glob_regex(part) for part in uri.split(SPAN_TOKEN)) + r"(?:/.*)?$")
        by_span: dict[int, list[str]] = {}
        for path in _glob(uri.replace(SPAN_TOKEN, "*")):
            match = regex.match(path)
            if match:
                by_span.setdefault(int(match.group(1)), []).append(path)
        if not by_span:
            raise InputDataError(f"no input files match the span pattern {uri}")
        span = max(by_span)
        files = by_span[span]
    elif not _is_remote(uri) and os.path.isfile(uri):
        files = [uri]
    else:
        files = _glob(uri)
    if not files:
        if not _is_remote(uri) and not glob.glob(uri):
            raise InputDataError(f"input not found: {uri} (no such file or directory)")
        raise InputDataError(f"input {uri} contains no data files")
    return files, span


def read_bytes(path: str) -> bytes:
    if _is_remote(path):
        from pyarrow import fs as pafs

        filesystem, inner = pafs.FileSystem.from_uri(path)
        with filesystem.open_input_stream(inner) as stream:
            return stream.read()
    with open(path, "rb") as handle:
        return handle.read()
