"""Cluster tooling: compile for an environment, submit/schedule on Kubeflow Pipelines, apply manifests."""
