"""``background.ahead``: items made on a thread, in order, a producer's failure raised in the caller, and a caller
that stops early stopping the producer."""

import threading
import time

import pytest

from kubetfx.components.common import background


def test_items_come_in_order_and_made_on_another_thread():
    made_on = []

    def items():
        for index in range(50):
            made_on.append(threading.get_ident())
            yield index

    assert list(background.ahead(items(), "test-ahead", depth=3)) == list(range(50))
    assert set(made_on) and threading.get_ident() not in made_on


def test_a_producers_error_is_raised_in_the_caller_after_the_items_before_it():
    def items():
        yield 1
        yield 2
        raise ValueError("bad row 3")

    got = []
    with pytest.raises(ValueError, match="bad row 3"):
        for item in background.ahead(items(), "test-ahead"):
            got.append(item)
    assert got == [1, 2]


def test_a_caller_that_stops_early_stops_and_closes_the_producer():
    made, closed = [], threading.Event()

    def items():
        try:
            for index in range(10_000):
                made.append(index)
                yield index
        finally:
            closed.set()

    before = threading.active_count()
    for item in background.ahead(items(), "test-ahead", depth=2):
        if item == 3:
            break
    assert closed.wait(5) and len(made) <= 3 + 1 + 2 + 1  # the item taken, the ones waiting, the one being put
    deadline = time.monotonic() + 5
    while threading.active_count() > before and time.monotonic() < deadline:
        time.sleep(0.01)
    assert threading.active_count() <= before
