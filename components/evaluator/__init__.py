"""Evaluator: TFMA on the eval split, candidate vs the latest pushed model, a TFX ModelBlessing."""
