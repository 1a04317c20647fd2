"""Hyperparameter search shared by the Tuner, the Trainer and the cluster trials: space, artifact, engine."""
