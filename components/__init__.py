"""kubetfx components: TFX-style pipeline steps for Kubeflow Pipelines v2.

Each component lives in its own sub-package as ``component.py`` (the KFP
interface, no logic) plus ``executor.py`` (plain Python, testable without KFP),
a thin ``run()`` over the engines it uses. Shared, dependency-light helpers live
in ``common``; engines that several components use are libraries beside it, as
TFX's executors sit over TFDV and TFT: ``data_validation`` (statistics, schema
checks, drift/skew) and ``transform_output`` (reading a Transform run's outputs).
No module imports another component's executor.
"""
