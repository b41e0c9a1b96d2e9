"""Generate indexer/deid/iod_types.json: attribute types per IOD for compound actions.

The IOD type (1, 1C, 2, 2C, 3) of each attribute whose PS3.15 Table E.1-1 action is compound
(X/Z, X/D, X/Z/D, Z/D, X/Z/U*), per SOP class.

Usage: python scripts/build_iod_types.py HIGHDICOM_WHEEL

The module tables come from the highdicom wheel (``highdicom/_standard/*.json``, generated
by highdicom from the DICOM standard). The project keeps the generated file and never reads
the wheel at run or test time. Where an attribute appears in several modules of an IOD,
the strictest type wins (1 > 1C > 2 > 2C > 3).
"""

from __future__ import annotations

import csv
import json
import sys
import zipfile
from pathlib import Path

from pydicom.datadict import tag_for_keyword

OUT = Path(__file__).resolve().parent.parent / "indexer" / "deid" / "iod_types.json"
CSV = OUT.parent / "ps3_15_e1_1.csv"
STRICTNESS = {"1": 0, "1C": 1, "2": 2, "2C": 3, "3": 4}
COMPOUND = {"X/Z", "X/D", "X/Z/D", "Z/D", "X/Z/U*"}


def main(argv: list[str]) -> int:
    """Write the JSON; returns the exit code."""
    if len(argv) != 1:
        print(__doc__)
        return 2
    with zipfile.ZipFile(argv[0]) as z:
        version = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        sop_iod = json.loads(z.read("highdicom/_standard/sop_class_iod_map.json"))
        iod_modules = json.loads(z.read("highdicom/_standard/iod_module_map.json"))
        module_attrs = json.loads(z.read("highdicom/_standard/module_attribute_map.json"))
    with CSV.open(encoding="utf-8") as f:
        wanted = {r["keyword"] for r in csv.DictReader(f) if r["basic"] in COMPOUND}
    iods: dict[str, dict[str, str]] = {}
    for iod, modules in sorted(iod_modules.items()):
        types: dict[str, str] = {}
        for module in modules:
            for attr in module_attrs.get(module["key"], []):
                kw = attr["keyword"]
                if attr["path"] or kw not in wanted:
                    continue  # top level only: nested types depend on the sequence's context
                tag = tag_for_keyword(kw)
                if tag is None:
                    continue
                key = f"{tag:08X}"
                old = types.get(key)
                if old is None or STRICTNESS[attr["type"]] < STRICTNESS[old]:
                    types[key] = attr["type"]
        iods[iod] = dict(sorted(types.items()))
    doc = {
        "source": f"highdicom {version.split('/')[0]} highdicom/_standard",
        "sop_classes": dict(sorted(sop_iod.items())),
        "iods": iods,
    }
    OUT.write_text(json.dumps(doc, indent=0, sort_keys=False) + "\n", "utf-8")
    print(f"wrote {len(sop_iod)} SOP classes, {len(iods)} IODs to {OUT.name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
