"""The native PredictionLog fill (components/common/_rowfill.c): built where a C compiler is, the same bytes as
numpy's fill and protobuf's, CRC32C equal to google_crc32c, and a bad call refused with ValueError, never a crash."""

import os
import shutil

import google_crc32c
import numpy as np
import pyarrow as pa
import pytest

from kubetfx.components.common import protolayout, tfrecord
from kubetfx.components.common.protolayout import Choice, Delimited

rowfill = protolayout._rowfill  # noqa: SLF001


def test_the_native_fill_is_built_where_a_c_compiler_is():
    if not shutil.which(os.environ.get("CC", "cc")):
        pytest.skip("no C compiler here: the install falls back to numpy's fill")
    assert rowfill is not None, "pip install -e . should have built kubetfx.components.common._rowfill"


needs_native = pytest.mark.skipif(rowfill is None, reason="the native fill is not built (no C compiler at install)")


@needs_native
@pytest.mark.parametrize("hardware", [True, False])
def test_crc32c_by_instruction_and_by_table_equals_google_crc32c(hardware):
    used = rowfill.set_hardware(hardware)
    try:
        assert used == (hardware and used)  # the instruction only where asked for (and the CPU has it)
        rng = np.random.default_rng(5)
        for size in list(range(0, 20)) + [443, 1000, 4097]:
            data = rng.integers(0, 256, size, dtype=np.uint8).tobytes()
            assert rowfill.crc32c(data) == google_crc32c.value(data)
    finally:
        rowfill.set_hardware(True)


def _message(rng, n: int):
    """Rows of several layouts: fixed floats, varints of several sizes, a few strings of several lengths (a
    choice), per-row text of a few lengths (ragged), a nested length-delimited field around them."""
    from kubetfx.components.common import protowire

    floats = rng.random((n, 3), dtype=np.float32).view(np.uint8).reshape(n, 12)
    varints = protowire.varints(rng.integers(0, 2 ** 20, n) * (rng.random(n) > 0.5))
    words = pa.array([b"\x0a\x01a", b"\x0a\x04bcde", b"\x0a\x00"], type=pa.large_binary())
    choice = Choice(rng.integers(0, 3, n), words)
    text = pa.array([b"t" * int(k) for k in rng.integers(0, 4, n)], type=pa.large_binary())
    inner = Delimited(b"\x12", (b"\x08\x01", varints, text))
    return Delimited(b"\x32", (b"\x0a\x03abc", Delimited(b"\x1a", (floats,)), choice, inner))


@needs_native
@pytest.mark.parametrize("hardware", [True, False])
@pytest.mark.parametrize("n", [1, 2, 3, 4, 7, 5000])  # the instruction's CRCs go three records at a time
def test_native_and_numpy_fills_give_the_same_framed_records_as_the_join(n, hardware, monkeypatch):
    rng = np.random.default_rng(n)
    message = _message(rng, n)
    rowfill.set_hardware(hardware)
    try:
        native = protolayout.layout(message, n, framed=True)
    finally:
        rowfill.set_hardware(True)
    monkeypatch.setattr(protolayout, "_rowfill", None)
    numpy = protolayout.layout(message, n, framed=True)
    data, sizes = native.bytes()
    expected = tfrecord.encode_records(protolayout.joined(message, n).to_pylist())
    assert bytes(data) == bytes(numpy.bytes()[0]) == expected
    assert sizes.tolist() == numpy.bytes()[1].tolist() and int(sizes.sum()) == len(expected)
    native.release()
    numpy.release()


@needs_native
def test_a_bad_call_is_a_value_error_not_a_crash():
    template = bytes(16 + 4)  # a 4-byte record
    source = (0, np.zeros((2, 4), np.uint8), None, 4)
    good = (np.zeros(40, np.uint8), np.zeros(2, np.int32), [template], [[(12, 4, 0)]], [source])
    rowfill.fill(*good)
    cases = {
        "group out of range": (good[0], np.array([0, 1], np.int32), *good[2:]),
        "output too small": (np.zeros(39, np.uint8), *good[1:]),
        "output too large": (np.zeros(41, np.uint8), *good[1:]),
        "part outside the record": (*good[:3], [[(14, 4, 0)]], good[4]),
        "source out of range": (*good[:3], [[(12, 4, 1)]], good[4]),
        "rows beyond the source": (np.zeros(60, np.uint8), np.zeros(3, np.int32), *good[2:]),
        "index beyond the data": (*good[:4], [(1, np.zeros(4, np.uint8), np.array([0, 1], np.int64), 0)]),
        "negative index": (*good[:4], [(2, np.zeros((2, 4), np.uint8), np.array([0, -1], np.int64), 4)]),
        "bad kind": (*good[:4], [(3, np.zeros(8, np.uint8), None, 4)]),
        "groups not int32": (good[0], np.zeros(2, np.int64), *good[2:]),
        "index not int64": (*good[:4], [(1, np.zeros(8, np.uint8), np.array([0, 4], np.int32), 0)]),
        "a scratch buffer smaller than a row": (np.zeros(19, np.uint8), *good[1:], lambda view: None),
    }
    for case, args in cases.items():
        with pytest.raises(ValueError):
            rowfill.fill(*args)
        print("refused:", case)
    with pytest.raises((TypeError, BufferError)):
        rowfill.fill(b"read-only output!!!" * 2 + b"xx", *good[1:])
    with pytest.raises(TypeError):
        rowfill.fill(*good, "not a callable")


@needs_native
@pytest.mark.parametrize("chunk", [1, 300, 1 << 18])  # 1: one row a chunk (a chunk is never less than a row)
def test_rows_written_to_a_file_in_chunks_are_the_rows_laid_out_whole(chunk, monkeypatch):
    rng = np.random.default_rng(11)
    message = _message(rng, 3001)
    expected = tfrecord.encode_records(protolayout.joined(message, 3001).to_pylist())
    monkeypatch.setattr(protolayout._FilledInOrder, "CHUNK_BYTES", chunk)  # noqa: SLF001
    chunks = []

    class File:
        def write(self, view):
            chunks.append(bytes(view))

    protolayout.layout(message, 3001, framed=True).write_to(File())
    assert b"".join(chunks) == expected
    sizes = protolayout.layout(message, 3001, framed=True).bytes()[1]
    room = max(chunk, int(sizes.max()))
    assert set(np.cumsum([len(part) for part in chunks]).tolist()) <= set(np.cumsum(sizes).tolist())  # whole rows
    assert max(len(part) for part in chunks) <= room and len(chunks) >= len(expected) // room


@needs_native
def test_a_failing_file_stops_the_chunked_write_with_its_error():
    message = _message(np.random.default_rng(2), 5000)

    class FullDisk:
        calls = 0

        def write(self, view):
            FullDisk.calls += 1
            raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space left"):
        protolayout.layout(message, 5000, framed=True).write_to(FullDisk())
    assert FullDisk.calls == 1


@pytest.mark.parametrize("native", [True, False])
def test_a_batch_of_known_layouts_reuses_their_templates_and_gives_the_same_bytes(native, monkeypatch):
    if not native:
        monkeypatch.setattr(protolayout, "_rowfill", None)
    elif rowfill is None:
        pytest.skip("the native fill is not built (no C compiler at install)")
    built = []
    template = protolayout._template  # noqa: SLF001
    monkeypatch.setattr(protolayout, "_template", lambda *args: built.append(1) or template(*args))
    monkeypatch.setattr(protolayout, "_TEMPLATES", {})
    # a new batch of the same rows (new arrays): no template built; then other rows, some layouts known, some new
    for seed, expect_new in ((1, True), (1, False), (2, None)):
        message = _message(np.random.default_rng(seed), 500)
        built.clear()
        rows = protolayout.layout(message, 500, framed=True)
        assert expect_new is None or bool(built) == expect_new, built
        expected = tfrecord.encode_records(protolayout.joined(message, 500).to_pylist())
        assert bytes(rows.bytes()[0]) == expected
        rows.release()
