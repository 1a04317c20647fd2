"""Continuous training's last step: start the training pipeline on Kubeflow Pipelines."""
