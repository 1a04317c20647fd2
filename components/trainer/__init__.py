"""Trainer: a TFX-style run_fn(fn_args) or the built-in Keras 3 DNN, exported as one SavedModel."""
