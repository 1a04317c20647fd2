"""The tf.Transform Beam pipeline: analyze on some splits, transform every split, write both.

Imports TensorFlow, TFT and Beam (~6 s): only the executor's ``run`` imports this
module, never at import time of anything else.
"""

from __future__ import annotations

import os

import apache_beam as beam
import tensorflow_transform.beam as tft_beam
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import PipelineOptions
from tensorflow_metadata.proto.v0 import schema_pb2
from tfx_bsl.public import tfxio

from kubetfx.components.common import layout

TELEMETRY_DESCRIPTORS = ["kubetfx", "Transform"]
_COUNTER_NAMESPACE = "kubetfx.transform"


class _EncodeExamples(beam.DoFn):
    """(RecordBatch, passthrough) from TransformDataset -> serialized tf.Examples, counting rows."""

    def __init__(self, schema_bytes: bytes, split: str):
        self._schema_bytes = schema_bytes
        self._rows = beam.metrics.Metrics.counter(_COUNTER_NAMESPACE, f"rows_{split}")
        self._encoder = None

    def setup(self):
        from tfx_bsl.coders import example_coder

        schema = schema_pb2.Schema()
        schema.ParseFromString(self._schema_bytes)
        self._encoder = example_coder.RecordBatchToExamplesEncoder(schema)

    def process(self, element):
        record_batch = element[0] if isinstance(element, tuple) else element
        self._rows.inc(record_batch.num_rows)
        yield from self._encoder.encode(record_batch)


def _source(schema: schema_pb2.Schema, file_pattern: str):
    return tfxio.TFExampleRecord(file_pattern=file_pattern, schema=schema,
                                 telemetry_descriptors=TELEMETRY_DESCRIPTORS)


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
            counts[split] = int(value or 0)
    return counts


def run(preprocessing_fn, schema: schema_pb2.Schema, split_patterns: dict[str, str], analyze_splits,
        transform_graph_dir: str, transformed_examples_dir: str, temp_dir: str,
        beam_pipeline_args: list[str] | None = None) -> dict[str, int | None]:
    """Analyze ``analyze_splits``, write the transform graph and every split's transformed examples.

    ``split_patterns``: split name -> file pattern of its gzipped tf.Example TFRecords.
    Returns split -> rows written (None where the runner reports no metrics).
    """
    options = PipelineOptions(list(beam_pipeline_args or []))
    pipeline = beam.Pipeline(options=options)
    with tft_beam.Context(temp_dir=temp_dir, force_tf_compat_v1=False):
        sources = {split: _source(schema, pattern) for split, pattern in split_patterns.items()}
        raw = {split: pipeline | f"Read[{split}]" >> source.BeamSource() for split, source in sources.items()}
        adapter_config = sources[analyze_splits[0]].TensorAdapterConfig()
        if len(analyze_splits) == 1:
            analyze_data = raw[analyze_splits[0]]
        else:
            analyze_data = [raw[s] for s in analyze_splits] | "FlattenAnalysisSplits" >> beam.Flatten()
        transform_fn = (analyze_data, adapter_config) | "Analyze" >> tft_beam.AnalyzeDataset(preprocessing_fn)
        _ = transform_fn | "WriteTransformFn" >> tft_beam.WriteTransformFn(transform_graph_dir)
        for split, data in raw.items():
            transformed, metadata = (((data, sources[split].TensorAdapterConfig()), transform_fn)
                                     | f"Transform[{split}]" >> tft_beam.TransformDataset(
                                         output_record_batches=True))
            schema_bytes = metadata.dataset_metadata.schema.SerializeToString()
            _ = (transformed
                 | f"Encode[{split}]" >> beam.ParDo(_EncodeExamples(schema_bytes, split))
                 | f"Write[{split}]" >> beam.io.WriteToTFRecord(
                     os.path.join(layout.split_dir(transformed_examples_dir, split), layout.EXAMPLES_FILE_PREFIX),
                     file_name_suffix=layout.EXAMPLES_FILE_SUFFIX, compression_type=CompressionTypes.GZIP))
    result = pipeline.run()
    result.wait_until_finish()
    return _counter_values(result, list(split_patterns))
