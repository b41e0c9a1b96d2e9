"""Generate indexer/deid/ps3_15_e1_1.csv from a machine-readable PS3.15 Table E.1-1.

Usage: python scripts/build_ps3_15_table.py SOURCE.json

SOURCE is the innolitics/dicom-standard `confidentiality_profile_attributes.json`, joined
with its attributes for keyword and VR (one object per row with `tag`, `name`, `keyword`,
`vr`, `action`, `special`, `options`). The project keeps the generated CSV and never reads
SOURCE at run or test time. The edition goes into the CSV's sibling `TABLE_EDITION`.
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

OUT_DIR = Path(__file__).resolve().parent.parent / "indexer" / "deid"

# Source option keys -> the CSV's option columns (PS3.15 Table E.1-1 column order).
OPTION_COLUMNS = {
    "rtnSafePrivOpt": "rtn_safe_priv",
    "rtnUIDsOpt": "rtn_uids",
    "rtnDevIdOpt": "rtn_dev_id",
    "rtnInstIdOpt": "rtn_inst_id",
    "rtnPatCharsOpt": "rtn_pat_chars",
    "rtnLongFullDatesOpt": "rtn_long_full_dates",
    "rtnLongModifDatesOpt": "rtn_long_modif_dates",
    "cleanDescOpt": "clean_desc",
    "cleanStructContOpt": "clean_struct_cont",
    "cleanGraphOpt": "clean_graph",
}


def main(argv: list[str]) -> int:
    """Write the CSV and the edition file; returns the exit code."""
    if len(argv) != 1:
        print(__doc__)
        return 2
    source = json.loads(Path(argv[0]).read_text("utf-8"))
    rows = source["rows"]
    out = OUT_DIR / "ps3_15_e1_1.csv"
    with out.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["tag", "keyword", "name", "vr", "basic", *OPTION_COLUMNS.values()])
        for r in sorted(rows, key=lambda r: r["tag"].upper()):
            unknown = set(r["options"]) - set(OPTION_COLUMNS)
            if unknown:
                msg = f"unknown option column(s) {sorted(unknown)} in row {r['tag']}"
                raise SystemExit(msg)
            tag = r["tag"].upper().replace("X", "x").replace("GGGG,EEEE", "gggg,eeee")
            w.writerow(
                [
                    tag,
                    r["keyword"] or "",
                    r["name"],
                    r["vr"] or "",
                    r["action"],
                    *(r["options"].get(k, "") for k in OPTION_COLUMNS),
                ]
            )
    edition = source.get("standard_edition_note", "unknown edition")
    (OUT_DIR / "TABLE_EDITION").write_text(
        f"{edition}\nsource: {source.get('source', 'unknown')}\nrows: {len(rows)}\n", "utf-8"
    )
    print(f"wrote {len(rows)} rows to {out.relative_to(OUT_DIR.parent.parent)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
