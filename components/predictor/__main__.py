"""CLI: ``python -m kubetfx.components.predictor --model_repository DIR --model_name NAME [--version N]
--http_port P --grpc_port G --workers N [--max_request_bytes B]`` (or ``--model_dir DIR`` for one model
dir, as on KServe).
"""

import argparse
import os
import sys

from kubetfx.components.common import layout, prediction_log


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m kubetfx.components.predictor",
        description="Serve a kubetfx model with KServe (V1 + V2 REST, V2 gRPC, /metrics), micro-batched, "
                    "validated against the training schema, hot-reloading newer pushed versions.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter, allow_abbrev=False)
    where = parser.add_argument_group("model")
    where.add_argument("--model_repository", default="", help="model repository: <DIR>/<model_name>/<version>/")
    where.add_argument("--model_name", default="", help="model name (repository sub-dir; also the endpoint name)")
    where.add_argument("--version", type=int, default=None,
                       help="serve this version only (default: the latest, and hot-reload newer ones)")
    where.add_argument("--model_dir", default="",
                       help=f"serve one model dir instead (Trainer output with {layout.SERVING_MODEL_DIR}/, or a "
                            "version dir; KServe: /mnt/models)")
    where.add_argument("--model_version", default=os.environ.get("KUBETFX_MODEL_VERSION") or None,
                       help="version label reported for --model_dir (env KUBETFX_MODEL_VERSION)")
    serving = parser.add_argument_group("serving")
    serving.add_argument("--http_port", type=int, default=8080)
    serving.add_argument("--grpc_port", type=int, default=8081)
    serving.add_argument("--enable_grpc", type=lambda v: v.lower() in ("1", "true", "yes"), default=True)
    serving.add_argument("--workers", type=int, default=1, help="HTTP worker processes (gRPC runs in the parent)")
    serving.add_argument("--max_batch_size", type=int, default=64, help="most instances per model call")
    serving.add_argument("--max_batch_wait_us", type=int, default=0,
                         help="wait up to this long for more requests before a model call (0: batch only what "
                              "queued up while the model was busy)")
    serving.add_argument("--max_request_bytes", type=int, default=8 * 1024 * 1024,
                         help="largest request body (REST) or message (gRPC) taken; larger ones are answered 413 "
                              "(gRPC: RESOURCE_EXHAUSTED)")
    serving.add_argument("--poll_interval_s", type=float, default=10.0, help="how often to look for new versions")
    serving.add_argument("--prediction_log_dir", default="",
                         help="log each request's features and prediction under DIR/<model_name>/ for the model "
                              "monitor (off the request path; empty: off)")
    serving.add_argument("--prediction_log_sample_rate", type=float, default=1.0,
                         help="share of requests logged (0..1)")
    serving.add_argument("--prediction_log_max_total_bytes", type=int, default=prediction_log.DEFAULT_MAX_TOTAL_BYTES,
                         help="the log's directory never holds more: the oldest files are deleted first (0: no limit)")
    serving.add_argument("--prediction_log_max_file_bytes", type=int, default=prediction_log.DEFAULT_MAX_BYTES,
                         help="a new log file after this many bytes (at most a quarter of the total)")
    serving.add_argument("--prediction_log_max_age_s", type=float, default=prediction_log.DEFAULT_MAX_AGE_S,
                         help="log files older than this are deleted (0: no limit)")
    serving.add_argument("--canary_percent", type=int, default=0,
                         help="a newly pushed version gets this share of requests beside the served one until a rollout "
                              "decision (kubetfx monitor) promotes or rolls it back (0: serve it at once)")
    serving.add_argument("--allow_nan", action="store_true",
                         help="accept NaN/Inf (JSON null) in float features unless the schema disallows them")
    serving.add_argument("--tf_intra_op_threads", type=int, default=0, help="TF intra-op threads (0: TF default)")
    serving.add_argument("--tf_inter_op_threads", type=int, default=0, help="TF inter-op threads (0: TF default)")
    serving.add_argument("--grace_period_s", type=int, default=30, help="graceful shutdown limit")
    return parser


def main(argv=None) -> int:
    args, _unknown = build_parser().parse_known_args(argv)  # kserve's own flags may ride along
    from kubetfx.components.common.errors import KubetfxError, user_message
    from kubetfx.components.predictor.model import ServingOptions
    from kubetfx.components.predictor.repository_watch import ModelSource

    try:
        if args.model_dir:
            source = ModelSource(model_name=args.model_name or "model", model_dir=args.model_dir,
                                 version_label=args.model_version)
        else:
            if not args.model_repository or not args.model_name:
                raise KubetfxError("give --model_repository DIR and --model_name NAME (or --model_dir DIR)")
            source = ModelSource(model_name=args.model_name, repository=args.model_repository, version=args.version)
        if not 0 <= args.canary_percent < 100:
            raise KubetfxError(f"--canary_percent must be between 0 (no canary) and 99, got {args.canary_percent}")
        if args.max_request_bytes < 1024:
            raise KubetfxError(f"--max_request_bytes must be at least 1024, got {args.max_request_bytes}")
        options = ServingOptions(allow_nan=args.allow_nan, max_batch_size=args.max_batch_size,
                                 max_request_bytes=args.max_request_bytes,
                                 max_batch_wait_us=args.max_batch_wait_us, poll_interval_s=args.poll_interval_s,
                                 intra_op_threads=args.tf_intra_op_threads, inter_op_threads=args.tf_inter_op_threads,
                                 prediction_log_dir=args.prediction_log_dir,
                                 prediction_log_sample_rate=args.prediction_log_sample_rate,
                                 prediction_log_max_total_bytes=args.prediction_log_max_total_bytes,
                                 prediction_log_max_file_bytes=args.prediction_log_max_file_bytes,
                                 prediction_log_max_age_s=args.prediction_log_max_age_s,
                                 canary_percent=args.canary_percent)
        from kubetfx.components.predictor import server

        server.serve(source, options, http_port=args.http_port, grpc_port=args.grpc_port, workers=args.workers,
                     enable_grpc=args.enable_grpc, grace_period_s=args.grace_period_s)
    except KubetfxError as err:
        print(user_message(err, "kubetfx predictor: "), file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
