"""``kubetfx`` / ``python -m kubetfx.pipelines``: run pipelines locally, compile, submit and schedule them
on Kubeflow Pipelines, and apply an environment's manifests.

A pipeline is ``penguin`` / ``churn`` (examples), or your own data: ``--data FILE|DIR|GLOB|{SPAN}
--label COLUMN [--name NAME] [--problem classification|regression]``.

Exit codes: 0 done (`run`: a model was pushed), 1 a pipeline run failed, 2 a usage/config/cluster
error before anything ran (one line on stderr), 3 `run` finished but pushed no model (not blessed).
"""

import argparse
import json
import os
import signal
import sys

from kubetfx.components.common.errors import KubetfxError, user_message
from kubetfx.pipelines import registry
from kubetfx.pipelines.registry import PIPELINES

EXIT_USAGE = 2


def _parse_value(text: str):
    """--set/--param values: JSON when they parse (numbers, true/false, {...} for dict parameters), else the string."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def _assignments(parser, items: list[str], flag: str) -> dict:
    values = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            parser.error(f"{flag} takes NAME=VALUE, got '{item}'")
        values[key] = _parse_value(value)
    return values


def _config(args):
    """The environment config named by --env or --config (neither: the built-in defaults, CPU only)."""
    from kubetfx.pipelines import config as pipeline_config

    if args.env and args.config:
        raise KubetfxError("give --env or --config, not both")
    config = pipeline_config.load_environment(args.env) if args.env else pipeline_config.load(args.config)
    return config.cpu_only() if getattr(args, "cpu_only", False) else config


def _entry(args) -> registry.PipelineEntry:
    """The named example pipeline, or the tabular pipeline for --data/--label."""
    if args.data or args.label:
        if args.pipeline:
            raise KubetfxError(f"give a pipeline name ({args.pipeline}) or --data/--label, not both")
        if not (args.data and args.label):
            raise KubetfxError("--data and --label go together: the data to learn from and the column to predict")
        return registry.for_data(args.data, args.label, args.name, args.problem)
    if args.name or args.problem != "auto":
        raise KubetfxError("--name and --problem apply to --data/--label pipelines")
    return PIPELINES[args.pipeline or "penguin"]


def _compile(args, config, entry):
    from kubetfx.pipelines.cluster import compiler

    if args.image:
        os.environ["KUBETFX_IMAGE"] = args.image
    output = args.output or compiler.default_output(entry.name, args.env)
    return compiler.compile_pipeline(entry, config, output)


def _cmd_compile(args, parser) -> int:
    entry = _entry(args)
    compiled = _compile(args, _config(args), entry)
    print(f"Compiled the {entry.name} pipeline to {compiled.path}")
    if compiled.defaults:
        print("  defaults baked in: " + ", ".join(sorted(compiled.defaults)))
    if compiled.required:
        print("  to give at run time: " + ", ".join(compiled.required))
    return 0


def _cmd_submit(args, parser) -> int:
    from kubetfx.pipelines.cluster import submit

    config = _config(args)
    params = _assignments(parser, args.param, "--param")
    compiled = _compile(args, config, _entry(args))
    client = submit.KfpSubmitter(config)
    if args.command == "schedule":
        client.schedule(compiled, params, cron=args.cron)
    else:
        client.submit(compiled, params, run_name=args.run_name)
    return 0


def _cmd_deploy(args, parser) -> int:
    from kubetfx.pipelines.cluster import kustomize

    config = _config(args)
    if not config.manifests:
        raise KubetfxError(f"{config.source or config.name}: no manifests overlay to apply (set manifests:)")
    print(kustomize.apply(config.manifests_path(), dry_run=args.dry_run), end="")
    return 0


def _cmd_manifests(args, parser) -> int:
    from kubetfx.pipelines import config as pipeline_config
    from kubetfx.pipelines.cluster import kustomize

    import yaml

    names = [args.env] if args.env else pipeline_config.environments()
    os.makedirs(args.output_dir, exist_ok=True)
    for name in names:
        config = pipeline_config.load_environment(name)
        if not config.manifests:
            continue
        objects = kustomize.render(config.manifests_path())
        path = os.path.join(args.output_dir, f"{name}.yaml")
        with open(path, "w", encoding="utf-8") as handle:
            yaml.safe_dump_all(objects, handle, sort_keys=False)
        print(f"Rendered {config.manifests} ({len(objects)} objects) to {path}")
    return 0


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}")
    return value


def _cmd_run(args, parser) -> int:
    from kubetfx.pipelines.local import runner as local_runner

    overrides = _assignments(parser, args.set, "--set")
    if args.image:
        os.environ["KUBETFX_IMAGE"] = args.image
    if not args.containers and (args.env or args.config):
        raise KubetfxError("--env/--config choose what a compiled pipeline bakes in: use them with --containers")
    config = _config(args) if args.containers else None
    return local_runner.run(_entry(args), root=args.root, verbose=args.verbose, overrides=overrides,
                            containers=args.containers, config=config, parallelism=args.parallelism)


def _monitor_target(args) -> tuple[str, "registry.PipelineEntry | None"]:
    """(the model to monitor, the pipeline that retrains it -- None when kubetfx does not know it)."""
    if args.model:
        if args.pipeline or args.data or args.label:
            raise KubetfxError("give --model NAME, or the pipeline that trains it (penguin, churn, --data/--label), "
                               "not both")
        known = PIPELINES.get(args.model)
        return args.model, known if known is not None and known.kind == registry.TRAINING else None
    entry = _entry(args)
    if entry.kind != registry.TRAINING:
        raise KubetfxError("kubetfx monitor watches a training pipeline's model (penguin, churn, --data/--label "
                           "or --model NAME)")
    return entry.make().component_spec.inputs["model_name"].default, entry


def _print_canary(verdict: dict, applied: dict) -> None:
    samples = verdict["samples"]
    print(f"Canary: version {verdict['canary']} vs version {verdict['stable']}: {verdict['action'].upper()} -- "
          f"{verdict['reason']}")
    print(f"  samples: stable {samples['stable']}, canary {samples['canary']}"
          f"{' (labelled answers compared)' if verdict['labelled'] else ' (no labels: behaviour compared)'}; "
          f"the test's planned length {verdict['planned_samples']} per version; alpha {verdict['alpha']:g}")
    if applied["applied"]:
        kept = verdict["canary"] if verdict["action"] == "promote" else verdict["stable"]
        print(f"  applied: version {kept} serves every request from the predictor's next poll")
    elif verdict["action"] == "wait":
        print("  waiting: run the monitor again when more traffic (and labels) came in")


def _cmd_monitor(args, parser) -> int:
    """The local continuous-training loop: monitor the prediction log; retrain when it says so."""
    import time

    from kubetfx.components.model_monitor import executor as monitor, rollout_step
    from kubetfx.pipelines.local import runner as local_runner

    model_name, entry = _monitor_target(args)
    root = os.path.abspath(args.root)
    log_dir = registry.prediction_log_dir(root)
    if not os.path.isdir(os.path.join(log_dir, model_name)):
        raise KubetfxError(f"no prediction log of '{model_name}' in {log_dir}: nothing is being logged, so nothing "
                           f"can be monitored; serve it with `make serve MODEL={model_name}` (it passes the "
                           f"predictor --prediction_log_dir {log_dir})")
    if args.retrain and entry is None:
        raise KubetfxError(f"--retrain: no known pipeline trains '{model_name}'; give the one that does "
                           f"(--data FILE --label COLUMN --name {model_name}, or `make monitor MODEL={model_name} "
                           "DATA=... LABEL=...`)")
    output_dir = os.path.join(root, "monitor", model_name, time.strftime("%Y%m%d-%H%M%S"))
    repository = registry.model_repository_dir(root)
    options = dict(last_n=args.last_n, start=args.start, end=args.end, labels=args.labels, min_records=args.min_records,
                   report_path=os.path.join(output_dir, "report.html"),
                   metrics_path=os.path.join(output_dir, "metrics.json"))
    result = rollout_step.run_local(log_dir, repository, model_name, output_dir, _config(args).canary_settings(),
                                    **options) or monitor.run_for_model(log_dir, repository, model_name, output_dir,
                                                                        **options)
    decision, window = result["decision"], result["window"]
    since = f" (records since {window['since']['reason']}, {window['since']['time']})" if window.get("since") else ""
    print(f"Monitored {window['records']} logged predictions of {model_name} (versions "
          f"{', '.join(window['versions']) or '-'}) against version {result['compared_with_version']}'s training "
          f"data{since}")
    print(f"  report: {os.path.join(output_dir, 'report.html')}")
    if window.get("retention"):
        print(f"  records up to {window['retention']['deleted_through']} were deleted by the log's retention: the "
              "window starts later than asked")
    if result.get("canary"):
        _print_canary(result["canary"], result["rollout"])
    if decision.get("note"):
        print(f"Nothing decided: {decision['note']}.")
        return 0
    if decision.get("deferred"):
        print(f"Retraining deferred: {decision['deferred']}.")
    if decision.get("alerts"):
        print("Alerts (retraining cannot fix these: fix the clients or the schema):")
        for alert in decision["alerts"]:
            print(f"  - {alert}")
    if not decision["retrain"]:
        print("No retraining needed." + (" (See the alerts above.)" if decision.get("alerts") else ""))
        return 0
    print("Retrain:")
    for reason in decision["reasons"]:
        print(f"  - {reason}")
    if not args.retrain:
        return 0
    if entry is None:
        print(f"  (to retrain, give the pipeline that trains '{model_name}': --data FILE --label COLUMN)")
        return 0
    print(f"\nRetraining: the {entry.name} pipeline on the newest data span")
    return local_runner.run(entry, root=root)


def _cmd_predict(args, parser) -> int:
    """Batch scoring with a pushed model, through the predictor's input path (the BulkInferrer's engine)."""
    from kubetfx.components.common import model_repository
    from kubetfx.components.common.errors import ConfigError

    name, _, version = args.model.partition(":")
    model_repository.check_model_name(name)
    repository = args.repository or registry.model_repository_dir(args.root)
    if version and not version.isdigit():
        raise ConfigError(f"--model {args.model}: the version after ':' must be a number, e.g. {name}:3")
    chosen = int(version) if version else model_repository.latest_version(repository, name, strict=True)
    if chosen is None or chosen not in model_repository.list_versions(repository, name):
        versions = model_repository.list_versions(repository, name)
        raise ConfigError(f"--model {args.model}: no {'version ' + str(chosen) + ' of ' if chosen else ''}model "
                          f"'{name}' in {repository} (versions there: {', '.join(map(str, versions)) or 'none'})")
    if not os.path.exists(args.data) and not any(c in args.data for c in "*?[{") and "://" not in args.data:
        raise ConfigError(f"--data {args.data}: not found")
    from kubetfx.components.bulk_inferrer import executor

    result = executor.predict_to_file(model_repository.version_path(repository, name, chosen), args.data, args.out,
                                      version=str(chosen), batch_size=args.batch_size or executor.DEFAULT_BATCH,
                                      allow_nan=args.allow_nan, model_name=name)
    print(f"Scored {result['scored']} of {result['rows']} rows with {name} version {chosen} "
          f"({result['rows_per_second']} rows/s): {args.out}")
    print(f"  PredictionLogs: {result['prediction_logs']}")
    if result["rejected"]:
        print(f"  {result['rejected']} rows rejected (reasons in {result['rejects']})")
    return 0 if result["scored"] or not result["rows"] else 1


def _cmd_params(args, parser) -> int:
    entry = _entry(args)
    help_text = entry.parameter_help()
    inputs = entry.make().component_spec.inputs
    width = max(map(len, inputs))
    print(f"Parameters of the {entry.name} pipeline (`--set NAME=VALUE` on run, `--param` on submit, "
          "`parameters:` in an environment config):")
    for name, spec in inputs.items():
        default = "(required)" if spec.default is None else json.dumps(spec.default)
        print(f"  {name:<{width}}  {spec.type:<7}  {default}")
        print(f"  {'':<{width}}  {help_text.get(name, '')}")
        if name == "hyperparameters":
            from kubetfx.components.trainer import scaling

            for line in scaling.defaults_table():
                print(f"  {'':<{width}}    {line}")
    return 0


def _add_pipeline(command):
    command.add_argument("pipeline", nargs="?", default=None, choices=sorted(PIPELINES),
                         help="an example pipeline (default: penguin), or give --data and --label")
    command.add_argument("--data", default=None, metavar="FILE|DIR|GLOB|{SPAN}",
                         help="your data: CSV/Parquet/TFRecord file, directory, glob or span pattern (local, gs://, s3://)")
    command.add_argument("--label", default=None, metavar="COLUMN", help="with --data: the column to predict")
    command.add_argument("--name", default=None, help="with --data: the model's name (default: from the data's name)")
    command.add_argument("--problem", default="auto", choices=("auto", "classification", "regression"),
                         help="with --data: what to learn (auto: a string or few-integer label is classification)")


def _add_environment(command, compiles: bool = True):
    command.add_argument("--env", default=None, help="environment: pipelines/configs/<ENV>.yaml (dev, prod, ...)")
    command.add_argument("--config", default=None, help="environment config file (instead of --env)")
    if compiles:
        command.add_argument("--output", "-o", default=None,
                             help="compiled YAML (default: build/<pipeline>[-<env>].yaml)")
        command.add_argument("--image", default=None, help="component image (default: images/images.env)")
        command.add_argument("--cpu-only", action="store_true", help="compile the Trainer without GPU requests")


def build_parser() -> argparse.ArgumentParser:
    """Every command and flag of ``kubetfx`` (tests/test_docs.py parses the docs' command lines with it)."""
    parser = argparse.ArgumentParser(prog="kubetfx", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run a pipeline end to end on the embedded default (kfp.local)")
    _add_pipeline(run)
    run.add_argument("--local", action="store_true",
                     help="the embedded default (kfp.local, the default mode of `run`; a cluster: `submit`)")
    run.add_argument("--containers", action="store_true",
                     help="compile, then run every task in its own container from the component image "
                          "(kfp.local DockerRunner; needs a Docker API: Docker, or podman's)")
    run.add_argument("--env", default=None, help="with --containers: compile for pipelines/configs/<ENV>.yaml")
    run.add_argument("--config", default=None, help="with --containers: compile for this environment config")
    run.add_argument("--image", default=None, help="with --containers: the component image to run")
    run.add_argument("--root", default="kubetfx-local", help="local directory for data, pipeline root and logs")
    run.add_argument("--verbose", action="store_true", help="show kfp.local's full task logs")
    run.add_argument("--parallelism", type=_positive_int, default=None,
                     help="tasks run at once where the pipeline's DAG allows, e.g. the Evaluator beside the "
                          "InfraValidator (default: the CPU count, at most 4; 1: one at a time, like kfp.local)")
    run.add_argument("--set", action="append", default=[], metavar="PARAM=VALUE",
                     help="override a pipeline parameter (JSON values are parsed), e.g. "
                          "--set fail_on_anomalies=false --set 'hyperparameters={\"epochs\": 5}'")
    run.set_defaults(handler=_cmd_run)

    comp = commands.add_parser("compile", help="compile a pipeline to KFP IR YAML for an environment")
    _add_pipeline(comp)
    _add_environment(comp)
    comp.set_defaults(handler=_cmd_compile)

    for name, text in (("submit", "compile, upload (a new version) and start a run on Kubeflow Pipelines"),
                       ("schedule", "compile, upload and create or replace the recurring run (cron)")):
        command = commands.add_parser(name, help=text)
        _add_pipeline(command)
        _add_environment(command)
        command.add_argument("--param", action="append", default=[], metavar="PARAM=VALUE",
                             help="a run parameter (JSON values are parsed), over the environment's defaults")
        if name == "submit":
            command.add_argument("--run-name", default=None, help="default: <pipeline>-<env>-<time>")
        else:
            command.add_argument("--cron", default=None, help="override kfp.schedule.cron (six fields)")
        command.set_defaults(handler=_cmd_submit)

    deploy = commands.add_parser("deploy", help="kubectl apply -k the environment's manifests overlay")
    _add_environment(deploy, compiles=False)

    watch = commands.add_parser("monitor", help="compare the local prediction log with the served version's "
                                                "training data; retrain when it has drifted (--retrain)")
    _add_pipeline(watch)
    watch.add_argument("--model", default=None, metavar="NAME",
                       help="any pushed model (instead of a pipeline); --retrain then needs its --data/--label")
    watch.add_argument("--root", default="kubetfx-local", help="local directory (prediction-log/, model-repository/)")
    watch.add_argument("--last-n", type=int, default=0, help="the newest N logged predictions (default: all)")
    watch.add_argument("--start", default="", help="window start (ISO-8601)")
    watch.add_argument("--end", default="", help="window end (ISO-8601, exclusive)")
    watch.add_argument("--labels", default="", help="ground truth: CSV/JSONL of request_id[,instance],label")
    watch.add_argument("--min-records", type=int, default=100, help="decide nothing below this many predictions")
    watch.add_argument("--retrain", action="store_true", help="run the pipeline when the monitor says retrain")
    _add_environment(watch, compiles=False)  # its canary: settings (alpha, margins) decide a local canary
    watch.set_defaults(handler=_cmd_monitor)

    predict = commands.add_parser("predict", help="batch scoring: a CSV/Parquet/TFRecord file (dir, glob, {SPAN}) "
                                                   "with a pushed model, as the predictor serves it")
    predict.add_argument("--data", required=True, metavar="FILE|DIR|GLOB|{SPAN}", help="the rows to score")
    predict.add_argument("--model", required=True, metavar="NAME[:VERSION]",
                         help="a model in the repository (default version: the latest)")
    predict.add_argument("--out", required=True, metavar="FILE",
                         help="the inputs and predictions (.parquet or .csv); PredictionLogs and rejects beside it")
    predict.add_argument("--root", default="kubetfx-local", help="local directory whose model-repository/ to use")
    predict.add_argument("--repository", default=None, help="the model repository (default: <root>/model-repository)")
    predict.add_argument("--batch-size", type=_positive_int, default=None,
                         help="rows per model call (default 65536: a whole read batch; lower it for a wide model)")
    predict.add_argument("--allow-nan", action="store_true",
                         help="score rows with missing numbers (the model imputes them) instead of rejecting them")
    predict.set_defaults(handler=_cmd_predict)

    params = commands.add_parser("params", help="list a pipeline's parameters, their defaults and meaning")
    _add_pipeline(params)
    params.set_defaults(handler=_cmd_params)
    deploy.add_argument("--dry-run", action="store_true", help="server-side dry run")
    deploy.set_defaults(handler=_cmd_deploy)

    manifests = commands.add_parser("manifests", help="render the environments' overlays (offline) to YAML files")
    manifests.add_argument("--env", default=None, help="one environment (default: all)")
    manifests.add_argument("--output-dir", default=os.path.join("build", "manifests"))
    manifests.set_defaults(handler=_cmd_manifests)
    return parser


def main(argv=None) -> int:
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # `kubetfx params | head` ends quietly
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.handler(args, parser)
    except KubetfxError as err:
        print(user_message(err), file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
