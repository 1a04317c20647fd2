"""ExampleValidator: checks statistics against a schema (and drift/skew against other statistics).

``executor.run`` re-implements TFDV's ``validate_statistics`` on TFMD protos
(no TensorFlow/TFDV) and writes TFMD ``Anomalies`` per split in the TFX layout.
"""
