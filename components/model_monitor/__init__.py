"""The model monitor: logged predictions vs training data; drift, skew, live quality, retrain or not."""
