"""The one tabular pipeline behind penguin, churn and ``--data/--label`` (pipeline.py)."""
