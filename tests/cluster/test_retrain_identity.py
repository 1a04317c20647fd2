"""The monitor pipeline's RetrainTrigger starts a run with the identity the overlay gives it, not an admin's.

The KFP API here is the contract fake (tests/kfp_fake_api.py) in multi-user mode, but its access
check is multi-user KFP's, made against the real API server: the bearer token is checked with a
TokenReview for KFP's audience (``pipelines.kubeflow.org``) and every call with a
SubjectAccessReview on ``pipelines.kubeflow.org`` in the namespace it acts in (shared pipelines,
which have none, only need an authenticated user). The token comes from
the real API server too (TokenRequest for the pipeline runner's ServiceAccount, as the projected
token volume of a KFP pod has it).
"""

import pytest

from kfp_fake_api import ApiError, FakeKfpApi
from kubetfx.components.common.errors import KubetfxError
from kubetfx.components.retrain_trigger import executor as retrain_trigger

KFP_AUDIENCE = "pipelines.kubeflow.org"
NAMESPACE = "kubetfx-dev"
UPLOADER_RBAC = f"""
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {{name: kfp-uploader}}
rules:
  - apiGroups: [{KFP_AUDIENCE}]
    resources: [pipelines, experiments]
    verbs: [create, get, list]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {{name: kfp-uploader}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: kfp-uploader}}
subjects: [{{kind: ServiceAccount, name: uploader, namespace: {NAMESPACE}}}]
"""


class KubernetesAccessCheck:
    """Multi-user KFP's authentication and authorization of one request, asked of the cluster."""

    def __init__(self, api_client):
        from kubernetes import client

        self.client = client
        self.authentication = client.AuthenticationV1Api(api_client)
        self.authorization = client.AuthorizationV1Api(api_client)
        self.users = []  # who each request authenticated as

    def __call__(self, request, verb: str, resource: str, namespace: str) -> None:
        header = request.headers.get("Authorization", "")
        if not header.startswith("Bearer "):
            raise ApiError(16, "Request header error: there is no user identity header.")
        review = self.authentication.create_token_review(self.client.V1TokenReview(
            spec=self.client.V1TokenReviewSpec(token=header[len("Bearer "):], audiences=[KFP_AUDIENCE])))
        if not review.status.authenticated:
            raise ApiError(16, f"Failed to authenticate token review: {review.status.error or 'not authenticated'}")
        user = review.status.user
        self.users.append(user.username)
        if not namespace and resource == "pipelines":
            return  # shared pipelines (no namespace): multi-user KFP lets every authenticated user read them
        attributes = self.client.V1ResourceAttributes(namespace=namespace, verb=verb, group=KFP_AUDIENCE,
                                                      version="v1beta1", resource=resource)
        access = self.authorization.create_subject_access_review(self.client.V1SubjectAccessReview(
            spec=self.client.V1SubjectAccessReviewSpec(user=user.username, groups=user.groups,
                                                       resource_attributes=attributes)))
        if not access.status.allowed:
            raise ApiError(7, f"User '{user.username}' is not authorized with reason: {access.status.reason} "
                              f"(request: {verb} {resource} in namespace {namespace})")


@pytest.fixture(scope="module")
def deployed(cluster, kserve_crds):
    cluster.delete_namespace(NAMESPACE)
    result = cluster.kubetfx("deploy", "--env", "dev")
    assert result.returncode == 0, result.stderr
    # Somebody who may upload pipelines (as `make submit` would, with a person's or CI's identity).
    cluster.kubectl("create", "serviceaccount", "uploader", "-n", NAMESPACE)
    cluster.kubectl("apply", "-n", NAMESPACE, "-f", "-", input_text=UPLOADER_RBAC)
    yield NAMESPACE
    cluster.delete_namespace(NAMESPACE)


@pytest.fixture
def kfp(cluster, deployed):
    check = KubernetesAccessCheck(cluster.api_client())
    with FakeKfpApi(multi_user=True, authorizer=check) as api:
        api.access = check
        yield api


def _upload(cluster, kfp, tmp_path) -> None:
    """The training pipeline, uploaded in the namespace with the uploader's token."""
    import kfp as kfp_sdk

    package = tmp_path / "training.yaml"
    package.write_text("pipelineInfo:\n  name: kubetfx-penguin\n")
    client = kfp_sdk.Client(host=kfp.url, namespace=NAMESPACE, existing_token=cluster.token(NAMESPACE, "uploader", KFP_AUDIENCE))
    client.upload_pipeline(str(package), pipeline_name="kubetfx-penguin")  # shared, as `make submit` uploads


def _token_file(cluster, tmp_path, service_account: str, audience: str = KFP_AUDIENCE) -> str:
    path = tmp_path / f"{service_account}.token"
    path.write_text(cluster.token(NAMESPACE, service_account, audience))
    return str(path)


def test_the_retrain_trigger_starts_a_run_as_the_pipeline_runner(cluster, kfp, tmp_path):
    _upload(cluster, kfp, tmp_path)
    result = retrain_trigger.run("kubetfx-penguin", experiment="kubetfx-dev", host=kfp.url, namespace=NAMESPACE,
                                 token_file=_token_file(cluster, tmp_path, "kubetfx-pipeline-runner"),
                                 service_account="kubetfx-pipeline-runner", reason="drift in bill_length_mm")
    assert result["run_id"] in kfp.runs
    run = kfp.runs[result["run_id"]]
    assert run["service_account"] == "kubetfx-pipeline-runner"
    runner = f"system:serviceaccount:{NAMESPACE}:kubetfx-pipeline-runner"
    uploader = f"system:serviceaccount:{NAMESPACE}:uploader"
    assert set(kfp.access.users) == {uploader, runner}  # nobody else, no admin
    assert kfp.requests[-1].method == "POST" and kfp.requests[-1].path.endswith("/runs")


def test_another_service_account_is_refused_in_one_line(cluster, kfp, tmp_path):
    _upload(cluster, kfp, tmp_path)
    cluster.kubectl("create", "serviceaccount", "stranger", "-n", NAMESPACE)
    with pytest.raises(KubetfxError) as refused:
        retrain_trigger.run("kubetfx-penguin", experiment="kubetfx-dev", host=kfp.url, namespace=NAMESPACE,
                            token_file=_token_file(cluster, tmp_path, "stranger"))
    message = str(refused.value)
    assert "403" in message and "\n" not in message
    assert not kfp.runs


def test_a_token_for_another_audience_is_not_accepted(cluster, kfp, tmp_path):
    _upload(cluster, kfp, tmp_path)
    with pytest.raises(KubetfxError, match="401"):
        retrain_trigger.run("kubetfx-penguin", experiment="kubetfx-dev", host=kfp.url, namespace=NAMESPACE,
                            token_file=_token_file(cluster, tmp_path, "kubetfx-pipeline-runner",
                                                   audience="https://kubernetes.default.svc.cluster.local"))
    assert not kfp.runs
