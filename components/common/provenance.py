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


def content_fingerprint(contents) -> str:
    """SHA-256 over the bytes of each input in order: changes iff the content changes.

    Unlike TFX's fingerprint (sizes and mtimes) this is stable across copies.
    """
    digest = hashlib.sha256()
    for data in contents:
        digest.update(hashlib.sha256(data).digest())
    return "sha256:" + digest.hexdigest()
