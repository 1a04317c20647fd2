"""The Tuner: TFX module files' ``tuner_fn`` with KerasTuner, or the built-in search; TFX's best hyperparameters."""
