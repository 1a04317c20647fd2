"""What produced an artifact: package versions and content fingerprints."""

import hashlib
import importlib.metadata

CORE_PACKAGES = ("kubetfx", "kfp", "pyarrow", "tfx-bsl", "tensorflow-metadata")


def package_versions(names=CORE_PACKAGES) -> dict[str, str]:
    versions = {}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


class ContentFingerprint:
    """SHA-256 over the bytes of each input in order: changes iff the content changes.

    Unlike TFX's fingerprint (sizes and mtimes) this is stable across copies. Inputs are
    added one at a time, so no input has to stay in memory after it is parsed.
    """

    def __init__(self):
        self._digest = hashlib.sha256()

    def add(self, data: bytes) -> None:
        self._digest.update(hashlib.sha256(data).digest())

    def value(self) -> str:
        return "sha256:" + self._digest.hexdigest()
