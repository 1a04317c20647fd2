"""Kubernetes value rules (quantities, label keys and values) as the API server applies them.

The cases the real API server was asked about are in tests/cluster/test_server_dry_run.py; these
are the rules' own edges, checked without a cluster.
"""

import decimal

import pytest

from kubetfx.components.common import kubernetes_values as kv


@pytest.mark.parametrize("text, value", [
    ("500m", decimal.Decimal("0.5")), ("2", 2), ("1.5Gi", decimal.Decimal(1.5 * 2 ** 30)), ("1Ki", 1024),
    ("5e3", 5000), (".5", decimal.Decimal("0.5")), ("2k", 2000), (3, 3), (2.0, 2), ("+1", 1),
])
def test_quantities_the_server_accepts_parse_to_their_value(text, value):
    assert kv.parse_quantity(text) == value


@pytest.mark.parametrize("text", ["5 Gi", "5GB", "1.5 ", "Gi", "", "1Gii", "one", "1e", None, True, [1]])
def test_quantities_the_server_refuses_are_refused_naming_the_value(text):
    with pytest.raises(ValueError, match="quantity"):
        kv.parse_quantity(text)
    assert not kv.is_quantity(text)


@pytest.mark.parametrize("value, refused", [
    ("", False), ("a" * 63, False), ("a" * 64, True), ("ml-team_1.x", False), ("-ml", True), ("ml-", True),
    ("has space", True), (3, True),
])
def test_label_values(value, refused):
    assert bool(kv.label_value_problem(value)) == refused


@pytest.mark.parametrize("key, refused", [
    ("team", False), ("kubetfx.io/applied-by", False), ("Example.com/x", True), ("a/" + "b" * 64, True),
    ("/x", True), ("", True), ("x" * 64, True),
])
def test_label_and_annotation_keys(key, refused):
    assert bool(kv.qualified_name_problem(key)) == refused


def test_object_problems_name_the_object_and_the_field():
    pvc = {"kind": "PersistentVolumeClaim", "metadata": {"name": "data", "labels": {"team": "x" * 64}},
           "spec": {"resources": {"requests": {"storage": "5 Gi"}}}}
    problems = kv.object_problems(pvc)
    assert len(problems) == 2
    assert problems[0].startswith("PersistentVolumeClaim data: metadata.labels: label team=")
    assert problems[1].startswith("PersistentVolumeClaim data: spec.resources.requests.storage: '5 Gi'")
    node_affinity = {"kind": "Pod", "metadata": {"name": "p"}, "spec": {"nodeSelector": {"pool": "gpu"}}}
    assert kv.object_problems(node_affinity) == []
