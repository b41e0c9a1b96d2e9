"""Generate indexer/deid/safe_private.csv from PS3.15 Table E.3.10-1 (Safe Private Attributes).

Usage: python scripts/build_safe_private.py SOURCE.rst SOURCE-DESCRIPTION

SOURCE is PS3.15 Annex E in reStructuredText (as in the chsasank/dicom_standard project's
``source/part15/chapter_E.rst``); the table is read from its grid. SOURCE-DESCRIPTION names
where it came from and goes into the CSV's sibling ``SAFE_PRIVATE_EDITION``. The project keeps
the generated CSV and never reads SOURCE at run or test time.
"""

from __future__ import annotations

import csv
import itertools
import re
import sys
from collections.abc import Iterator
from pathlib import Path

OUT_DIR = Path(__file__).resolve().parent.parent / "indexer" / "deid"
TITLE = ".. table:: Safe Private Attributes"
TAG = re.compile(r"\(([0-9A-Fa-f]{4}),xx([0-9A-Fa-f]{2})\)")
VRS = re.compile(r"[A-Z]{2}")
ROLE = re.compile(r":\s*s\s*u[bp]:`([^`]*)`")  # :sup:`st` (split by the conversion)


def _cells(line: str, bounds: list[int]) -> list[str]:
    return [line[a + 1 : b].strip() for a, b in itertools.pairwise(bounds)]


def table_rows(text: str) -> Iterator[list[str]]:
    """Each row of the grid table after TITLE: its cells, their lines joined by spaces."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == TITLE)
    grid = [line for line in lines[start + 1 :] if line.strip()]
    rule = grid[0]
    indent = len(rule) - len(rule.lstrip())
    bounds = [i for i, c in enumerate(rule) if c == "+"]
    row: list[list[str]] = []
    header = True
    for line in grid:
        body = line[indent:]
        if line[:indent].strip() or not body.startswith(("+", "|")):
            break  # the table ended
        if body.startswith("+"):
            if row and not header:
                yield [" ".join(parts).strip() for parts in row]
            header = header and "=" not in body
            row = []
            continue
        cells = _cells(line, bounds)
        row = [[*(row[i] if row else []), c] for i, c in enumerate(cells)]


def main(argv: list[str]) -> int:
    """Write the CSV and the edition file; returns the exit code."""
    if len(argv) != len(("SOURCE", "DESCRIPTION")):
        print(__doc__)
        return 2
    rows = []
    for cells in table_rows(Path(argv[0]).read_text("utf-8")):
        tag, creator, vr, vm, meaning = cells
        m = TAG.fullmatch(tag.replace(" ", ""))
        if m is None or not (VRS.fullmatch(vr) or not vr) or not creator:  # some give no VR
            raise SystemExit(f"a row not understood: {cells}")
        name = ROLE.sub(r"\1", meaning.replace("\\ :", ":")).replace("\\ ", " ")
        rows.append((m[1].upper(), m[2].upper(), creator, vr, vm, " ".join(name.split())))
    out = OUT_DIR / "safe_private.csv"
    with out.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["group", "element", "private_creator", "vr", "vm", "name"])
        w.writerows(sorted(set(rows)))
    edition = f"{argv[1]}\nrows: {len(set(rows))}\n"
    (OUT_DIR / "SAFE_PRIVATE_EDITION").write_text(edition, "utf-8")
    print(f"wrote {len(set(rows))} rows to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
