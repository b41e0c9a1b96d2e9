"""`verify.Search`: the values of many originals searched for in one pass over each output.

It must find every value ``find_leaks`` would find in the same bytes or text (it may name
more: ``find_leaks`` judges those). The modules that test leak scenarios run every
``find_leaks`` of theirs through a search too (the ``leaks_searched_both_ways`` fixture).
"""

from __future__ import annotations

import random

import pydicom
import pytest

from indexer import work
from indexer.deid import build_plan, rawvalue, verify
from indexer.deid.verify import ENCODINGS, Generated, Search, _needles, _spans
from tests.builders import in_transfer_syntax, make_instance, to_bytes

MARK = "PHIMARK"
WORDS = ["DOE^JOHN", "Müller^Jürgen", "山田^太郎", "ΓΙΩΡΓΟΣ", "1.2.840.99.7.3", "20201231", "ID12"]


def _values(rng: random.Random, n: int) -> list[str]:
    """Names, UIDs, dates and IDs of every script the needles are made for."""
    out = list(WORDS)
    for _ in range(n):
        kind = rng.randrange(4)
        if kind == 0:
            out.append(".".join(str(rng.randrange(1, 99999)) for _ in range(rng.randrange(3, 9))))
        elif kind == 1:
            out.append("".join(rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ^ ") for _ in range(6)))
        elif kind == 2:
            out.append(
                "".join(rng.choice("äöüßéèçñÅØ山田太郎ΓΙΩ") for _ in range(rng.randrange(2, 6)))
            )
        else:  # a value with a NUL inside (a damaged one), and a lone letter's worth
            out.append(f"AB\x00{rng.randrange(10**6)}")
    return list(dict.fromkeys(v for v in out if v.strip()))


def _haystack(rng: random.Random, values: list[str]) -> bytes:
    """Random bytes with some values written into them, in every encoding and alignment."""
    parts = [rng.randbytes(rng.randrange(0, 40))]
    for value in rng.sample(values, 8):
        enc = rng.choice(ENCODINGS)
        try:
            parts.append(value.encode(enc))
        except UnicodeEncodeError:
            continue
        parts.append(rng.randbytes(rng.randrange(0, 3)))  # odd offsets for UTF-16
    return b"".join(parts)


@pytest.mark.parametrize("seed", range(20))
def test_a_search_finds_every_value_the_needles_find(seed):
    rng = random.Random(seed)  # noqa: S311 - a reproducible test, no secret
    values = _values(rng, 200)
    search = Search(dict.fromkeys(values, "(0010,0010)"))
    for _ in range(20):
        raw = _haystack(rng, values)
        needed = {v for v in values if any(needle in raw for _, needle in _needles(v))}
        assert needed  # the haystack holds values: the test searches for something
        assert needed <= search.in_bytes(raw)
        assert needed <= search.in_bytes(memoryview(raw))
        text = raw.decode("utf-8", "replace") + "\x00".join(rng.sample(values, 5))
        assert {v for v in values if v in text} <= search.in_text(text)


def test_an_ascii_value_in_utf_16_is_found_at_either_alignment():
    search = Search({"DOE^JOHN": "(0010,0010)", "SMITH": "(0008,0090)"})
    for pad in (b"", b"x", b"xy"):
        assert search.in_bytes(pad + "DOE^JOHN".encode("utf-16-le") + b"tail") == {"DOE^JOHN"}
    assert search.in_bytes(b"nothing here") == set()
    assert search.in_text("a SMITH b") == {"SMITH"}


def test_a_search_of_no_values_finds_nothing():
    search = Search({})
    assert len(search) == 0
    assert search.in_bytes(b"anything") == set()
    assert search.in_text("anything") == set()
    ds = pydicom.dcmread(pydicom.filebase.DicomBytesIO(to_bytes(make_instance())))
    assert verify.find_leaks(search, ds) == []


def test_values_of_several_originals_are_found_in_each_output_as_one_by_one():
    """Pooled: the values of three originals, searched for in each original itself (all of
    it leaks) and in a clean object holding one's patient name in UTF-16, in a private
    element (found in its header bytes only)."""
    work.configure_pydicom()
    plan = build_plan()
    originals = [
        work.read_dataset(to_bytes(make_instance(1, 1, 1, i + 1, marker=f"{MARK}{i}")))
        for i in range(3)
    ]
    values: dict[str, str] = {}
    for ds in originals:
        values.update(verify.identifying_values(plan, ds))
    name = str(originals[1].PatientName)
    clean = make_instance(2, 2, 2, 1, PatientName="Other^Person")
    clean.private_block(0x0029, "ACME", create=True).add_new(0x10, "OB", name.encode("utf-16-le"))
    clean = work.read_dataset(to_bytes(clean))
    search = Search(values)
    for out in [*originals, clean]:
        header = verify.header_bytes(out)
        leaks = verify.find_leaks(values, out, header)
        assert leaks
        assert verify.find_leaks(search, out, header) == leaks
    # in the clean one: what its defaults share with the originals, and the name in UTF-16
    assert verify.Leak("(0010,0010)", "header bytes (utf-16-le)") in leaks


@pytest.mark.parametrize("count", [3, 64, 65, 3000])
def test_generated_values_lie_where_one_search_each_finds_them(count):
    """``Generated`` finds every occurrence of every value in one pass, as many searches would
    (overlapping ones, values inside others, short ones), one by one where they are few."""
    rng = random.Random(count)  # noqa: S311 - a reproducible test, no secret
    made = [f"2.25.{rng.randrange(10**30)}" for _ in range(count)]
    made += ["DI4AB", "DI4ABCDEFGH", "ABCDEFGH", "1.2.3.4.1.2.3.4.1.2.3.4"]  # short; inside others
    generated = Generated(made)
    for _ in range(10):
        parts = [rng.randbytes(rng.randrange(50))]
        for value in [*rng.sample(made, 6), *made[-4:], "1.2.3.4.1.2.3.4.1.2.3.4.1.2.3.4"]:
            parts += [value.encode(), rng.randbytes(rng.randrange(3))]
        raw = b"".join(parts)
        expected = sorted(_spans(raw, frozenset(made), ()))
        assert sorted(_spans(raw, generated, ())) == expected
        assert len(expected) >= 11  # each value placed, and its repeats


def test_read_stored_gives_the_header_as_the_file_holds_it(tmp_path):
    work.configure_pydicom()
    data = to_bytes(make_instance(marker=MARK))
    ds, header = work.read_stored(data)
    assert header is not None
    assert header == verify.header_bytes(ds)  # what encoding the header again gave
    assert data.startswith(header)
    assert data[len(header) : len(header) + 4] == b"\xe0\x7f\x10\x00"  # Pixel Data's tag
    implicit = in_transfer_syntax(make_instance(marker=MARK), pydicom.uid.ImplicitVRLittleEndian)
    ds, header = work.read_stored(implicit)  # implicit VR little endian: in place too
    assert header is not None
    assert header == verify.header_bytes(ds)
    assert implicit.startswith(header)
    big = in_transfer_syntax(make_instance(marker=MARK), pydicom.uid.ExplicitVRBigEndian)
    assert work.read_stored(big)[1] is None  # read whole: its header encoded again
    after = make_instance(marker=MARK)
    after.add_new(0xFFFAFFFA, "SQ", [])  # Digital Signatures, after Pixel Data
    assert work.read_stored(to_bytes(after))[1] is None


def test_leaks_in_implicit_vr_outputs_are_found_as_pydicom_would_decode_them(monkeypatch):
    """An implicit VR output's elements, items' too, are given their VRs and decoded here
    (``rawvalue.give_vrs``): the same leaks, at the same paths, as pydicom's conversions of
    each element find."""
    from tests.deid import kitchen_sink  # noqa: PLC0415 - only this test builds it

    work.configure_pydicom()
    sink, _markers = kitchen_sink.build()
    data = in_transfer_syntax(sink, pydicom.uid.ImplicitVRLittleEndian)  # kept every value
    plan = build_plan()
    found = []
    for given in (True, False):
        if not given:  # every element without a VR: pydicom converts each
            monkeypatch.setattr(rawvalue, "give_vrs", lambda _d: None)
        values = verify.identifying_values(plan, work.read_dataset(data))
        out, header = work.read_stored(data)
        leaks = verify.find_leaks(values, out, header)
        found.append(sorted((leak.source_path, leak.found_in) for leak in leaks))
    lean, reference = found
    assert len(lean) > 50
    assert any("[0]." in where for _path, where in lean)  # inside items too
    assert lean == reference
