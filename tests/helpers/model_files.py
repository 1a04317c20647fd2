"""Model artifacts as files: a SavedModel-shaped directory and a tree reader, for tests that need no TensorFlow."""

import os


def make_saved_model(directory, variables_bytes: int = 4096, seed: int = 0) -> str:
    """A SavedModel-shaped directory (no TensorFlow needed: the repository copies files)."""
    os.makedirs(os.path.join(directory, "variables"), exist_ok=True)
    os.makedirs(os.path.join(directory, "assets"), exist_ok=True)
    with open(os.path.join(directory, "saved_model.pb"), "wb") as handle:
        handle.write(b"graph-%d" % seed + bytes(range(256)))
    with open(os.path.join(directory, "variables", "variables.data-00000-of-00001"), "wb") as handle:
        handle.write(os.urandom(variables_bytes))
    with open(os.path.join(directory, "variables", "variables.index"), "wb") as handle:
        handle.write(b"index-%d" % seed)
    with open(os.path.join(directory, "assets", "vocab.txt"), "w") as handle:
        handle.write("Adelie\nChinstrap\nGentoo\n")
    return str(directory)


def tree(directory) -> dict:
    """{relative path: bytes} of every file under ``directory``."""
    files = {}
    for root, _, names in os.walk(directory):
        for name in names:
            path = os.path.join(root, name)
            with open(path, "rb") as handle:
                files[os.path.relpath(path, directory)] = handle.read()
    return files
