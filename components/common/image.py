"""The container images kubetfx runs in, named in one place: ``images/images.env``.

A checkout reads that file (``make image`` builds those names, overlays stamp them into
the manifests, compiling puts them on every task). Inside the image, where the file is
not installed, the image's own ``KUBETFX_IMAGE`` environment variable names it.
Environment variables of the same names override the file.
"""

import os

IMAGES_ENV = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                          "images", "images.env")
CPU, GPU = "KUBETFX_IMAGE", "KUBETFX_GPU_IMAGE"
UNKNOWN_IMAGE = "kubetfx-image-not-configured"


def _read_env_file(path: str) -> dict:
    values = {}
    try:
        with open(path, encoding="utf-8") as handle:
            for line in handle:
                key, sep, value = line.strip().partition("=")
                if sep and not key.startswith("#"):
                    values[key.strip()] = value.strip().strip('"')
    except FileNotFoundError:
        pass
    return values


def image_names() -> dict:
    """``{"KUBETFX_IMAGE": ..., "KUBETFX_GPU_IMAGE": ..., ...}``: images.env, then the environment."""
    names = _read_env_file(IMAGES_ENV)
    names.update({key: os.environ[key] for key in (CPU, GPU) if os.environ.get(key)})
    return names


def component_image(gpu: bool = False) -> str:
    """The image name (``KUBETFX_GPU_IMAGE`` for GPU tasks); a placeholder when nothing names it."""
    names = image_names()
    return names.get(GPU if gpu else CPU) or UNKNOWN_IMAGE


# The decorators' base_image. Compiling sets the configured image on every task anyway
# (kubetfx.pipelines.tabular.pipeline), so this only matters for components used on their own.
COMPONENT_IMAGE = component_image()
