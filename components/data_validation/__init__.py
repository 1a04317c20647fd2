"""Data validation, TFDV's job without TFDV: statistics, schema checks and anomalies, drift and skew.

Shared by StatisticsGen, SchemaGen, ExampleValidator and the model monitor, as TFX's executors
share TFDV. Modules, one job each:

* ``statistics.py``  exact TFMD feature statistics of Arrow list columns (TFDV's GenerateStatistics),
                     histograms, and look-ups into statistics protos.
* ``validation.py``  a split's statistics against a schema: findings, environments, the Anomalies proto.
* ``comparison.py``  drift and skew: distances between two statistics, findings above a threshold.
* ``drift.py``       the distances themselves (L-infinity, Jensen-Shannon), pure functions, no protos.

Nothing here imports TensorFlow or Beam.
"""
