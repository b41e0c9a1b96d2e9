"""Site rules (#3): every method on the VRs it applies to, precedence, schema errors."""

from __future__ import annotations

import datetime as dt
import io
import json
import math
import os
import struct
import subprocess
import sys
import warnings

import pydicom
import pytest
from pydicom.dataset import Dataset

from indexer import deid, keys, rules_file
from indexer.deid import build_plan, verify
from indexer.deid.rules import compile_rules, decrypt_value
from indexer.encode import encode
from indexer.errors import DeidError, RuleError
from indexer.work import configure_pydicom
from tests.builders import make_instance, to_bytes, with_element

configure_pydicom()
KEY = keys.generate().pseudonym


def _plan(rules, params=None, options=()):
    doc = {"version": 1, "rules": rules, **({"parameters": params} if params else {})}
    rules_file.check(doc)
    return build_plan(options, rules=compile_rules(doc))


def _apply(plan, ds=None, **elements):
    ds = ds or make_instance(**elements)
    return deid.apply(plan, pydicom.dcmread(io.BytesIO(to_bytes(ds))), KEY).ds


def _d(text):
    return dt.date(int(text[:4]), int(text[4:6]), int(text[6:8]))


@pytest.mark.parametrize(
    ("method", "keyword", "expected"),
    [
        ("keep", "StudyDescription", "CT chest for PHIMARK1"),
        ("remove", "Manufacturer", None),
        ("empty", "Manufacturer", ""),
        ("dummy", "Manufacturer", "ANONYMIZED"),
    ],
)
def test_simple_methods_override_the_profile(method, keyword, expected):
    out = _apply(_plan([{"select": {"keyword": keyword}, "method": method}]))
    assert out.get(keyword) == expected


def test_refresh_uid_and_substitute():
    plan = _plan(
        [
            {
                "select": {"keyword": "SOPClassUID"},
                "method": "substitute",
                "value": "1.2.840.10008.5.1.4.1.1.2",
            },
            {"select": {"tag": "(0020,0052)"}, "method": "refresh_uid"},
            {"select": {"keyword": "Manufacturer"}, "method": "substitute", "value": "ACME"},
        ]
    )
    a, b = _apply(plan), _apply(plan)
    assert a.Manufacturer == "ACME"
    assert a.FrameOfReferenceUID.startswith("2.25.")
    assert a.FrameOfReferenceUID == b.FrameOfReferenceUID  # keyed: the same every time
    with pytest.raises(RuleError, match="longer than VR SH"):
        _plan([{"select": {"keyword": "StationName"}, "method": "substitute", "value": "x" * 17}])


def test_substitute_writes_a_number_where_the_vr_holds_one():
    """A rules file's value is text; a US element holds a number (as text it could not be
    written: every object failed), IS and DS hold text that reads as one."""
    plan = _plan(
        [
            {"select": {"keyword": "Rows"}, "method": "substitute", "value": " 12 "},
            {"select": {"keyword": "SeriesNumber"}, "method": "substitute", "value": "42"},
            {"select": {"keyword": "SliceThickness"}, "method": "substitute", "value": "1.25"},
            {"select": {"keyword": "PixelSpacing"}, "method": "substitute", "value": "0.5"},
        ]
    )
    out = _apply(plan, Rows=16, SeriesNumber="3", SliceThickness="2", PixelSpacing=["1", "1"])
    back = pydicom.dcmread(io.BytesIO(encode(out).data))
    assert back.Rows == 12
    assert back.SeriesNumber == 42
    assert back.SliceThickness == 1.25
    assert back.PixelSpacing == [0.5, 0.5]


def test_substitute_writes_a_tag_a_date_a_time_and_an_age_of_their_syntax():
    """Values of these VRs are parsed by readers: the rules file's text is checked against
    their syntax (a date of the calendar for DA); an AT takes a tag, as gggg,eeee."""
    values = {
        "DimensionIndexPointer": "(0020,0032)",
        "StudyDate": "20240229",
        "StudyTime": "1200",
        "AcquisitionDateTime": "20240229120000.5+0100",
        "PatientAge": "045Y",
        "ExaminedBodyThickness": "3.4e38",
    }
    rules = [
        {"select": {"keyword": k}, "method": "substitute", "value": v} for k, v in values.items()
    ]
    plan = _plan(rules)
    out = _apply(
        plan,
        DimensionIndexPointer=0x00200013,
        StudyTime="093000",
        AcquisitionDateTime="20200101",
        PatientAge="061Y",
        ExaminedBodyThickness=12.5,
    )
    back = pydicom.dcmread(io.BytesIO(encode(out).data))
    assert back.DimensionIndexPointer == 0x00200032
    assert back.StudyDate == "20240229"
    assert back.StudyTime == "1200"
    assert back.AcquisitionDateTime == "20240229120000.5+0100"
    assert back.PatientAge == "045Y"
    assert back.ExaminedBodyThickness == pytest.approx(3.4e38, rel=1e-6)


@pytest.mark.parametrize(
    ("keyword", "value"),
    [
        ("Rows", "abc"),
        ("Rows", "70000"),
        ("Rows", "-1"),
        ("SeriesNumber", "x"),
        ("SeriesNumber", "2147483648"),
        ("SliceThickness", "nan"),
        ("SliceThickness", "1,5"),
        ("SeriesNumber", "1_000"),
        ("SeriesNumber", "1234567890123"),
        ("SliceThickness", "inf"),
        ("SliceThickness", "0x10"),
        ("SliceThickness", "1.2345678901234567"),
        ("ExaminedBodyThickness", "1e39"),
        ("TimeRange", "1e309"),
        ("StudyDate", "20250230"),
        ("StudyDate", "2025-01-01"),
        ("StudyTime", "250000"),
        ("AcquisitionDateTime", "2025x"),
        ("PatientAge", "45Y"),
        ("FrameOfReferenceUID", "1.02.3"),
        ("DimensionIndexPointer", "PatientName"),
    ],
)
def test_substitute_of_no_value_of_the_vr_is_refused_with_the_rules(keyword, value):
    with pytest.raises(RuleError, match=r"rule 1: the substitute value .*(is no|than) VR"):
        _plan([{"select": {"keyword": keyword}, "method": "substitute", "value": value}])


def test_substitute_of_no_value_of_the_vr_a_mask_selects_fails_the_object_clearly():
    """Where the rule names no element, the VR is known only as an element comes."""
    plan = _plan([{"select": {"tag": "(0028,001x)"}, "method": "substitute", "value": "abc"}])
    with pytest.raises(DeidError, match=r"^site rule 'rule 1' \(substitute\) substitutes no US"):
        _apply(plan, Rows=16)
    plan = _plan([{"select": {"tag": "(0028,001x)"}, "method": "substitute", "value": "8"}])
    assert _apply(plan, Rows=16).Rows == 8


@pytest.mark.parametrize(
    ("vr_value", "partial", "expected"),
    [
        (("DA", "20230115"), False, ""),
        (("DA", "20230115"), True, "20230101"),
        (("DT", "20230115101010"), True, "2023"),
        (("AS", "042Y"), True, "042Y"),
        (("AS", "095Y"), True, ""),
        (("LO", "free text"), True, ""),
    ],
)
def test_redact(vr_value, partial, expected):
    vr, value = vr_value
    keyword = {
        "DA": "StudyDate",
        "DT": "AcquisitionDateTime",
        "AS": "PatientAge",
        "LO": "Manufacturer",
    }[vr]
    plan = _plan(
        [{"select": {"keyword": keyword}, "method": "redact"}],
        {"partial_dates_for_redact": partial, "partial_ages_for_redact": partial},
    )
    assert _apply(plan, **{keyword: value}).get(keyword) == expected


@pytest.mark.parametrize(
    ("keyword", "value", "kept"),
    [
        ("PatientAge", "053Y", True),
        ("PatientAge", "006M", True),
        ("PatientAge", "095Y", False),
        ("StudyDate", "20230101", True),
        ("StudyDate", "20230115", False),
    ],
)
def test_a_value_redact_keeps_by_design_is_no_leak(keyword, value, kept):
    """An age under 90 (partial ages), a year's first day (partial dates): recorded as
    identifying, the value was found in its own place, and every object with one was
    refused (``leak_detected``), by the ingest's check and by ``verify``. A value redact
    changes is still searched for."""
    plan = _plan(
        [{"select": {"keyword": keyword}, "method": "redact"}],
        {"partial_dates_for_redact": True, "partial_ages_for_redact": True},
    )
    data = to_bytes(make_instance(**{keyword: value}))
    found: dict[str, str] = {}
    out = deid.apply(plan, pydicom.dcmread(io.BytesIO(data)), KEY, found=found).ds
    assert (out.get(keyword) == value) is kept
    ingest = verify.find_leaks(found, out, encode(out).header, changed_only=True)
    assert ingest == []
    values = verify.identifying_values(plan, pydicom.dcmread(io.BytesIO(data)))
    assert verify.find_leaks(values, out) == []
    tag = "(0010,1010)" if keyword == "PatientAge" else "(0008,0020)"
    assert (value in found) is not kept  # searched for where changed
    assert (values.get(value) == tag) is not kept


@pytest.mark.parametrize(
    ("age", "want"),
    [
        ("053Y Zqxwv", ""),
        ("Zqxwv", ""),
        ("053Y\\Zqxwv", ["053Y", ""]),
        ("006M\\053Y", ["006M", "053Y"]),
    ],
)
def test_partial_ages_keep_an_age_only_where_it_is_one(age, want):
    """``redact`` with partial ages kept any value that was no age in years as it came, a
    name after the age among them: it went into the copy, unchecked (the values mutator of
    scripts/fuzz.py, seed 142). Now what is no age is redacted. Of a multi-value, only the
    values it changes are recorded: an age kept beside one refused the object."""
    plan = _plan(
        [{"select": {"keyword": "PatientAge"}, "method": "redact"}],
        {"partial_ages_for_redact": True},
    )
    raw = age.encode() + b" " * (len(age) % 2)
    data = to_bytes(make_instance(PatientAge="053Y"))
    head = b"\x10\x00\x10\x10AS\x04\x00053Y"  # (0010,1010) AS, 4 bytes
    assert data.count(head) == 1
    data = data.replace(head, head[:6] + struct.pack("<H", len(raw)) + raw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        found: dict[str, str] = {}
        out = deid.apply(plan, pydicom.dcmread(io.BytesIO(data)), KEY, found=found).ds
        assert out.PatientAge == want
        copy = encode(out)
        assert b"Zqxwv" not in copy.data
        assert verify.find_leaks(found, out, copy.header, changed_only=True) == []
        values = verify.identifying_values(plan, pydicom.dcmread(io.BytesIO(data)))
        assert verify.find_leaks(values, out) == []
    assert any("Zqxwv" in value for value in found) is ("Zqxwv" in age)  # searched for
    assert "053Y" not in found


@pytest.mark.parametrize("scope", ["patient", "study", "series", "instance"])
def test_dateshift_scopes_keep_intervals_within_scope(scope):
    plan = _plan(
        [
            {"select": {"vr": "DA"}, "method": "dateshift", "scope": scope, "range_days": 100},
            {"select": {"vr": "DT"}, "method": "dateshift", "scope": scope},
        ]
    )
    out = _apply(
        plan,
        StudyDate="20230115",
        SeriesDate="20230120",
        AcquisitionDateTime="20230120235959.5",
        CalibrationDate=["20230101", "20230105"],
    )
    assert (_d(out.SeriesDate) - _d(out.StudyDate)).days == 5
    assert 1 <= (dt.date(2023, 1, 15) - _d(out.StudyDate)).days <= 100
    assert out.AcquisitionDateTime.endswith("235959.5")  # the time of day is kept
    assert (_d(out.CalibrationDate[1]) - _d(out.CalibrationDate[0])).days == 4  # multi-valued
    again = _apply(plan, StudyDate="20230115")
    assert again.StudyDate == out.StudyDate


def test_dateshift_empties_a_date_it_takes_out_of_the_calendar():
    """0001-01-01 (a placeholder for no date) shifted back leaves year 1; 0005-06-01 shifted by
    at most 100 days stays in year 5, written in four digits."""
    plan = _plan([{"select": {"vr": "DA"}, "method": "dateshift", "range_days": 100}])
    out = _apply(plan, StudyDate="00010101", SeriesDate="00050601")
    assert out.StudyDate == ""
    assert "00050221" <= out.SeriesDate < "00050601"


def test_dateshift_on_a_non_date_vr_is_refused():
    with pytest.raises(RuleError, match="dateshift does not apply to VR LO"):
        _plan([{"select": {"keyword": "Manufacturer"}, "method": "dateshift"}])


@pytest.mark.parametrize(
    ("keyword", "vr_value", "span", "range_type"),
    [
        ("SliceThickness", "2.5", 0.5, "fixed"),
        ("PixelSpacing", ["0.5", "0.5"], 0.1, "proportional"),
        ("SeriesNumber", "12", 3, "fixed"),
        ("Rows", 16, 2, "fixed"),
    ],
)
def test_perturb(keyword, vr_value, span, range_type):
    rule = {
        "select": {"keyword": keyword},
        "method": "perturb",
        "span": span,
        "range_type": range_type,
        "round_to": 2,
    }
    plan = _plan([rule])
    out = _apply(plan, **{keyword: vr_value})
    values = out[keyword].value
    values = values if isinstance(values, list | pydicom.multival.MultiValue) else [values]
    originals = vr_value if isinstance(vr_value, list) else [vr_value]
    for new, old in zip(values, originals, strict=True):
        bound = span * (abs(float(old)) if range_type == "proportional" else 1) + 0.51
        assert abs(float(new) - float(old)) <= bound
    assert _apply(plan, **{keyword: vr_value})[keyword].value == out[keyword].value
    assert len(str(out[keyword].value)) <= 64


@pytest.mark.parametrize(
    ("keyword", "edge", "inward"),
    [("Rows", 65535, -1), ("Rows", 0, 1), ("SeriesNumber", 2**31 - 1, -1)],
    ids=["US-high", "US-low", "IS-high"],
)
def test_perturb_keeps_a_value_within_its_vr(keyword, edge, inward):
    """Noise that would take a value past what its VR holds stops at the bound: a US past
    65535 could not be written (the object failed), an IS past 2^31 - 1 is no IS. Of 40
    values next to the bound, each pushed outward or inward by the key, some reach it."""
    plan = _plan([{"select": {"keyword": keyword}, "method": "perturb", "span": 100}])
    got = []
    for value in range(edge, edge + 40 * inward, inward):
        out = _apply(plan, **{keyword: value if keyword == "Rows" else str(value)})
        encode(out)  # it can be written
        new = int(out[keyword].value)
        assert abs(new - value) <= 100
        assert new * inward >= edge * inward  # not past the bound
        got.append(new)
    assert edge in got


@pytest.mark.parametrize(
    ("tag", "vr", "raw", "expected"),
    [
        (0x00181100, b"DS", b"N/A ", [""]),
        (0x00181100, b"DS", b"1,5 ", [""]),
        (0x00181100, b"DS", b"NaN ", [""]),
        (0x00181100, b"DS", b"-inf", [""]),
        (0x00181100, b"DS", b"0.5\\n/a ", [0.5, ""]),  # the number perturbed, the other emptied
        (0x00081163, b"FD", struct.pack("<d", math.nan), [math.nan]),  # an FD holds NaN
    ],
    ids=["DS-text", "DS-comma", "DS-nan", "DS-inf", "DS-one-of-two", "FD-nan"],
)
def test_perturb_empties_a_value_that_is_no_number(tag, vr, raw, expected):
    """A DS holding no number (damage, "N/A", infinity) could not be perturbed, and its object
    was refused (``invalid_element``; found by ``scripts/fuzz.py --rules``, seed 79): it is
    emptied, as ``dateshift`` empties a value that is no date."""
    plan = _plan(
        [
            {
                "select": {"tag": f"({tag >> 16:04X},{tag & 0xFFFF:04X})"},
                "method": "perturb",
                "span": 0.1,
            }
        ]
    )
    before = {0x00181100: 0x0020000D, 0x00081163: 0x00082218}[tag]
    data = with_element(to_bytes(make_instance()), tag, vr, raw, before=before)
    out = deid.apply(plan, pydicom.dcmread(io.BytesIO(data)), KEY).ds
    value = pydicom.dcmread(io.BytesIO(encode(out).data))[tag].value
    got = list(value) if isinstance(value, pydicom.multival.MultiValue) else [value]
    assert len(got) == len(expected)
    for new, want in zip(got, expected, strict=True):
        if want == "":
            assert new in ("", None)
        elif math.isnan(want):
            assert math.isnan(new)
        else:
            assert abs(float(new) - want) <= 0.11


@pytest.mark.parametrize(
    ("keyword", "value", "high"),
    [
        ("ExaminedBodyThickness", 3.4e38, 3.4028234663852886e38),
        ("TimeRange", 1.7e308, sys.float_info.max),
        ("SliceThickness", "1.7e308", 1e308),
    ],
    ids=["FL", "FD", "DS"],
)
def test_perturb_keeps_a_float_within_its_vr(keyword, value, high):
    """Proportional noise on a value near the VR's largest would take it past (FL: past
    float32, which could not be written; FD: to infinity; DS: past what its 16 characters
    write finite): it stops at the largest.
    Of 40 values, each pushed outward or inward by the key, some reach it."""
    rule = {"method": "perturb", "span": 1, "range_type": "proportional"}
    plan = _plan([{"select": {"keyword": keyword}, **rule}])
    got = []
    for i in range(40):
        original = value * (1 - i / 1000) if isinstance(value, float) else f"{1.7 - i / 1000}e308"
        out = _apply(plan, **{keyword: original})
        back = pydicom.dcmread(io.BytesIO(encode(out).data))[keyword].value
        assert abs(float(back)) <= high
        got.append(abs(float(back)))
    assert max(got) == pytest.approx(high, rel=1e-9)
    assert min(got) < high


@pytest.mark.parametrize(
    ("keyword", "max_len"),
    [
        ("PatientID", 64),
        ("StationName", 16),
        ("Manufacturer", 64),
        ("PatientName", 64),
        ("StationAETitle", 16),
        ("BodyPartExamined", 16),
        ("FrameOfReferenceUID", 64),
    ],
)
def test_cryptohash_fits_the_vr(keyword, max_len):
    plan = _plan([{"select": {"keyword": keyword}, "method": "cryptohash"}])
    elements = {keyword: "1.2.3.4.5" if keyword.endswith("UID") else "ORIGINAL VALUE 1"}
    out = _apply(plan, **elements)
    value = str(out[keyword].value)
    assert value != elements[keyword]
    assert 0 < len(value) <= max_len
    if keyword == "BodyPartExamined":
        assert value == value.upper()
    if keyword.endswith("UID"):
        assert value.startswith("2.25.")
    assert str(_apply(plan, **elements)[keyword].value) == value


def test_cryptohash_multi_valued():
    plan = _plan([{"select": {"keyword": "OtherPatientIDs"}, "method": "cryptohash"}])
    out = _apply(plan, OtherPatientIDs=["A1", "B2"])
    assert len(out.OtherPatientIDs) == 2
    assert out.OtherPatientIDs[0] != out.OtherPatientIDs[1]


def test_encrypt_is_reversible_and_fits_or_fails_clearly():
    plan = _plan([{"select": {"keyword": "PatientID"}, "method": "encrypt"}])
    out = _apply(plan, PatientID="MRN-42")
    assert out.PatientID != "MRN-42"
    assert decrypt_value(out.PatientID, KEY) == "MRN-42"
    with pytest.raises(DeidError, match="does not fit VR LO") as e:
        _apply(plan, PatientID="X" * 40)
    assert "XXXX" not in str(e.value)
    with pytest.raises(RuleError, match="encrypt does not apply to VR DA"):
        _plan([{"select": {"keyword": "StudyDate"}, "method": "encrypt"}])


def test_first_matching_rule_wins_and_masks_and_vr_select():
    plan = _plan(
        [
            {"name": "keep one", "select": {"keyword": "OperatorsName"}, "method": "keep"},
            {"name": "all names", "select": {"vr": "PN"}, "method": "substitute", "value": "X^Y"},
            {"name": "group 0018", "select": {"tag": "(0018,xxxx)"}, "method": "remove"},
        ]
    )
    out = _apply(plan)
    assert out.OperatorsName == "Operator^PHIMARK1"
    assert out.ReferringPhysicianName == "X^Y"
    assert "SliceThickness" not in out
    assert "BodyPartExamined" not in out


def test_private_creator_rules_keep_blocks_and_their_creators():
    plan = _plan(
        [{"select": {"private_creator": "SYNTHETIC PHI", "element": "02"}, "method": "keep"}]
    )
    out = _apply(plan)
    block = out.private_block(0x0009, "SYNTHETIC PHI")
    assert block[0x02].value  # kept, under its creator
    assert 0x00091001 not in out  # the rest of the block removed
    other = _apply(_plan([{"select": {"private_creator": "SOMEONE ELSE"}, "method": "keep"}]))
    assert not any(e.tag.is_private for e in other)  # no block left, no orphan creator


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        (
            {"name": "bad", "select": {"keyword": "PatientID"}, "method": "scramble"},
            r"rule 2 \(bad\), field method",
        ),
        ({"select": {"keyword": "PatientID"}, "method": "substitute"}, r"rule 2.*'value'"),
        ({"select": {}, "method": "keep"}, r"rule 2, field select"),
        ({"select": {"tag": "0010,0010"}, "method": "keep"}, r"rule 2, field select.tag"),
    ],
)
def test_schema_errors_name_the_rule(rule, message):
    doc = {"rules": [{"select": {"keyword": "PatientName"}, "method": "keep"}, rule]}
    with pytest.raises(RuleError, match=message):
        rules_file.check(doc)


MICROSOFT = {
    "dicomTagRules": [
        {"tag": {"value": "(0010,0020)"}, "method": "cryptohash"},
        {"tag": {"VR": "DA"}, "method": "dateshift"},
        {
            "tag": {"value": "(0028,0030)"},
            "method": "perturb",
            "span": "1",
            "roundTo": 2,
            "rangeType": "Proportional",
        },
        {"tag": "(0010,1010)", "method": "redact"},
    ],
    "parameters": {
        "dateShiftKey": "abc",
        "dateShiftScope": "StudyInstance",
        "dateShiftRange": 50,
        "cryptoHashKey": "k",
        "encryptKey": "e",
        "enablePartialAgesForRedact": True,
        "enablePartialDatesForRedact": True,
    },
}


def test_microsoft_format_is_accepted(tmp_path):
    path = tmp_path / "ms.json"
    path.write_text(json.dumps(MICROSOFT))
    ruleset = rules_file.load(path)
    assert [r.method for r in ruleset.rules] == ["cryptohash", "dateshift", "perturb", "redact"]
    assert ruleset.parameters["dateshift_scope"] == "study"
    out = _apply(build_plan(rules=ruleset), PatientAge="042Y", PixelSpacing=["0.5", "0.5"])
    assert out.PatientAge == "042Y"
    assert len(out.PatientID) == 64


def test_yaml_rules_and_bad_files(tmp_path):
    good = tmp_path / "r.yaml"
    good.write_text(
        "rules:\n  - name: keep desc\n    select: {keyword: StudyDescription}\n    method: keep\n"
    )
    assert rules_file.load(good).rules[0].name == "keep desc"
    bad = tmp_path / "bad.yaml"
    bad.write_text("rules: [\n")
    with pytest.raises(RuleError, match="not valid YAML"):
        rules_file.load(bad)


LAUGHS = "a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
    f"{b}: &{b} [{', '.join([f'*{a}'] * 9)}]\n" for a, b in zip("abcdefgh", "bcdefghi", strict=True)
)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (LAUGHS.encode() + b"rules: *i\n", "the rules file uses a YAML alias"),
        (b"rules:\n  - name: caf\xe9\n", "the rules file is not UTF-8 text"),
        (b"#" * (rules_file.MAX_FILE_BYTES + 1), "the rules file is larger than 16 MiB"),
    ],
)
def test_rules_files_that_would_exhaust_the_machine_or_crash_are_refused(
    tmp_path, content, message
):
    """A few lines of aliases stand for 387 million values: validating them took 40 s and
    3 GB. A file not in UTF-8 ended the run with an internal error."""
    bad = tmp_path / "bad.yaml"
    bad.write_bytes(content)
    with pytest.raises(RuleError, match=message):
        rules_file.load(bad)
    with pytest.raises(RuleError, match=message.replace("rules file", "pixel masks file")):
        rules_file.load_masks(bad)


def test_bad_rules_fail_before_any_file_is_touched(tmp_path, key_file):
    bad = tmp_path / "bad.json"
    bad.write_text(
        json.dumps({"rules": [{"name": "oops", "select": {"keyword": "X"}, "method": "keep"}]})
    )
    src = tmp_path / "in"
    src.mkdir()
    (src / "a.dcm").write_bytes(to_bytes(make_instance()))
    env = {**os.environ, "DICOM_INDEX_KEY_FILE": str(key_file), "CI": "1"}
    p = subprocess.run(
        [
            sys.executable,
            "-m",
            "indexer.cli",
            "deid",
            str(src),
            "--out",
            str(tmp_path / "out"),
            "--rules",
            str(bad),
        ],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert p.returncode == 3
    assert "oops: unknown keyword 'X'" in p.stderr
    assert not (tmp_path / "out").exists()


def test_what_if_names_the_rule(tmp_path):
    plan = _plan([{"name": "hash ids", "select": {"keyword": "PatientID"}, "method": "cryptohash"}])
    steps = deid.explain(plan, pydicom.dcmread(io.BytesIO(to_bytes(make_instance()))), KEY)
    step = next(s for s in steps if s.keyword == "PatientID")
    assert step.source == "site rule 'hash ids' (cryptohash)"


@pytest.mark.usefixtures("leaks_searched_both_ways")  # the pooled search too
def test_verify_understands_rules():
    from indexer.deid import verify  # noqa: PLC0415

    plan = _plan(
        [
            {"select": {"keyword": "StudyDescription"}, "method": "keep"},
            {"select": {"vr": "DA"}, "method": "dateshift"},
        ]
    )
    clean = pydicom.dcmread(io.BytesIO(to_bytes(make_instance(StudyDescription="CT chest"))))
    values = verify.identifying_values(plan, clean)
    assert "CT chest" not in values  # kept by a rule: not identifying in itself
    assert verify.find_leaks(values, deid.apply(plan, clean, KEY).ds) == []
    # but a kept description that holds the referrer's name is a leak, and is reported
    named = pydicom.dcmread(io.BytesIO(to_bytes(make_instance())))
    values = verify.identifying_values(plan, named)
    leaks = verify.find_leaks(values, deid.apply(plan, named, KEY).ds)
    assert [(x.source_path, x.found_in) for x in leaks] == [("(0008,0090)", "(0008,1030)")]
    empty = Dataset()
    assert verify.find_leaks({}, empty) == []
    # the values the engine gathers in its pass are the same under site rules
    found: dict[str, str] = {}
    deid.apply(plan, pydicom.dcmread(io.BytesIO(to_bytes(make_instance()))), KEY, found=found)
    assert found == values


@pytest.mark.parametrize("method", ["remove", "empty"])
def test_a_rule_that_drops_a_required_uid_fails_the_object_not_the_run(method):
    plan = _plan([{"select": {"keyword": "SeriesInstanceUID"}, "method": method}])
    with pytest.raises(DeidError) as e:
        _apply(plan)
    assert e.value.reason == "missing_uid"
    assert "SeriesInstanceUID" in e.value.message


def test_one_plan_decides_private_elements_by_each_object_s_creator():
    """The same private tag under another creator, in the next object: decided afresh."""
    plan = _plan(
        [{"select": {"private_creator": "SYNTHETIC PHI", "element": "02"}, "method": "keep"}]
    )
    assert _apply(plan).private_block(0x0009, "SYNTHETIC PHI")[0x02].value
    ds = make_instance()
    for tag in [t for t in ds.keys() if t.is_private]:  # noqa: SIM118 - tags
        del ds[tag]
    block = ds.private_block(0x0009, "SOMEONE ELSE", create=True)
    block.add_new(0x02, "UI", "1.2.3.999")  # the tag and VR the rule kept in the first object
    out = _apply(plan, ds)
    assert not any(e.tag.is_private for e in out)


def test_one_plan_decides_a_tag_by_each_object_s_vr():
    """A tag the table does not list is kept as DS, emptied as PN (an odd writer's VR)."""
    plan = build_plan()
    first = make_instance()
    first.add_new(0x00180050, "DS", "1.5")  # Slice Thickness, not in Table E.1-1
    assert _apply(plan, first).SliceThickness == 1.5
    second = make_instance()
    second.add_new(0x00180050, "PN", "PHIMARK^EIGHT")
    assert _apply(plan, second)[0x00180050].value == ""


def test_a_site_rule_keeps_a_non_standard_public_tag():
    """The profile removes public tags no standard defines; a site that knows one keeps it."""
    ds = make_instance()
    ds.add_new(0x00431010, "LO", "vendor value")  # odd group: private, removed regardless
    ds.add_new(0xC2080080, "LO", "scanner serial 42")
    assert 0xC2080080 not in _apply(build_plan(), ds)
    plan = _plan([{"select": {"tag": "(C208,0080)"}, "method": "keep"}])
    assert _apply(plan, ds)[0xC2080080].value == "scanner serial 42"
