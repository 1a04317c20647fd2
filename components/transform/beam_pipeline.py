"""The tf.Transform Beam pipeline: analyze some splits; optionally transform every split and write it.

Input is read file by file: each TFRecord file becomes Arrow RecordBatches of up to
``rows_per_batch`` rows, read by tf.data and decoded by tfx-bsl in C++. TFXIO's
``BeamSource`` instead makes every record a Beam element and batches them again (at most
1,000 rows per batch). Transformed examples are written as one framed chunk per batch,
not one Beam element per record. (Measurements: docs/benchmarks.md.) A distributed
runner parallelizes over files (ExampleGen writes several per split), not within one.

Imports TensorFlow, TFT and Beam (~6 s): only the executor's ``run`` imports this
module, never at import time of anything else.
"""

from __future__ import annotations

import os

import apache_beam as beam
import tensorflow_transform.beam as tft_beam
from apache_beam import coders
from apache_beam.io import filebasedsink
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from tensorflow_metadata.proto.v0 import schema_pb2
from tfx_bsl.public import tfxio

from kubetfx.components.common import layout, tfrecord

TELEMETRY_DESCRIPTORS = ["kubetfx", "Transform"]
# Rows per Arrow RecordBatch (and per run of the TF graph). Analysis of 667k penguin-like rows
# (median of 3, 2 cores): 1,000-50,000 rows take the same time, 200,000 more time and +0.5 GB
# RSS; 10,000 is in the flat part with the least memory but 1,000.
ROWS_PER_BATCH = 10_000
_COUNTER_NAMESPACE = "kubetfx.transform"
_LOCAL_RUNNERS = ("FnApiRunner", "DirectRunner", "BundleBasedDirectRunner", "SwitchingDirectRunner", "PrismRunner")


def _rows_counter(split: str):
    return beam.metrics.Metrics.counter(_COUNTER_NAMESPACE, f"rows_{split}")


def _record_lists(path: str, batch_size: int):
    """Lists of up to ``batch_size`` serialized records of a TFRecord file.

    tf.data reads local and gs:// files in C++ (CRC checked); other file systems (s3://, ...) go
    through Beam's FileSystems, one whole file in memory.
    """
    if "://" in path and not path.startswith("gs://"):
        with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as handle:
            records = tfrecord.decode_file(handle.read(), path)  # gzip or not, by its magic bytes
        yield from (records[start:start + batch_size] for start in range(0, len(records), batch_size))
        return
    import tensorflow as tf

    compression = "GZIP" if path.endswith(layout.EXAMPLES_FILE_SUFFIX) else ""
    for records in tf.data.TFRecordDataset(path, compression_type=compression).batch(batch_size):
        yield records.numpy().tolist()


class _ReadRecordBatches(beam.DoFn):
    """A tf.Example TFRecord file -> RecordBatches of the schema's features, counting rows."""

    def __init__(self, schema_bytes: bytes, rows_per_batch: int, split: str):
        self._schema_bytes, self._rows_per_batch = schema_bytes, rows_per_batch
        self._rows = _rows_counter(split)
        self._decoder = None

    def setup(self):
        from tfx_bsl.coders import example_coder

        self._decoder = example_coder.ExamplesToRecordBatchDecoder(self._schema_bytes)

    def process(self, path: str):
        for records in _record_lists(path, self._rows_per_batch):
            record_batch = self._decoder.DecodeBatch(records)
            self._rows.inc(record_batch.num_rows)
            yield record_batch


class _CountRecords(beam.DoFn):
    """A TFRecord file -> nothing; counts its records (the rows of a split that is only read, not decoded)."""

    def __init__(self, split: str):
        self._rows = _rows_counter(split)

    def process(self, path: str):
        for records in _record_lists(path, 100_000):
            self._rows.inc(len(records))
        return []


class _EncodeExamples(beam.DoFn):
    """(RecordBatch, passthrough) from TransformDataset -> one bytes chunk of TFRecord-framed tf.Examples."""

    def __init__(self, schema_bytes: bytes):
        self._schema_bytes = schema_bytes
        self._encoder = None

    def setup(self):
        from tfx_bsl.coders import example_coder

        schema = schema_pb2.Schema()
        schema.ParseFromString(self._schema_bytes)
        self._encoder = example_coder.RecordBatchToExamplesEncoder(schema)

    def process(self, element):
        record_batch = element[0] if isinstance(element, tuple) else element
        yield tfrecord.encode_records(self._encoder.encode(record_batch))


class _FramedRecordsSink(filebasedsink.FileBasedSink):
    """A TFRecord file sink whose elements are already-framed chunks of records.

    Beam's WriteToTFRecord takes one element per record: framing, gzip and bookkeeping per
    record cost more than the transformation. One chunk per RecordBatch writes the same files.
    """

    def __init__(self, file_path_prefix: str):
        super().__init__(file_path_prefix, coder=coders.BytesCoder(), file_name_suffix=layout.EXAMPLES_FILE_SUFFIX,
                         mime_type="application/octet-stream", compression_type=CompressionTypes.GZIP)

    def write_encoded_record(self, file_handle, value):
        file_handle.write(value)


def _spread_files(options: PipelineOptions) -> bool:
    """Spread the files over the workers of a distributed runner; a local runner reads them in order, so
    the transformed examples come out in the same order on every run (and the Trainer's seeded shuffle
    with them)."""
    runner = options.view_as(StandardOptions).runner or "DirectRunner"
    return runner.rsplit(".", 1)[-1] not in _LOCAL_RUNNERS


def _files(file_pattern: str) -> list[str]:
    return sorted(metadata.path for metadata in FileSystems.match([file_pattern])[0].metadata_list)


def _counter_values(result, splits) -> dict[str, int | None]:
    counts: dict[str, int | None] = {split: None for split in splits}
    try:
        query = result.metrics().query(MetricsFilter().with_namespace(_COUNTER_NAMESPACE))
    except Exception:  # noqa: BLE001 - some runners do not report metrics
        return counts
    for counter in query.get("counters", []):
        split = counter.key.metric.name[len("rows_"):]
        if split in counts:
            value = counter.committed if counter.committed is not None else counter.attempted
            counts[split] = (counts[split] or 0) + int(value or 0)
    return counts


def run(preprocessing_fn, schema: schema_pb2.Schema, split_patterns: dict[str, str], analyze_splits,
        transform_graph_dir: str, transformed_examples_dir: str | None, temp_dir: str,
        beam_pipeline_args: list[str] | None = None, rows_per_batch: int | None = None) -> dict[str, int | None]:
    """Analyze ``analyze_splits`` and write the transform graph; with a ``transformed_examples_dir``
    also transform every split and write its tf.Examples there (TFX's ``materialize``).

    ``split_patterns``: split name -> file pattern of its gzipped tf.Example TFRecords.
    ``rows_per_batch``: default ROWS_PER_BATCH. Returns split -> rows (None where the runner
    reports no metrics).
    """
    rows_per_batch = rows_per_batch or ROWS_PER_BATCH
    pipeline = beam.Pipeline(options=PipelineOptions(list(beam_pipeline_args or [])))
    adapter_config = tfxio.TFExampleRecord(file_pattern=split_patterns[analyze_splits[0]], schema=schema,
                                           telemetry_descriptors=TELEMETRY_DESCRIPTORS).TensorAdapterConfig()
    schema_bytes = schema.SerializeToString()
    spread = _spread_files(pipeline.options)
    read = {split: pipeline | f"Files[{split}]" >> beam.Create(_files(pattern), reshuffle=spread)
            for split, pattern in split_patterns.items()}
    decoded = {split: files | f"Decode[{split}]" >> beam.ParDo(_ReadRecordBatches(schema_bytes, rows_per_batch, split))
               for split, files in read.items() if transformed_examples_dir or split in analyze_splits}
    with tft_beam.Context(temp_dir=temp_dir, force_tf_compat_v1=False):
        if len(analyze_splits) == 1:
            analyze_data = decoded[analyze_splits[0]]
        else:
            analyze_data = [decoded[s] for s in analyze_splits] | "FlattenAnalysisSplits" >> beam.Flatten()
        transform_fn = (analyze_data, adapter_config) | "Analyze" >> tft_beam.AnalyzeDataset(preprocessing_fn)
        _ = transform_fn | "WriteTransformFn" >> tft_beam.WriteTransformFn(transform_graph_dir)
        for split in split_patterns:
            if transformed_examples_dir:
                _transform_and_write(split, decoded[split], adapter_config, transform_fn, transformed_examples_dir)
            elif split not in analyze_splits:
                _ = read[split] | f"Count[{split}]" >> beam.ParDo(_CountRecords(split))
    result = pipeline.run()
    result.wait_until_finish()
    return _counter_values(result, list(split_patterns))


def _transform_and_write(split: str, data, adapter_config, transform_fn, transformed_examples_dir: str) -> None:
    transformed, metadata = (((data, adapter_config), transform_fn)
                             | f"Transform[{split}]" >> tft_beam.TransformDataset(output_record_batches=True))
    schema_bytes = metadata.dataset_metadata.schema.SerializeToString()
    _ = (transformed
         | f"Encode[{split}]" >> beam.ParDo(_EncodeExamples(schema_bytes))
         | f"Write[{split}]" >> beam.io.Write(_FramedRecordsSink(
             os.path.join(layout.split_dir(transformed_examples_dir, split), layout.EXAMPLES_FILE_PREFIX))))
