"""What a plan does, as a conformance statement (PS3.15 E.1.1, E.3): `dicom-index profile`.

Pure: a compiled Plan in, a JSON-able document out (``schemas/profile.schema.json``), and
its text form. It names the profile and the options applied (with their CID 7050 codes),
the edition of the table, the burned-in policy, the site rules, the action in effect for
every attribute of Table E.1-1, and the private attributes that may be retained (E.3.10
asks a conformance statement to list them). No value of any object is read.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from importlib import resources
from typing import Any

from indexer import __version__
from indexer.deid.actions import BINARY_VRS
from indexer.deid.burned_in import BurnedInPolicy
from indexer.deid.engine import BINARY_NOT_CLEANED, IDENTITY_TAGS, TIME_KEPT, mark_elements
from indexer.deid.profile import (
    COMPOUND,
    DAMAGED_TEXT,
    FRAME_TEXT,
    GROUP_LENGTH,
    HOLDS_TEXT,
    KEEP_DEFAULT,
    MISREAD_BYTES,
    MISREAD_TEXT,
    NON_STANDARD,
    NOT_A_TIME,
    NOT_DATA_SET,
    OUT_OF_PLACE,
    OUT_OF_PLACE_INVALID,
    PIXEL_EXCESS,
    RETIRED_IMAGE,
    RULES_VERSION,
    UID_HOLDS_TEXT,
    UNDEFINED_LENGTH,
    UNFIT_NUMBER,
    UNKNOWN_VR,
    UNLISTED_PN,
    UNLISTED_UI,
    UNUSED_BITS,
    VIDEO_RULES_VERSION,
    Plan,
)
from indexer.deid.rules import SiteRule
from indexer.deid.table import (
    CLEAN_PIXEL_CODE,
    OPTION_CODES,
    PROFILE_CODE,
    Action,
    Row,
    load_table,
    safe_private_key,
    safe_private_rows,
    table_edition,
)
from indexer.deid.table import CLI_NAMES as OPTION_NAMES

ACTION_NAMES: Mapping[str, str] = {
    "X": "removed",
    "Z": "emptied",
    "D": "replaced by a dummy value",
    "U": "replaced by a keyed pseudonym UID",
    "pseudonym": "replaced by a keyed pseudonym that the vault maps back",
    "K": "kept",
    "C": "cleaned: dates shifted by the patient's keyed offset, text replaced by a dummy",
    "compound": "resolved by the attribute's type in the object's IOD",
}
COMPUTED = "computed by a site rule (redact, dateshift, perturb, cryptohash, encrypt, substitute)"
_BURNED_IN = {
    "reject": "objects that may carry burned-in text are refused",
    "allow": "objects that may carry burned-in text are exported as they are",
    "clean": "the device's pixel mask is blanked in every frame (Clean Pixel Data)",
}


def safe_private_edition() -> str:
    """Where the shipped Table E.3.10-1 came from (its first line of provenance)."""
    text = resources.files("indexer.deid").joinpath("SAFE_PRIVATE_EDITION").read_text("utf-8")
    return text.splitlines()[0].removeprefix("source: ")


def statement(plan: Plan, *, attributes: bool = False) -> dict[str, Any]:
    """The conformance statement of ``plan``; ``attributes`` adds every row of Table E.1-1."""
    rows = load_table()
    decided = [(row, *_in_effect(plan, row)) for row in rows]
    counts = Counter(_kind(action) for row, action, _ in decided if not row.tag.private)
    doc: dict[str, Any] = {
        "tool": f"dicom-index {__version__}",
        "rules_version": RULES_VERSION,
        "video_rules_version": VIDEO_RULES_VERSION,
        "profile": _code(PROFILE_CODE),
        "table": {"name": "PS3.15 Table E.1-1", "edition": table_edition(), "rows": len(rows)},
        "options": [
            {"name": OPTION_NAMES[o], **_code(OPTION_CODES[o])} for o in sorted(plan.options)
        ],
        "burned_in": plan.burned_in.value,
        "pixel_masks": len(plan.pixel_masks),
        "site_rules": [_rule(r) for r in plan.rules.rules],
        "actions": {  # the private row is told apart below
            k: counts[k] for k in [*ACTION_NAMES, "computed"] if counts[k]
        },
        "not_in_table": [
            {"action": d.action.value, "what": d.source}
            for d in (
                KEEP_DEFAULT,
                UNLISTED_PN,
                UNLISTED_UI,
                RETIRED_IMAGE,
                MISREAD_TEXT,
                MISREAD_BYTES,
                UNFIT_NUMBER,
                DAMAGED_TEXT,
                NOT_A_TIME,
                HOLDS_TEXT,
                UID_HOLDS_TEXT,
                OUT_OF_PLACE,
                OUT_OF_PLACE_INVALID,
                PIXEL_EXCESS,
                UNUSED_BITS,
                FRAME_TEXT,
                NON_STANDARD,
                GROUP_LENGTH,
                NOT_DATA_SET,
                UNKNOWN_VR,
                UNDEFINED_LENGTH,
            )
        ],
        "private": _private(plan),
        "recorded": _recorded(plan),
    }
    if attributes:
        doc["attributes"] = [
            {
                "tag": row.tag.text,
                "keyword": row.keyword,
                "name": row.name,
                "action": action,
                "decided_by": source,
            }
            for row, action, source in decided
        ]
    return doc


def _in_effect(plan: Plan, row: Row) -> tuple[str, str]:
    """A table row's action and what decided it: a site rule selecting its tag, else the plan.

    The action is a Table E.1-1 code, or the method of a site rule that computes a value.
    """
    if row.tag.is_exact:
        for vr in row.vr.split(" or "):
            rule = plan.rules.match(row.tag.value, vr.strip(), None)
            if rule is not None:
                return _by_rule(rule)
        d = plan.exact[row.tag.value]
        if row.tag.value in IDENTITY_TAGS and d.action not in (Action.KEEP, Action.REMOVE):
            kind = IDENTITY_TAGS[row.tag.value][0]
            return "pseudonym", f"keyed pseudonym ({kind}); in a sequence item: {d.action}"
    elif row.tag.private:
        d = plan.private
    else:
        for rule in plan.rules.rules:
            pattern = rule.selector.pattern
            if pattern is not None and pattern.text.lower() == row.tag.text.lower():
                return _by_rule(rule)
        d = next(d for p, d in plan.masks if p == row.tag)
    if d.action is Action.CLEAN and all(vr.strip() in BINARY_VRS for vr in row.vr.split(" or ")):
        return Action.REMOVE.value, f"{d.source}: {BINARY_NOT_CLEANED}"  # as the engine does
    if d.action is Action.CLEAN and row.vr == "TM":
        return Action.KEEP.value, f"{d.source}: {TIME_KEPT}"  # as the engine does
    return d.action.value, d.source


def _by_rule(rule: SiteRule) -> tuple[str, str]:
    return (rule.action.value if rule.action is not None else rule.method), rule.source


def _kind(action: str) -> str:
    if action in ACTION_NAMES:
        return action
    return "compound" if action in COMPOUND else "computed"


def _code(code: tuple[str, str]) -> dict[str, str]:
    return {"code": code[0], "scheme": "DCM", "meaning": code[1]}


def _rule(rule: SiteRule) -> dict[str, Any]:
    sel = rule.selector
    select: dict[str, str] = {}
    if sel.pattern is not None:
        select["tag"] = sel.pattern.text
    if sel.vr is not None:
        select["vr"] = sel.vr
    if sel.private_creator is not None:
        select["private_creator"] = sel.private_creator
    if sel.element is not None:
        select["element"] = f"{sel.element:02X}"
    return {"name": rule.name, "method": rule.method, "select": select}


def _recorded(plan: Plan) -> dict[str, Any]:
    """What every copy carries to say it was de-identified, and how (PS3.15 E.1.1)."""
    out: dict[str, Any] = {}
    for elem in mark_elements(plan.options, pixels_cleaned=False):
        if elem.VR == "SQ":
            out[elem.keyword] = [f"{i.CodingSchemeDesignator} {i.CodeValue}" for i in elem.value]
        else:
            out[elem.keyword] = list(elem.value) if elem.VM > 1 else elem.value
    if plan.burned_in is BurnedInPolicy.CLEAN:  # a copy whose pixels were cleaned, also:
        out["WherePixelsWereCleaned"] = [f"DCM {CLEAN_PIXEL_CODE[0]}"]
    return out


def _private(plan: Plan) -> dict[str, Any]:
    out: dict[str, Any] = {"action": plan.private.action.value, "decided_by": plan.private.source}
    if plan.private.action is Action.CLEAN:
        listed = plan.safe_private
        out["safe_private_edition"] = safe_private_edition()
        out["declared_safe_blocks"] = True
        out["declared_actions"] = True
        out["retained"] = [dict(r) for r in safe_private_rows() if safe_private_key(r) in listed]
    keeps = [
        r.name for r in plan.rules.rules if r.selector.private_creator and r.method != "remove"
    ]
    if keeps:
        out["kept_by_site_rules"] = keeps
    return out


def render(doc: Mapping[str, Any]) -> str:
    """The statement as text for a terminal or a document."""
    lines = [
        (
            f"De-identification by {doc['tool']} (rules version {doc['rules_version']}, "
            f"video rules version {doc['video_rules_version']})"
        ),
        f"Profile: {_coded(doc['profile'])}",
        f"Table: {doc['table']['name']} ({doc['table']['rows']} rows), {doc['table']['edition']}",
        "Options:",
        *([f"  {o['name']}: {_coded(o)}" for o in doc["options"]] or ["  none"]),
        f"Burned-in text: {doc['burned_in']} ({_BURNED_IN[doc['burned_in']]})",
    ]
    if doc["pixel_masks"]:
        lines.append(f"Pixel masks: {doc['pixel_masks']} devices")
    lines.append(
        f"Site rules (the first that selects an element decides): {len(doc['site_rules'])}"
    )
    for r in doc["site_rules"]:
        select = ", ".join(f"{k} {v}" for k, v in r["select"].items()) or "every element"
        lines.append(f"  {r['name']!r}: {r['method']} ({select})")
    lines.append("Attributes of the table by the action in effect:")
    lines += [
        f"  {k:>9}  {n:4d}  {ACTION_NAMES.get(k, COMPUTED)}" for k, n in doc["actions"].items()
    ]
    lines.append("Attributes not in the table:")
    lines += [f"  {d['action']:>9}  {d['what']}" for d in doc["not_in_table"]]
    private = doc["private"]
    if private["action"] == Action.CLEAN:
        retained = private["retained"]
        lines += [
            (
                f"Private attributes: removed, except the {len(retained)} safe private "
                "attributes of Table E.3.10-1 below (with their listed VR and a valid value), "
                "and blocks an object declares safe in its Private Data Element "
                "Characteristics (0008,0300); an element the object declares identifying "
                "there gets the Deidentification Action (0008,0307) it gives"
            ),
            f"Table E.3.10-1: {private['safe_private_edition']}",
            "Safe private attributes retained:",
        ]
        lines += [
            f"  ({r['group']},xx{r['element']})  {r['vr'] or '--':2}  "
            f"{r['private_creator']}: {r['name']}"
            for r in retained
        ]
    else:
        lines.append("Private attributes: removed")
    if private.get("kept_by_site_rules"):
        names = ", ".join(repr(n) for n in private["kept_by_site_rules"])
        lines.append(f"Private attributes a site rule may keep: {names}")
    lines.append("Recorded in every copy:")
    for keyword, value in doc["recorded"].items():
        shown = ", ".join(value) if isinstance(value, list) else value
        if keyword == "WherePixelsWereCleaned":
            lines.append(
                f"  where pixels were cleaned, DeidentificationMethodCodeSequence also: {shown}"
            )
        else:
            lines.append(f"  {keyword}: {shown}")
    if "attributes" in doc:
        lines.append("Attributes (tag, action, keyword, decided by):")
        lines += [
            f"  {a['tag']}  {a['action']:6}  {a['keyword'] or a['name']}  [{a['decided_by']}]"
            for a in doc["attributes"]
        ]
    return "\n".join(lines)


def _coded(code: Mapping[str, str]) -> str:
    return f"{code['meaning']} ({code['scheme']} {code['code']})"
