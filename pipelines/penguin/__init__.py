"""The penguin pipeline: Palmer Penguins species classification, TFX's reference example."""
