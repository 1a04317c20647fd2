"""kubetfx pipelines and the CLI that runs them locally or compiles them for Kubeflow."""
