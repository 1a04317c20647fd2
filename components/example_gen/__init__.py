"""ExampleGen: CSV / Parquet / TFRecord input -> deterministic train/eval(/test) splits of tf.Examples."""
