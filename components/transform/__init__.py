"""Transform: tf.Transform preprocessing on Beam (TFX Transform on Kubeflow Pipelines)."""
