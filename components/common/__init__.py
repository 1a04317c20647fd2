"""Helpers shared by every component. Nothing here imports TensorFlow or Beam."""
