"""Katib 0.19.0's checks of an Experiment, offline: its API's field types, and its admission webhook's rules.

``api_problems``: the Experiment against the OpenAPI definitions of Katib's Go types
(``tests/schemas/katib-api/swagger.json.gz``), strict about unknown fields like the CRD checks in
k8s_validation.py; the trial's Job against Kubernetes' own schema. ``webhook_problems``: the rules of
``pkg/webhook/v1beta1/experiment/validator/validator.go`` that apply to a batch-Job trial template,
with the algorithm names of the vendored ``katib-config``.
"""

import gzip
import json
import re
from pathlib import Path

import jsonschema
import kubernetes_validate
import yaml

from k8s_validation import KUBERNETES_VERSION, translate_schema

API_DIR = Path(__file__).parent.parent / "schemas" / "katib-api"
CRD_DIR = Path(__file__).parent.parent / "schemas" / "katib"
_PARAMETER = re.compile(r"\$\{trialParameters\.(.+?)\}")


def _definitions() -> dict:
    with gzip.open(API_DIR / "swagger.json.gz", "rt", encoding="utf-8") as handle:
        definitions = json.load(handle)["definitions"]
    translated = {name: translate_schema(node) for name, node in definitions.items()}
    # Kubernetes types the document refers to but does not define: ObjectMeta is checked by the API server,
    # the trial's Job (unstructured here) by api_problems below.
    for name in ("v1.ObjectMeta", "v1.unstructured.Unstructured", "v1.Container", "v1.HTTPGetAction",
                 "v1.ListMeta", "v1.Time"):
        translated.setdefault(name, {"type": "object"} if name != "v1.Time" else {"type": "string"})
    return translated


def katib_config() -> dict:
    """The KatibConfig of Katib's standalone install (suggestion and early-stopping algorithms)."""
    with gzip.open(API_DIR / "katib-config.yaml.gz", "rt", encoding="utf-8") as handle:
        return yaml.safe_load(handle)


def api_problems(experiment: dict) -> list[str]:
    schema = {"$ref": "#/definitions/v1beta1.Experiment", "definitions": _definitions()}
    problems = [f"{'.'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
                for e in jsonschema.Draft7Validator(schema).iter_errors(experiment)]
    job = experiment.get("spec", {}).get("trialTemplate", {}).get("trialSpec")
    if job:
        try:
            kubernetes_validate.validate({**job, "metadata": {"name": "trial"}}, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as err:
            problems.append(f"spec.trialTemplate.trialSpec: {err.message}")
    return problems


def webhook_problems(experiment: dict) -> list[str]:
    config = katib_config()
    spec, problems = experiment["spec"], []
    name = experiment["metadata"].get("name", "")
    if not re.fullmatch(r"[a-z]([-a-z0-9]*[a-z0-9])?", name) or len(name) > 40:
        problems.append(f"metadata.name '{name}': lower case, '-', starts with a letter, at most 40 characters")
    max_trials, parallel = spec.get("maxTrialCount"), spec.get("parallelTrialCount")
    failed = spec.get("maxFailedTrialCount")
    if max_trials is not None and max_trials <= 0 or parallel is not None and parallel <= 0:
        problems.append("spec.maxTrialCount and spec.parallelTrialCount must be greater than 0")
    if failed is not None and (failed < 0 or max_trials is not None and failed > max_trials):
        problems.append("spec.maxFailedTrialCount must be in [0, spec.maxTrialCount]")
    if parallel is not None and max_trials is not None and parallel > max_trials:
        problems.append("spec.parallelTrialCount should be less than or equal to spec.maxTrialCount")
    objective = spec.get("objective") or {}
    if objective.get("type") not in ("minimize", "maximize") or not objective.get("objectiveMetricName"):
        problems.append("spec.objective: type minimize/maximize and objectiveMetricName are required")
    algorithms = {a["algorithmName"] for a in config["runtime"]["suggestions"]}
    if (spec.get("algorithm") or {}).get("algorithmName") not in algorithms:
        problems.append(f"spec.algorithm.algorithmName: not one of katib-config's {sorted(algorithms)}")
    stoppers = {a["algorithmName"] for a in config["runtime"].get("earlyStoppings", [])}
    if spec.get("earlyStopping") and spec["earlyStopping"].get("algorithmName") not in stoppers:
        problems.append(f"spec.earlyStopping.algorithmName: not one of katib-config's {sorted(stoppers)}")
    names = []
    for i, parameter in enumerate(spec.get("parameters", [])):
        names.append(parameter["name"])
        space = parameter.get("feasibleSpace") or {}
        if parameter.get("parameterType") not in ("int", "double", "categorical", "discrete"):
            problems.append(f"spec.parameters[{i}].parameterType not supported")
        if space.get("distribution", "") not in ("", "uniform", "logUniform", "normal", "logNormal"):
            problems.append(f"spec.parameters[{i}].feasibleSpace.distribution not supported")
        if parameter.get("parameterType") in ("int", "double") and (not space.get("min") or not space.get("max")
                                                                     or space.get("list")):
            problems.append(f"spec.parameters[{i}].feasibleSpace: min and max (and no list) for int/double")
    template = spec.get("trialTemplate") or {}
    job = template.get("trialSpec") or {}
    if not template.get("primaryContainerName") or not template.get("successCondition") \
            or not template.get("failureCondition"):
        problems.append("spec.trialTemplate: primaryContainerName, successCondition and failureCondition required")
    containers = job.get("spec", {}).get("template", {}).get("spec", {}).get("containers", [])
    if template.get("primaryContainerName") not in [c.get("name") for c in containers]:
        problems.append("spec.trialTemplate.primaryContainerName: no such container in the trial's pod")
    declared = [p.get("name") for p in template.get("trialParameters", [])]
    references = [p.get("reference") for p in template.get("trialParameters", [])]
    if len(set(declared)) != len(declared) or len(set(references)) != len(references) or None in declared + references:
        problems.append("spec.trialTemplate.trialParameters: names and references must be given and unique")
    problems += [f"spec.trialTemplate.trialParameters: reference '{r}' is not a parameter" for r in references
                 if r not in names]
    text = json.dumps(job)
    used = set(_PARAMETER.findall(text))
    problems += [f"spec.trialTemplate: ${{trialParameters.{u}}} has no trialParameter" for u in sorted(used - set(declared))]
    problems += [f"spec.trialTemplate.trialParameters: '{d}' not used in the trial template" for d in declared
                 if d not in used]
    return problems
