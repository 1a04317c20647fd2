"""StatisticsGen: exact TFMD feature statistics per split of an Examples artifact.

``executor.run`` reads the tf.Examples of each split into Arrow and computes,
with pyarrow.compute and NumPy (no TensorFlow, no Beam), what TFDV's
``GenerateStatistics`` writes: common, numeric and string statistics with
histograms, as ``Split-<name>/FeatureStats.pb``, plus a Markdown report.
"""
