"""Print the runtime dependencies pinned in pyproject.toml, one per line (a requirements file).

The image installs them in a layer of their own, before the source is copied, so a
source change does not reinstall 3 GB of dependencies. ``--tensorflow-extra and-cuda``
turns ``tensorflow==X`` into ``tensorflow[and-cuda]==X`` for the GPU image.
"""

import argparse
import re
import tomllib


def requirements(pyproject: str, tensorflow_extra: str = "") -> list[str]:
    with open(pyproject, "rb") as handle:
        dependencies = tomllib.load(handle)["project"]["dependencies"]
    if tensorflow_extra:
        dependencies = [re.sub(r"^tensorflow(?=[=<>~! ])", f"tensorflow[{tensorflow_extra}]", dependency)
                        for dependency in dependencies]
    return dependencies


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("pyproject")
    parser.add_argument("--tensorflow-extra", default="")
    args = parser.parse_args()
    print("\n".join(requirements(args.pyproject, args.tensorflow_extra)))
