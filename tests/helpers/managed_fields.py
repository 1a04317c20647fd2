"""Who wrote which field of a Kubernetes object, read from its managedFields (server-side apply's record)."""


def managers(obj: dict) -> dict:
    """{manager: operation} of an object's managedFields."""
    return {entry["manager"]: entry["operation"] for entry in obj["metadata"].get("managedFields") or []}


def entry(obj: dict, manager: str) -> dict:
    """One field manager's managedFields entry (its fields and the time it last changed them)."""
    return next(e for e in obj["metadata"]["managedFields"] if e["manager"] == manager)


def owners(obj: dict, *path: str) -> list[str]:
    """The managers that own a field (``spec``, ``predictor``, ``model``, ``storageUri``)."""
    found = []
    for item in obj["metadata"].get("managedFields") or []:
        node = item.get("fieldsV1") or {}
        for key in path:
            node = node.get(f"f:{key}")
            if node is None:
                break
        else:
            found.append(item["manager"])
    return found


def spec_writers(obj: dict) -> set[str]:
    """The managers that own part of an object's spec or its kubetfx.io annotations (not its status or
    finalizers, which KServe's controller keeps)."""
    writers = set()
    for item in obj["metadata"].get("managedFields") or []:
        fields = item.get("fieldsV1") or {}
        annotations = (fields.get("f:metadata") or {}).get("f:annotations") or {}
        if item.get("subresource") != "status" and ("f:spec" in fields or any(
                key.startswith("f:kubetfx.io/") for key in annotations)):
            writers.add(item["manager"])
    return writers
