"""The first security test: what the pipeline runs' ServiceAccount may do, asked of the real authorizer.

`make deploy` applies the overlay; then every row below is a SubjectAccessReview for
``system:serviceaccount:<ns>:kubetfx-pipeline-runner`` (the identity the Pusher and the monitor
pipeline run as). What the Pusher and the RetrainTrigger need is allowed; everything else,
including other namespaces, secrets, pods, deletes, RBAC escalation, token minting and CRDs, is not.
A second check runs `kubectl auth can-i --as` for a few rows, the way an operator would ask (only for
resources the server knows: kubectl resolves names through discovery, and no KFP API is served here).
"""

import pytest

RUNNER = "kubetfx-pipeline-runner"
KSERVE = "serving.kserve.io"
KFP = "pipelines.kubeflow.org"
OTHER = "other"  # a namespace of somebody else's

# (verb, group, resource, subresource, namespace ("" = the overlay's), allowed, why)
TABLE = [
    # The Pusher: read, create and patch the InferenceService; watch it for canary decisions.
    ("get", KSERVE, "inferenceservices", "", "", True, "Pusher reads the current object"),
    ("list", KSERVE, "inferenceservices", "", "", True, "Pusher lists"),
    ("watch", KSERVE, "inferenceservices", "", "", True, "Pusher waits for a rollout"),
    ("create", KSERVE, "inferenceservices", "", "", True, "Pusher creates the first version"),
    ("patch", KSERVE, "inferenceservices", "", "", True, "Pusher patches new versions, canary, rollback, promote"),
    # The RetrainTrigger (monitor pipeline): start the newest training version through the KFP API
    # (multi-user KFP asks the cluster's authorizer these questions, in the profile namespace).
    ("get", KFP, "pipelines", "", "", True, "RetrainTrigger finds the training pipeline"),
    ("list", KFP, "pipelines", "", "", True, "RetrainTrigger lists its versions"),
    ("get", KFP, "experiments", "", "", True, "RetrainTrigger finds the experiment"),
    ("list", KFP, "experiments", "", "", True, "RetrainTrigger finds the experiment"),
    ("create", KFP, "experiments", "", "", True, "RetrainTrigger creates it the first time"),
    ("create", KFP, "runs", "", "", True, "RetrainTrigger starts the run"),
    ("get", KFP, "runs", "", "", True, "RetrainTrigger reads the run it started"),
    # Nothing more on those resources.
    ("delete", KSERVE, "inferenceservices", "", "", False, "no deletes"),
    ("update", KSERVE, "inferenceservices", "", "", False, "patch only"),
    ("patch", KSERVE, "inferenceservices", "status", "", False, "status is the KServe controller's"),
    ("create", KSERVE, "servingruntimes", "", "", False, "the runtime is make deploy's"),
    ("patch", KSERVE, "servingruntimes", "", "", False, "the runtime is make deploy's"),
    ("delete", KFP, "runs", "", "", False, "no deletes in KFP"),
    ("delete", KFP, "pipelines", "", "", False, "no deletes in KFP"),
    ("create", KFP, "pipelines", "", "", False, "uploads are make submit's"),
    ("create", KFP, "jobs", "", "", False, "recurring runs are make schedule's"),
    # Other namespaces: nothing.
    ("get", KSERVE, "inferenceservices", "", OTHER, False, "other namespaces"),
    ("create", KSERVE, "inferenceservices", "", OTHER, False, "other namespaces"),
    ("create", KFP, "runs", "", OTHER, False, "other namespaces"),
    # Core objects: nothing.
    ("get", "", "secrets", "", "", False, "secrets"),
    ("list", "", "secrets", "", "", False, "secrets"),
    ("get", "", "pods", "", "", False, "pods"),
    ("create", "", "pods", "", "", False, "pods"),
    ("create", "", "pods", "exec", "", False, "exec"),
    ("get", "", "configmaps", "", "", False, "configmaps"),
    ("delete", "", "persistentvolumeclaims", "", "", False, "the model repository's volume"),
    ("create", "", "serviceaccounts", "token", "", False, "token minting"),
    ("create", "", "serviceaccounts", "token", OTHER, False, "token minting"),
    ("impersonate", "", "serviceaccounts", "", "", False, "impersonation"),
    # RBAC escalation and the cluster.
    ("create", "rbac.authorization.k8s.io", "roles", "", "", False, "RBAC"),
    ("patch", "rbac.authorization.k8s.io", "roles", "", "", False, "RBAC"),
    ("create", "rbac.authorization.k8s.io", "rolebindings", "", "", False, "RBAC"),
    ("bind", "rbac.authorization.k8s.io", "clusterroles", "", "", False, "RBAC bind"),
    ("escalate", "rbac.authorization.k8s.io", "roles", "", "", False, "RBAC escalate"),
    ("create", "apiextensions.k8s.io", "customresourcedefinitions", "", None, False, "CRDs"),
    ("delete", "apiextensions.k8s.io", "customresourcedefinitions", "", None, False, "CRDs"),
    ("list", "", "namespaces", "", None, False, "namespaces"),
    ("get", "", "nodes", "", None, False, "nodes"),
    ("create", "certificates.k8s.io", "certificatesigningrequests", "", None, False, "certificates"),
]


@pytest.fixture(scope="module")
def deployed(cluster, kserve_crds):
    """`kubetfx deploy --env dev` into a fresh cluster namespace (kubetfx-dev), removed after the module."""
    cluster.delete_namespace("kubetfx-dev")
    result = cluster.kubetfx("deploy", "--env", "dev")
    assert result.returncode == 0, result.stderr
    cluster.kubectl("create", "namespace", OTHER)
    yield "kubetfx-dev"
    cluster.delete_namespace(OTHER, wait=False)
    cluster.delete_namespace("kubetfx-dev")


def _allowed(cluster, user: str, groups: list[str], verb: str, group: str, resource: str, subresource: str,
             namespace: str | None) -> tuple[bool, str]:
    from kubernetes import client

    api = client.AuthorizationV1Api(cluster.api_client())
    attributes = client.V1ResourceAttributes(verb=verb, group=group, resource=resource,
                                             subresource=subresource or None, namespace=namespace)
    review = api.create_subject_access_review(client.V1SubjectAccessReview(
        spec=client.V1SubjectAccessReviewSpec(user=user, groups=groups, resource_attributes=attributes)))
    return bool(review.status.allowed), review.status.reason or ""


def test_the_runner_may_do_exactly_what_the_pusher_and_the_monitor_need(cluster, deployed):
    user = f"system:serviceaccount:{deployed}:{RUNNER}"
    groups = ["system:serviceaccounts", f"system:serviceaccounts:{deployed}", "system:authenticated"]
    wrong = []
    for verb, group, resource, subresource, namespace, expected, why in TABLE:
        where = deployed if namespace == "" else namespace
        allowed, reason = _allowed(cluster, user, groups, verb, group, resource, subresource, where)
        if allowed != expected:
            what = f"{verb} {resource}{'/' + subresource if subresource else ''}.{group or 'core'} in {where}"
            wrong.append(f"{what}: {'allowed' if allowed else 'denied'}, expected "
                         f"{'allowed' if expected else 'denied'} ({why}; {reason})")
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("verb,resource,expected", [
    ("patch", "inferenceservices.serving.kserve.io", "yes"),
    ("delete", "inferenceservices.serving.kserve.io", "no"),
    ("get", "secrets", "no"),
    ("create", "pods", "no"),
])
def test_kubectl_auth_can_i_agrees(cluster, deployed, verb, resource, expected):
    result = cluster.kubectl("auth", "can-i", verb, resource, "-n", deployed,
                             f"--as=system:serviceaccount:{deployed}:{RUNNER}", check=False)
    assert result.stdout.strip() == expected, result.stderr
