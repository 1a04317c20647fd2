"""Reading a Transform run's outputs (the transform graph's summary, the not-materialized marker) for other stages.

Transform writes them; the Trainer reads them through ``reader.py``, never through Transform's executor.
"""
