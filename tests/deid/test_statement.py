"""`dicom-index profile`: the conformance statement says what the engine does (E.1.1, E.3)."""

from __future__ import annotations

import json

import jsonschema
import pydicom
import pytest

from indexer.deid import RULES_VERSION, VIDEO_RULES_VERSION, build_plan, explain, statement
from indexer.deid.pixels import Mask
from indexer.deid.rules import compile_rules
from indexer.deid.table import Action, TagPattern, load_safe_private, load_table
from indexer.keys import generate
from indexer.resources import load_schema
from tests.builders import make_instance, to_bytes
from tests.deid import kitchen_sink

RULES = {
    "rules": [
        {"name": "keep model", "select": {"keyword": "ManufacturerModelName"}, "method": "keep"},
        {"name": "hash descriptions", "select": {"tag": "(0008,1030)"}, "method": "cryptohash"},
        {"name": "keep acme", "select": {"private_creator": "ACME 1.0"}, "method": "keep"},
    ]
}


def test_the_clean_policy_states_the_code_cleaned_copies_get():
    mask = Mask("ACME", None, 600, 800, ((0, 0, 800, 40),))
    doc = statement.statement(build_plan(burned_in="clean", pixel_masks=(mask,)))
    jsonschema.validate(doc, load_schema("profile.schema.json"))
    assert doc["burned_in"] == "clean"
    assert doc["pixel_masks"] == 1
    assert doc["recorded"]["WherePixelsWereCleaned"] == ["DCM 113101"]
    assert doc["recorded"]["DeidentificationMethodCodeSequence"] == ["DCM 113100"]
    text = statement.render(doc)
    assert "Pixel masks: 1 devices" in text
    assert "where pixels were cleaned, DeidentificationMethodCodeSequence also: DCM 113101" in text
    assert "WherePixelsWereCleaned" not in statement.statement(build_plan())["recorded"]


def _top_level_steps(plan):
    ds, _ = kitchen_sink.build()
    return [
        st
        for st in explain(plan, ds, generate().pseudonym)
        if "." not in st.path and not int(st.path[1:5], 16) & 1
    ]


@pytest.mark.parametrize(
    ("options", "rules"),
    [
        ((), None),
        (("retain-long-modified-dates", "clean-descriptors", "retain-uids"), None),
        (("retain-patient-characteristics", "retain-device-identity"), RULES),
    ],
)
def test_every_attribute_is_stated_as_the_engine_treats_it(options, rules):
    plan = build_plan(options, rules=compile_rules(rules) if rules else None)
    doc = statement.statement(plan, attributes=True)
    listed = {a["tag"]: a for a in doc["attributes"]}
    masks = [(TagPattern.parse(t), a) for t, a in listed.items() if "x" in t]
    defaults = {d["what"]: d["action"] for d in doc["not_in_table"]}
    in_table = 0
    for st in _top_level_steps(plan):
        tag = int(st.path[1:5] + st.path[6:10], 16)
        row = listed.get(st.path) or next((a for p, a in masks if p.matches(tag)), None)
        if row is None:  # not in the table: one of the stated defaults decided it
            assert defaults[st.source] == st.action, st
            continue
        in_table += 1
        if row["action"] in {a.value for a in Action if "/" in a.value}:
            assert st.action in row["action"].replace("*", "").split("/"), (st, row)  # by IOD
            assert row["decided_by"] in st.source, (st, row)
        elif row["action"] in ("cryptohash", "redact", "dateshift"):  # a computing rule
            assert st.source == row["decided_by"], (st, row)
        else:
            # (a value read in a VR its attribute never has: why it is checked so, after ";")
            stated = (row["action"], row["decided_by"].split(";")[0])
            assert (st.action, st.source.split(";")[0]) == stated, (st, row)
    assert in_table > 200  # the kitchen sink sets most of the table's attributes


def test_counts_options_and_rules():
    plan = build_plan(["RetainUIDs", "clean-descriptors"], rules=compile_rules(RULES))
    doc = statement.statement(plan)
    assert "attributes" not in doc
    assert sum(doc["actions"].values()) == len(load_table()) - 1  # all but the private row
    assert [o["name"] for o in doc["options"]] == ["clean-descriptors", "retain-uids"]
    assert [o["code"] for o in doc["options"]] == ["113105", "113110"]
    assert doc["profile"] == {
        "code": "113100",
        "scheme": "DCM",
        "meaning": "Basic Application Confidentiality Profile",
    }
    assert doc["site_rules"][0] == {
        "name": "keep model",
        "method": "keep",
        "select": {"tag": "(0008,1090)"},
    }
    assert doc["site_rules"][2]["select"] == {"private_creator": "ACME 1.0"}
    assert doc["actions"]["computed"] == 1  # the description hashed by a rule
    assert doc["private"]["action"] == "X"
    assert "retained" not in doc["private"]
    assert doc["private"]["kept_by_site_rules"] == ["keep acme"]
    assert doc["recorded"]["LongitudinalTemporalInformationModified"] == "REMOVED"
    jsonschema.validate(doc, load_schema("profile.schema.json"))
    text = statement.render(doc)
    assert "clean-descriptors: Clean Descriptors Option (DCM 113105)" in text
    assert "'hash descriptions': cryptohash (tag (0008,1030))" in text
    assert "Private attributes: removed" in text
    assert doc["rules_version"] == RULES_VERSION  # which rules made the copies
    assert doc["video_rules_version"] == VIDEO_RULES_VERSION
    line = f"(rules version {RULES_VERSION}, video rules version {VIDEO_RULES_VERSION})"
    assert line in text.splitlines()[0]


def test_retain_safe_private_lists_the_attributes_it_keeps():
    plan = build_plan(["retain-safe-private"])
    doc = statement.statement(plan, attributes=True)
    retained = doc["private"]["retained"]
    assert len(retained) == len(load_safe_private()) == 130
    keys = {(r["private_creator"], int(r["group"], 16), int(r["element"], 16)) for r in retained}
    assert keys == set(load_safe_private())
    assert {"group": "0019", "element": "0C", "private_creator": "SIEMENS MR HEADER"}.items() <= (
        retained[0].items()
    )
    assert doc["private"]["declared_safe_blocks"] is True
    assert doc["private"]["declared_actions"] is True
    assert "2020 edition" in doc["private"]["safe_private_edition"]
    jsonschema.validate(doc, load_schema("profile.schema.json"))
    text = statement.render(doc)
    assert "(0019,xx0C)  IS  SIEMENS MR HEADER: B Value" in text
    assert "(7053,xx00)" in text  # Philips PET's SUV factor
    private_row = next(a for a in doc["attributes"] if a["tag"] == "(gggg,eeee)")
    assert private_row["action"] == "C"


def test_cli_statement_is_what_the_copies_record(tmp_path, offline_cli):
    """The codes the statement names are those `deid` writes; no database is needed."""
    rules = tmp_path / "rules.json"
    rules.write_text(json.dumps(RULES))
    options = ["--option", "retain-long-modified-dates", "--option", "retain-safe-private"]
    p = offline_cli("profile", *options, "--rules", str(rules), "--json", "--attributes")
    doc = json.loads(p.stdout)
    jsonschema.validate(doc, load_schema("profile.schema.json"))
    assert len(doc["attributes"]) == len(load_table())

    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.dcm").write_bytes(to_bytes(make_instance(1, 1, 1, 1, marker="PHIMARK")))
    offline_cli("deid", str(tmp_path / "in"), "--out", str(tmp_path / "out"), *options)
    (copy,) = (tmp_path / "out").rglob("*.dcm")
    ds = pydicom.dcmread(copy)
    written = [
        f"{i.CodingSchemeDesignator} {i.CodeValue}" for i in ds.DeidentificationMethodCodeSequence
    ]
    assert written == doc["recorded"]["DeidentificationMethodCodeSequence"]
    assert list(ds.DeidentificationMethod) == doc["recorded"]["DeidentificationMethod"]
    assert (
        ds.LongitudinalTemporalInformationModified
        == doc["recorded"]["LongitudinalTemporalInformationModified"]
        == "MODIFIED"
    )

    text = offline_cli("profile", *options).stdout
    assert "Safe private attributes retained:" in text
    assert "DeidentificationMethodCodeSequence: DCM 113100, DCM 113106" not in text
    assert "DeidentificationMethodCodeSequence: DCM 113100, DCM 113107, DCM 113111" in text


def test_cli_bad_settings_are_named(tmp_path, offline_cli):
    p = offline_cli("profile", "--option", "retain-everything", check=3)
    assert "unknown de-identification option 'retain-everything'" in p.stderr
    p = offline_cli(
        "profile", "--option", "retain-long-full-dates", "--option", "RetainLongModifDates", check=3
    )
    assert "exclude each other" in p.stderr
    bad = tmp_path / "rules.json"
    bad.write_text(json.dumps({"rules": [{"name": "odd", "select": {"vr": "PN"}, "method": "x"}]}))
    p = offline_cli("profile", "--rules", str(bad), check=3)
    assert "rules" in p.stderr
    assert p.stdout == ""
    p = offline_cli("profile", "--burned-in", "clean", check=3)
    assert "pixel masks file" in p.stderr
