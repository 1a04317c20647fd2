"""A versioned model repository that TF Serving and KServe load from. No TensorFlow import.
Over 500 lines: the layout, its readers and both atomic writers keep one set of invariants (temp dirs, claims).

Layout::

    <base>/<model_name>/<version>/saved_model.pb     the SavedModel files, directly inside
                                 /variables/...
                                 /assets/...
                                 /kubetfx_model.json  (problem type, label, classes, versions)

``<version>`` is an increasing integer (1, 2, 3, ...): the layout TF Serving's
``--model_base_path=<base>/<model_name>`` and KServe's TensorFlow runtime expect,
and what our own predictor loads when pinned to ``<base>/<model_name>/<version>``.
Servers and :func:`list_versions` only look at numeric directories; hidden
directories (``.tmp-push-*``) are never loaded.

Writes never expose a half-copied version and never overwrite an existing one:

* **Local / mounted paths** (a PVC, NFS): :func:`push` copies into a hidden
  ``<base>/<model_name>/.tmp-push-<uuid>/``, fsyncs, then renames it to the next
  version number with ``renameat2(RENAME_NOREPLACE)`` (a checked ``os.rename``
  where that call is missing). If another pusher took that number meanwhile,
  it retries with the next one. A crash mid-copy leaves only the hidden temp
  dir; :func:`cleanup_stale_temp_dirs` removes old ones.
* **Object stores** (``gs://``, ``s3://``, via pyarrow.fs) have no atomic rename.
  The version directory is claimed with a hidden ``.kubetfx-push-<uuid>`` object
  (a pusher that sees another claim backs off to the next number), every file
  except ``saved_model.pb`` is uploaded, then ``saved_model.pb`` last, then the
  claim is deleted. Until ``saved_model.pb`` exists no server can load the
  version (TF Serving and KServe need it), and :func:`list_versions` skips it.
  A failed upload is deleted at once; one whose process was killed leaves a
  numeric directory holding a claim but no ``saved_model.pb``: treated as "in
  progress" (not corrupt) and removed by :func:`cleanup_stale_temp_dirs`.
  Object stores make an object visible only when its upload completes, so a
  half-written ``saved_model.pb`` is never seen.

A numeric directory without ``saved_model.pb`` and without a claim is *corrupt*:
:func:`list_versions` skips it, :func:`latest_version` with ``strict=True``
raises a ConfigError naming it when it is the newest version (the Evaluator must
not silently fall back to an older baseline), and its number is never reused.
"""

import ctypes
import errno
import os
import random
import re
import shutil
import time
import uuid

from kubetfx.components.common import layout
from kubetfx.components.common.errors import ConfigError, KubetfxError

# A version dir holds the SavedModel files directly, and the model facts beside them (names from layout.py;
# these two aliases are the names pusher/ still uses).
SAVED_MODEL_FILE = layout.SAVED_MODEL_FILE
MODEL_METADATA_FILE = layout.MODEL_INFO_FILE
# The training split's statistics travel with the model, like its schema: the model monitor compares
# live requests with them (TFMD DatasetFeatureStatisticsList, as StatisticsGen's Split-train/FeatureStats.pb).
TRAINING_STATISTICS_FILE = "training_statistics.pb"
TEMP_PREFIX = ".tmp-push-"
CLAIM_PREFIX = ".kubetfx-push-"
REMOTE_SCHEMES = ("gs", "s3", "gcs", "hdfs", "abfs", "abfss", "mock")

_VERSION_RE = re.compile(r"^\d+$")
_MODEL_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")
_CHUNK = 8 << 20


class PushError(KubetfxError):
    """Copying a model into the repository failed (I/O error, disk full...)."""


# ---------------------------------------------------------------------------
# Where the repository lives: a local path or a pyarrow filesystem


class _Location:
    """``base`` resolved to either a local path or (pyarrow filesystem, path, URI prefix)."""

    def __init__(self, base: str, filesystem=None):
        if not base or not str(base).strip():
            raise ConfigError("no model repository given: set the push destination to a path or gs:// / s3:// URI")
        base = str(base).strip()
        self.fs = filesystem
        if filesystem is not None:
            self.root, self.uri_prefix = base.rstrip("/") or "/", ""
        elif base.startswith("file://"):
            self.root, self.uri_prefix = os.path.abspath(base[len("file://"):]), None
        elif "://" in base:
            scheme = base.split("://", 1)[0].lower()
            if scheme not in REMOTE_SCHEMES:
                raise ConfigError(f"model repository {base}: unsupported scheme '{scheme}://' "
                                  f"(use a local/mounted path, gs:// or s3://; for a PVC, mount it and give its path)")
            from pyarrow import fs as pafs

            try:
                self.fs, self.root = pafs.FileSystem.from_uri(base.rstrip("/"))
            except Exception as err:  # pyarrow raises ArrowInvalid/OSError with the cause
                raise ConfigError(f"model repository {base}: cannot open it: {err}") from None
            self.uri_prefix = f"{scheme}://"
        else:
            self.root, self.uri_prefix = os.path.abspath(base), None

    @property
    def remote(self) -> bool:
        return self.fs is not None

    def join(self, *parts) -> str:
        if self.remote:
            return "/".join([self.root.rstrip("/")] + [str(p) for p in parts])
        return os.path.join(self.root, *[str(p) for p in parts])

    def display(self, path: str) -> str:
        """A path as the user (and KServe) names it: the URI for object stores."""
        if self.remote and self.uri_prefix:
            return self.uri_prefix + path
        return path

    # -- remote helpers ----------------------------------------------------
    def _infos(self, path: str, recursive: bool = False):
        from pyarrow import fs as pafs

        return self.fs.get_file_info(pafs.FileSelector(path, allow_not_found=True, recursive=recursive))

    def child_dirs(self, path: str) -> list[str]:
        if not self.remote:
            try:
                return [e.name for e in os.scandir(path) if e.is_dir()]
            except (FileNotFoundError, NotADirectoryError):
                return []
        from pyarrow import fs as pafs

        try:
            return [info.base_name for info in self._infos(path) if info.type == pafs.FileType.Directory]
        except (OSError, ValueError):  # path is a file, or not listable
            return []

    def is_file(self, path: str) -> bool:
        if not self.remote:
            return os.path.isfile(path)
        from pyarrow import fs as pafs

        return self.fs.get_file_info(path).type == pafs.FileType.File

    def file_names(self, path: str) -> list[str]:
        if not self.remote:
            try:
                return [e.name for e in os.scandir(path) if e.is_file()]
            except (FileNotFoundError, NotADirectoryError):
                return []
        from pyarrow import fs as pafs

        return [info.base_name for info in self._infos(path) if info.type == pafs.FileType.File]


def check_model_name(model_name: str) -> str:
    if not isinstance(model_name, str) or not _MODEL_NAME_RE.match(model_name) or model_name in (".", ".."):
        raise ConfigError(f"model name {model_name!r} is not valid: use letters, digits, '.', '_' or '-' "
                          "(starting with a letter or digit, at most 200 characters)")
    return model_name


# ---------------------------------------------------------------------------
# Reading


def version_path(base: str, model_name: str, version: int, *, filesystem=None) -> str:
    """``<base>/<model_name>/<version>`` (a URI for gs:// / s3:// bases; no I/O)."""
    check_model_name(model_name)
    if filesystem is None and "://" in str(base) and not str(base).startswith("file://"):
        return f"{str(base).strip().rstrip('/')}/{model_name}/{int(version)}"
    loc = _Location(base, filesystem)
    return loc.display(loc.join(model_name, int(version)))


def is_loadable(path: str, *, filesystem=None) -> bool:
    """True if ``path`` (a version dir, local path or URI) has a ``saved_model.pb``."""
    loc = _Location(path, filesystem)
    return loc.is_file(loc.join(SAVED_MODEL_FILE))


def pushed_at(base: str, model_name: str, version: int, *, filesystem=None) -> float | None:
    """When ``version`` was pushed (seconds since the epoch: its ``saved_model.pb`` was written then), or None."""
    loc = _Location(base, filesystem)
    path = loc.join(check_model_name(model_name), int(version), SAVED_MODEL_FILE)
    if not loc.remote:
        try:
            return os.stat(path).st_mtime
        except OSError:
            return None
    info = loc.fs.get_file_info(path)
    return info.mtime.timestamp() if info.mtime is not None else None


def _scan(loc: _Location, model_name: str) -> dict[int, str]:
    """Every numeric version dir -> "complete" | "in_progress" | "corrupt"."""
    model_root = loc.join(model_name)
    states = {}
    for name in loc.child_dirs(model_root):
        if not _VERSION_RE.match(name):
            continue
        files = loc.file_names(loc.join(model_name, name))
        if SAVED_MODEL_FILE in files:
            state = "complete"
        elif any(f.startswith(CLAIM_PREFIX) for f in files):
            state = "in_progress"
        else:
            state = "corrupt"
        version = int(name)
        # "007" and "7" are the same version to TF Serving; keep the worst state.
        if states.get(version) not in ("corrupt", "in_progress"):
            states[version] = state
    return states


def list_versions(base: str, model_name: str, *, filesystem=None) -> list[int]:
    """Complete versions (numeric dirs holding ``saved_model.pb``), ascending.

    Hidden/temporary dirs, non-numeric dirs, uploads in progress and corrupt
    versions are skipped. A missing repository has no versions.
    """
    loc = _Location(base, filesystem)
    return sorted(v for v, state in _scan(loc, check_model_name(model_name)).items() if state == "complete")


def latest_version(base: str, model_name: str, *, strict: bool = False, filesystem=None) -> int | None:
    """The highest complete version, or None if there is none.

    ``strict=True``: if the newest numeric version dir is corrupt (no
    ``saved_model.pb`` and no upload in progress), raise a ConfigError naming it
    instead of silently returning an older version. An empty or missing
    repository still gives None.
    """
    loc = _Location(base, filesystem)
    states = _scan(loc, check_model_name(model_name))
    complete = [v for v, s in states.items() if s == "complete"]
    latest = max(complete) if complete else None
    if strict:
        corrupt = sorted((v for v, s in states.items() if s == "corrupt" and (latest is None or v > latest)))
        if corrupt:
            newest = corrupt[-1]
            path = loc.display(loc.join(model_name, newest))
            fallback = f"the newest loadable version is {latest}" if latest is not None else "no version is loadable"
            raise ConfigError(f"model repository: version {newest} at {path} has no {SAVED_MODEL_FILE} "
                              f"(corrupt or copied by hand); {fallback}. Delete or repair {path}.")
    return latest


# ---------------------------------------------------------------------------
# Writing


def _source_files(source_dir: str) -> list[tuple[str, str]]:
    """(relative path with '/', absolute path) of every file under ``source_dir``, sorted."""
    files = []
    for root, dirs, names in os.walk(source_dir, followlinks=True):
        dirs.sort()
        for name in sorted(names):
            path = os.path.join(root, name)
            if os.path.isfile(path):
                files.append((os.path.relpath(path, source_dir).replace(os.sep, "/"), path))
    return files


def _check_source(source_dir: str, extra_files: dict | None) -> list[tuple[str, str]]:
    if not os.path.isfile(os.path.join(source_dir, SAVED_MODEL_FILE)):
        raise ConfigError(f"{source_dir} is not a SavedModel directory: {SAVED_MODEL_FILE} not found in it")
    files = _source_files(source_dir)
    names = {rel.split("/", 1)[0] for rel, _ in files}
    extras = []
    for name, path in (extra_files or {}).items():
        if not name or "/" in name or name.startswith(".") or name in names or _VERSION_RE.match(name):
            raise ConfigError(f"extra file name {name!r} must be a plain file name that does not clash with "
                              f"the SavedModel's files ({', '.join(sorted(names))})")
        if not os.path.isfile(path):
            raise ConfigError(f"extra file {name}: {path} does not exist")
        extras.append((name, path))
    return files + extras


def _copy_file(src: str, dst: str) -> None:
    """Copy one file and fsync it (so a renamed version never holds truncated files)."""
    with open(src, "rb") as fin, open(dst, "wb") as fout:
        shutil.copyfileobj(fin, fout, _CHUNK)
        fout.flush()
        os.fsync(fout.fileno())


def _fsync_dir(path: str) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


_AT_FDCWD = -100
_RENAME_NOREPLACE = 1
try:
    _renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
except (AttributeError, OSError):  # not glibc >= 2.28 (e.g. macOS, musl)
    _renameat2 = None


def _rename_noreplace(src: str, dst: str) -> bool:
    """Rename ``src`` to ``dst`` unless ``dst`` exists. False if it exists."""
    if _renameat2 is not None:
        if _renameat2(_AT_FDCWD, os.fsencode(src), _AT_FDCWD, os.fsencode(dst), _RENAME_NOREPLACE) == 0:
            return True
        err = ctypes.get_errno()
        if err == errno.EEXIST:
            return False
        if err not in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP):
            raise OSError(err, os.strerror(err), dst)
        # The filesystem does not support RENAME_NOREPLACE: checked rename below.
    if os.path.lexists(dst):
        return False
    try:
        os.rename(src, dst)
    except OSError as err:
        if err.errno in (errno.EEXIST, errno.ENOTEMPTY):
            return False
        raise
    return True


def _not_writable(path: str, err) -> ConfigError:
    reason = err.strerror if isinstance(err, OSError) and err.strerror else str(err)
    return ConfigError(f"push destination {path} is not writable ({reason}); "
                       "give a writable directory or bucket, or fix its permissions")


def push(source_saved_model_dir: str, base: str, model_name: str, extra_files: dict | None = None, *,
         filesystem=None, max_attempts: int = 1000) -> tuple[int, str]:
    """Copy a SavedModel into ``<base>/<model_name>/<next version>/``; return (version, path).

    ``extra_files``: {file name: local path} copied beside ``saved_model.pb``
    (e.g. ``{"kubetfx_model.json": ...}``). ``base`` is a local path, a
    ``file://``, ``gs://`` or ``s3://`` URI; ``filesystem`` (a pyarrow
    FileSystem) makes ``base`` a path inside it and uses the object-store
    protocol. Never overwrites an existing version (see the module docstring).
    """
    check_model_name(model_name)
    files = _check_source(source_saved_model_dir, extra_files)
    loc = _Location(base, filesystem)
    if loc.remote:
        return _push_remote(loc, model_name, files, max_attempts)
    return _push_local(loc, model_name, files, max_attempts)


def _next_version(loc: _Location, model_name: str) -> int:
    """One above every numeric dir, complete or not: a number is never reused."""
    return max(_scan(loc, model_name), default=0) + 1


def _push_local(loc: _Location, model_name: str, files, max_attempts: int) -> tuple[int, str]:
    model_root = loc.join(model_name)
    try:
        os.makedirs(model_root, exist_ok=True)
    except OSError as err:
        raise _not_writable(model_root, err) from None
    if not os.path.isdir(model_root):
        raise _not_writable(model_root, NotADirectoryError(errno.ENOTDIR, "not a directory"))
    temp_dir = os.path.join(model_root, f"{TEMP_PREFIX}{uuid.uuid4().hex}")
    try:
        os.mkdir(temp_dir)
    except OSError as err:
        raise _not_writable(model_root, err) from None
    try:
        try:
            made = set()
            for rel, src in files:
                dst = os.path.join(temp_dir, *rel.split("/"))
                parent = os.path.dirname(dst)
                if parent not in made:
                    os.makedirs(parent, exist_ok=True)
                    made.add(parent)
                _copy_file(src, dst)
            for directory in made | {temp_dir}:
                _fsync_dir(directory)
        except OSError as err:
            raise PushError(f"copying the model into {model_root} failed: {err}") from None
        version = _next_version(loc, model_name)
        for _ in range(max_attempts):
            target = os.path.join(model_root, str(version))
            if _rename_noreplace(temp_dir, target):
                _fsync_dir(model_root)
                return version, target
            version = max(version + 1, _next_version(loc, model_name))
        raise PushError(f"could not claim a new version number under {model_root} after {max_attempts} attempts")
    except BaseException:
        shutil.rmtree(temp_dir, ignore_errors=True)
        raise


def _write_object(fs, path: str, src: str | None) -> None:
    """Upload local file ``src`` (or an empty object if None) to ``path``."""
    with fs.open_output_stream(path) as out:
        if src is not None:
            with open(src, "rb") as handle:
                while chunk := handle.read(_CHUNK):
                    out.write(chunk)


def _withdraw_claim(loc: _Location, version_dir: str, claim: str) -> None:
    """Delete our claim; remove the version dir too if that left it empty (local/marker dirs)."""
    try:
        loc.fs.delete_file(claim)
        if not loc._infos(version_dir):
            loc.fs.delete_dir(version_dir)
    except Exception:  # best effort: an empty dir without claim is only skipped by readers
        pass


def _push_remote(loc: _Location, model_name: str, files, max_attempts: int) -> tuple[int, str]:
    fs = loc.fs
    model_root = loc.join(model_name)
    try:
        fs.create_dir(model_root, recursive=True)
    except Exception as err:  # pyarrow raises OSError subclasses or ArrowException
        raise _not_writable(loc.display(model_root), err) from None
    claim_name = f"{CLAIM_PREFIX}{uuid.uuid4().hex}"
    version = _next_version(loc, model_name)
    for attempt in range(max_attempts):
        version_dir = loc.join(model_name, version)
        if loc._infos(version_dir):  # anything there already (another push, a corrupt version)
            version += 1
            continue
        claim = f"{version_dir}/{claim_name}"
        try:
            fs.create_dir(version_dir, recursive=True)
            _write_object(fs, claim, None)
        except Exception as err:
            raise _not_writable(loc.display(version_dir), err) from None
        if [info for info in loc._infos(version_dir) if info.base_name != claim_name]:
            # Another pusher claimed this number too: back off (it may back off as well).
            _withdraw_claim(loc, version_dir, claim)
            time.sleep(random.uniform(0.0, 0.05 * (attempt + 1)))
            version = _next_version(loc, model_name)
            continue
        break
    else:
        raise PushError(f"could not claim a new version number under {loc.display(model_root)} "
                        f"after {max_attempts} attempts")
    version_dir = loc.join(model_name, version)
    ordered = [f for f in files if f[0] != SAVED_MODEL_FILE] + [f for f in files if f[0] == SAVED_MODEL_FILE]
    try:
        made = {version_dir}
        for rel, src in ordered:
            dst = f"{version_dir}/{rel}"
            parent = dst.rsplit("/", 1)[0]
            if parent not in made:
                fs.create_dir(parent, recursive=True)
                made.add(parent)
            _write_object(fs, dst, src)
    except BaseException as err:
        _discard_partial_upload(loc, version_dir)
        if not isinstance(err, Exception):
            raise
        raise PushError(f"uploading the model to {loc.display(version_dir)} failed: {err}; nothing was "
                        f"published (a version without {SAVED_MODEL_FILE} is not loaded by servers)") from None
    try:
        fs.delete_file(f"{version_dir}/{claim_name}")
    except Exception:  # the version is complete; a leftover hidden claim is harmless
        pass
    return version, loc.display(version_dir)


def _discard_partial_upload(loc: _Location, version_dir: str) -> None:
    """Best effort: delete an upload that failed before ``saved_model.pb`` (a killed process cannot;
    :func:`cleanup_stale_temp_dirs` removes those later)."""
    try:
        if not loc.is_file(f"{version_dir}/{SAVED_MODEL_FILE}"):
            loc.fs.delete_dir(version_dir)
    except Exception:
        pass


def cleanup_stale_temp_dirs(base: str, model_name: str, older_than_s: float = 3600.0, *,
                            filesystem=None) -> list[str]:
    """Remove leftovers of interrupted pushes whose newest file is older than ``older_than_s``.

    Local: hidden ``.tmp-push-*`` dirs. Object stores: numeric dirs that hold a
    push claim but no ``saved_model.pb``. Corrupt versions are left alone (a
    person should look at them). Returns the removed paths.
    """
    loc = _Location(base, filesystem)
    check_model_name(model_name)
    cutoff = time.time() - older_than_s
    removed = []
    if not loc.remote:
        model_root = loc.join(model_name)
        for name in loc.child_dirs(model_root):
            if not name.startswith(TEMP_PREFIX):
                continue
            path = os.path.join(model_root, name)
            if _newest_mtime_local(path) <= cutoff:
                shutil.rmtree(path, ignore_errors=True)
                removed.append(path)
        return removed
    for version, state in _scan(loc, model_name).items():
        if state != "in_progress":
            continue
        path = loc.join(model_name, version)
        infos = [i for i in loc._infos(path, recursive=True) if i.mtime is not None]
        newest = max((i.mtime.timestamp() for i in infos), default=0.0)
        if newest <= cutoff:
            loc.fs.delete_dir(path)
            removed.append(loc.display(path))
    return removed


def _newest_mtime_local(path: str) -> float:
    newest = os.lstat(path).st_mtime
    for root, dirs, names in os.walk(path):
        for name in dirs + names:
            try:
                newest = max(newest, os.lstat(os.path.join(root, name)).st_mtime)
            except FileNotFoundError:
                pass
    return newest
