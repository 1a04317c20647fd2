"""A recording stand-in for ``kubernetes.client.CustomObjectsApi`` that stores objects and applies merge patches.

For offline tests of the Pusher's KServe calls; the real API server is in tests/cluster.
"""

import copy

from kubernetes.client.exceptions import ApiException

from kubetfx.components.pusher.local_rollout import merge_patch  # RFC 7386, what the API server does with a patch


class RecordingCustomObjectsApi:
    """Stores objects by (namespace, name); ``calls`` has (verb, *positional args), ``options`` their keywords."""

    def __init__(self, objects=None, fail=None):
        self.objects = {key: copy.deepcopy(value) for key, value in (objects or {}).items()}
        self.calls, self.options = [], []
        self.fail = fail

    def _record(self, call: tuple, options: dict) -> None:
        self.calls.append(call)
        self.options.append(options)
        if self.fail:
            raise self.fail

    def get_namespaced_custom_object(self, group, version, namespace, plural, name, **options):
        self._record(("get", group, version, namespace, plural, name), options)
        if (namespace, name) not in self.objects:
            raise ApiException(status=404, reason="Not Found")
        return copy.deepcopy(self.objects[(namespace, name)])

    def create_namespaced_custom_object(self, group, version, namespace, plural, body, **options):
        self._record(("create", group, version, namespace, plural, body), options)
        self.objects[(namespace, body["metadata"]["name"])] = copy.deepcopy(body)
        return body

    def patch_namespaced_custom_object(self, group, version, namespace, plural, name, body, **options):
        self._record(("patch", group, version, namespace, plural, name, body), options)
        if (namespace, name) in self.objects:
            self.objects[(namespace, name)] = merge_patch(self.objects[(namespace, name)], body)
        return body
