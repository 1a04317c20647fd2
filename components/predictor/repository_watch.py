"""Which version to serve, and hot reload when a newer one is pushed.

:class:`ModelSource` says where versions come from: a model repository (``<repo>/<name>/<N>/``,
latest or one pinned version) or a single model dir (a candidate, or ``/mnt/models`` on KServe).

:class:`RepositoryWatcher` polls the repository in a background thread. When a version newer
than the served one appears it is loaded and warmed up *beside* the served one, then handed to
``on_loaded`` which switches atomically (requests already running finish on the old version). A
version that fails to load is logged, remembered and skipped; the old version keeps serving.
Numeric dirs without ``saved_model.pb`` (pushes in progress, corrupt dirs) are never tried
(``model_repository.list_versions`` skips them).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

from prometheus_client import Counter

from kubetfx.components.common import model_repository
from kubetfx.components.common.errors import ConfigError, KubetfxError
from kubetfx.components.predictor import signature
from kubetfx.components.predictor.servable import LoadError

logger = logging.getLogger("kubetfx.predictor")

LOAD_FAILURES = Counter("kubetfx_predictor_load_failures", "Model versions that failed to load (skipped)",
                        ["model"])


@dataclass(frozen=True)
class ModelSource:
    """``repository`` + ``model_name`` (+ pinned ``version``), or ``model_dir`` (+ ``version_label``)."""

    model_name: str
    repository: str | None = None
    version: int | None = None
    model_dir: str | None = None
    version_label: str | None = None

    def __post_init__(self):
        if bool(self.repository) == bool(self.model_dir):
            raise ConfigError("give either a model repository (--model_repository DIR --model_name NAME) "
                              "or a model dir (--model_dir DIR), not both or neither")
        if self.repository:
            model_repository.check_model_name(self.model_name)

    @property
    def watchable(self) -> bool:
        return bool(self.repository) and self.version is None

    def describe(self) -> str:
        if self.model_dir:
            return f"model dir {self.model_dir}"
        pinned = f" version {self.version}" if self.version is not None else " (latest version, watched)"
        return f"model repository {self.repository} model '{self.model_name}'{pinned}"

    def versions(self) -> list[int]:
        return model_repository.list_versions(self.repository, self.model_name)

    def location(self, version: int) -> signature.ModelLocation:
        return signature.locate_version(self.repository, self.model_name, version)

    def load_initial(self, loader, skipped: set | None = None):
        """The servable to start with: the pinned version, the model dir, or the newest version that loads."""
        if self.model_dir:
            return loader(signature.locate_model_dir(self.model_dir, self.version_label))
        if self.version is not None:
            versions = self.versions()
            if self.version not in versions:
                raise ConfigError(f"{self.describe()}: version {self.version} not found (loadable versions: "
                                  f"{', '.join(map(str, versions)) or 'none'})")
            return loader(self.location(self.version))
        versions = self.versions()
        if not versions:
            raise ConfigError(f"{self.describe()}: no loadable version under "
                              f"{model_repository.version_path(self.repository, self.model_name, 1).rsplit('/', 1)[0]} "
                              "(push a model first, e.g. `make run`)")
        errors = []
        for version in sorted(versions, reverse=True):
            try:
                return loader(self.location(version))
            except LoadError as err:
                LOAD_FAILURES.labels(self.model_name).inc()
                logger.error("version %s failed to load, trying an older one: %s", version, err)
                errors.append(f"version {version}: {err}")
                if skipped is not None:
                    skipped.add(version)
        raise LoadError(f"{self.describe()}: no version loads: " + "; ".join(errors))


class RepositoryWatcher:
    """Polls ``source`` every ``interval_s``; loads newer versions with ``loader`` and passes them to ``on_loaded``
    (which serves them, or starts a canary); ``on_poll`` runs first at every poll."""

    def __init__(self, source: ModelSource, loader, on_loaded, current_version: int, interval_s: float = 10.0,
                 skipped: set | None = None, on_poll=None):
        self.source = source
        self._loader = loader
        self._on_loaded = on_loaded
        self._on_poll = on_poll  # called at every poll first (the local canary follows its rollout document)
        self.current = int(current_version)
        self.interval_s = max(0.05, float(interval_s))
        self.skipped: set[int] = set(skipped or ())
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="kubetfx-repository-watch", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.poll()
            except Exception:  # never let the watcher die: log and poll again
                logger.exception("model repository poll failed; retrying in %.1f s", self.interval_s)

    def poll(self) -> int | None:
        """Check once; the version switched to, or None."""
        if self._on_poll is not None:
            self._on_poll()
        try:
            versions = self.source.versions()
        except (OSError, KubetfxError) as err:
            logger.warning("cannot list %s: %s", self.source.describe(), err)
            return None
        for version in sorted((v for v in versions if v > self.current and v not in self.skipped), reverse=True):
            if self._stop.is_set():
                return None
            location = self.source.location(version)
            logger.info("version %s appeared at %s; loading it in the background (serving %s meanwhile)",
                        version, location.saved_model_dir, self.current)
            try:
                servable = self._loader(location)
            except LoadError as err:
                self.skipped.add(version)
                LOAD_FAILURES.labels(self.source.model_name).inc()
                logger.error("version %s failed to load and is skipped; still serving version %s: %s",
                             version, self.current, err)
                continue
            previous, self.current = self.current, version
            self._on_loaded(servable)
            logger.info("switched from version %s to version %s", previous, version)
            return version
        return None
