"""kubetfx components: TFX-style pipeline steps for Kubeflow Pipelines v2.

Each component lives in its own sub-package as ``component.py`` (the KFP
interface, no logic) plus ``executor.py`` (plain Python, testable without KFP).
Shared, dependency-light helpers live in ``common``.
"""
