"""InfraValidator: serve the candidate model with the real predictor before it is pushed (InfraBlessing)."""
