"""The container image every component runs in on a cluster: one configurable name.

Set ``KUBETFX_IMAGE`` before compiling (``make compile IMAGE=...``); ``images/``
builds the same name.
"""

import os

DEFAULT_IMAGE = "ghcr.io/kubetfx/kubetfx:0.1.0"
IMAGE_ENV_VAR = "KUBETFX_IMAGE"
COMPONENT_IMAGE = os.environ.get(IMAGE_ENV_VAR, DEFAULT_IMAGE)


def set_component_image(name: str) -> None:
    """Use ``name`` for components imported after this call (the compile CLI's ``--image``)."""
    global COMPONENT_IMAGE
    os.environ[IMAGE_ENV_VAR] = name
    COMPONENT_IMAGE = name
