"""Client traffic for the serving-loop tests: penguin rows as requests, sent over real HTTP, with late labels.

Shared by the monitor-loop, retention and canary tests (no test module imports another).
"""

import csv
import random


def penguin_traffic(table, count: int, seed: int, shift=None, as_floats: bool = False) -> list[tuple[dict, str]]:
    """``count`` (instance, label) pairs drawn with replacement from the penguins.

    ``shift(row, rng)`` changes a row; ``as_floats``: integer columns as pandas gives them when a column
    has a missing value anywhere (``181.0``), which a predictor accepts for an INT feature.
    """
    rows = table.to_pylist()
    rng = random.Random(seed)
    drawn = []
    for _ in range(count):
        row = dict(rng.choice(rows))
        label = row.pop("species")
        if shift:
            row = shift(row, rng)
        if as_floats:
            row = {k: float(v) if type(v) is int else v for k, v in row.items()}
        drawn.append((row, label))
    return drawn


def longer_bills(row: dict, rng: random.Random) -> dict:
    """The world changes: bills 30% longer (what the model tells species by)."""
    row["bill_length_mm"] = round(row["bill_length_mm"] * 1.3, 1)
    return row


def send(server, traffic: list[tuple[dict, str]], batch: int = 10) -> list[dict]:
    """V1 requests of ``batch`` instances; one entry per request: status, answer, and the labels it carried."""
    sent = []
    for start in range(0, len(traffic), batch):
        chunk = traffic[start:start + batch]
        status, body = server.predict([instance for instance, _ in chunk])
        sent.append({"status": status, "body": body, "labels": [label for _, label in chunk]})
    return sent


def write_labels(path, sent: list[dict]) -> int:
    """The ground truth arriving later, as the monitor takes it: request_id,instance,label (answered requests)."""
    count = 0
    with open(path, "a", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        if handle.tell() == 0:
            writer.writerow(["request_id", "instance", "label"])
        for request in sent:
            if request["status"] != 200:
                continue
            for index, label in enumerate(request["labels"]):
                writer.writerow([request["body"]["id"], index, label])
                count += 1
    return count
