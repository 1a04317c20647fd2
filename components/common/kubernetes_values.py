"""Kubernetes value rules in one place: resource quantities, object names, label keys and values.

The API server's own grammar (k8s.io/apimachinery: resource.Quantity, validation.IsDNS1123Label,
IsQualifiedName, IsValidLabelValue), so the config loader, the Pusher and the offline manifest
check refuse exactly what a cluster refuses ("5 Gi", a 64-character label value) before a cluster sees it.
"""

import decimal
import re

# <signedNumber><suffix>: suffix = binarySI (Ki..Ei) | decimalSI (n u m "" k M G T P E) | e/E<signedNumber>
_NUMBER = r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)"
QUANTITY = re.compile(rf"^([+-]?{_NUMBER})((?:[KMGTPE]i)|[numkMGTPE]|[eE][+-]?{_NUMBER})?$")
_BINARY = {"Ki": 2 ** 10, "Mi": 2 ** 20, "Gi": 2 ** 30, "Ti": 2 ** 40, "Pi": 2 ** 50, "Ei": 2 ** 60}
_DECIMAL = {"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}

DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
DNS1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_QUALIFIED_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
LABEL_MAX = 63
SUBDOMAIN_MAX = 253


def parse_quantity(value) -> decimal.Decimal:
    """The value of a quantity ("500m", "1.5", "2Gi", 3); ValueError, naming the value, if the server would refuse it.

    Whitespace is refused as the API server refuses it ("5 Gi" is not a quantity).
    """
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ValueError(f"{value!r} is not a resource quantity")
    text = str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)
    match = QUANTITY.match(text)
    if not match:
        raise ValueError(f"{value!r} is not a resource quantity (examples: 500m, 2, 1.5, 512Mi, 4Gi)")
    number, suffix = decimal.Decimal(match.group(1)), match.group(2) or ""
    if suffix in _BINARY:
        return number * _BINARY[suffix]
    if suffix in _DECIMAL:
        return number.scaleb(_DECIMAL[suffix])
    return number.scaleb(int(decimal.Decimal(suffix[1:])))


def is_quantity(value) -> bool:
    try:
        parse_quantity(value)
    except ValueError:
        return False
    return True


def label_value_problem(value) -> str | None:
    """Why the API server would refuse ``value`` as a label value (None: it would not)."""
    if not isinstance(value, str):
        return f"label values are strings, got {value!r}"
    if len(value) > LABEL_MAX:
        return f"a label value is at most {LABEL_MAX} characters, got {len(value)}"
    if not _LABEL_VALUE.match(value):
        return "a label value is empty or letters, digits, '-', '_' and '.', starting and ending alphanumeric"
    return None


def qualified_name_problem(key) -> str | None:
    """Why the API server would refuse ``key`` as a label or annotation key (``[prefix/]name``)."""
    if not isinstance(key, str) or not key:
        return "a key is a non-empty string"
    prefix, slash, name = key.rpartition("/")
    if slash and (not prefix or len(prefix) > SUBDOMAIN_MAX or not DNS1123_SUBDOMAIN.match(prefix)):
        return f"the prefix '{prefix}' must be a DNS-1123 subdomain (lower-case, at most {SUBDOMAIN_MAX} characters)"
    if len(name) > LABEL_MAX or not _QUALIFIED_NAME.match(name):
        return (f"the name part '{name}' must be at most {LABEL_MAX} characters of letters, digits, '-', '_' "
                "and '.', starting and ending alphanumeric")
    return None


def _annotation_value_problem(value) -> str | None:
    return None if isinstance(value, str) else f"annotation values are strings, got {value!r}"


def _map_problems(mapping, where: str, kind: str, value_problem) -> list[str]:
    """One line per key or value of a labels/annotations map the API server would refuse."""
    if mapping is None:
        return []
    if not isinstance(mapping, dict):
        return [f"{where}: {kind}s must be a mapping of string to string"]
    problems = []
    for key, value in mapping.items():
        for problem, what in ((qualified_name_problem(key), f"{kind} key '{key}'"),
                              (value_problem(value), f"{kind} {key}={value!r}")):
            if problem:
                problems.append(f"{where}: {what}: {problem}")
    return problems


def labels_problems(labels, where: str) -> list[str]:
    """One line per label the API server would refuse (key or value)."""
    return _map_problems(labels, where, "label", label_value_problem)


def annotations_problems(annotations, where: str) -> list[str]:
    """One line per annotation the API server would refuse (key, or a value that is not a string)."""
    return _map_problems(annotations, where, "annotation", _annotation_value_problem)


def walk(node, path=()):
    """(path, key, value) for every mapping entry under ``node``."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield path, key, value
            yield from walk(value, path + (key,))
    elif isinstance(node, list):
        for index, item in enumerate(node):
            yield from walk(item, path + (index,))


def _dotted(parts) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in parts).lstrip(".")


def object_problems(obj: dict) -> list[str]:
    """What the API server refuses in any object beyond its schema: label keys and values (metadata, selectors,
    pod templates, node selectors) and resource quantities (requests, limits, a PVC's storage). One line each."""
    metadata = obj.get("metadata") if isinstance(obj.get("metadata"), dict) else {}
    who = f"{obj.get('kind', '?')} {metadata.get('name', '?')}"
    problems = []
    for path, key, value in walk(obj):
        where = f"{who}: {_dotted(list(path) + [key])}"
        if key in ("labels", "matchLabels", "nodeSelector") and isinstance(value, dict) \
                and "nodeSelectorTerms" not in value:
            problems += labels_problems(value, where)
        elif key in ("requests", "limits") and isinstance(value, dict) and path[-1:] == ("resources",):
            for resource, quantity in value.items():
                if not is_quantity(quantity):
                    problems.append(f"{where}.{resource}: {quantity!r} is not a resource quantity "
                                    "(examples: 500m, 2, 512Mi, 4Gi)")
    return problems
