"""Read a site rules file (JSON or YAML; ours or Microsoft's format) and check it.

The schema is ``schemas/deid-rules.schema.json``; a bad file fails before any DICOM file is
touched.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from indexer.deid.pixels import Mask, compile_masks
from indexer.deid.rules import RuleSet, compile_rules, microsoft_to_native
from indexer.errors import RuleError, os_reason
from indexer.resources import load_schema


def load(path: Path) -> RuleSet:
    """Parse, convert if needed, validate and compile a rules file.

    Raises
    ------
    RuleError
        The file cannot be read or parsed, or a rule fails the schema (the message names the
        rule), or a method does not fit the VR it selects.

    """
    try:
        text = path.read_text("utf-8")
    except OSError as e:
        raise RuleError(f"cannot read the rules file ({os_reason(e)})") from None
    try:
        doc: Any = yaml.safe_load(text) if path.suffix in (".yaml", ".yml") else json.loads(text)
    except (ValueError, yaml.YAMLError) as e:
        raise RuleError(
            f"the rules file is not valid {path.suffix[1:].upper()}: {str(e).splitlines()[0]}"
        ) from None
    if not isinstance(doc, dict):
        raise RuleError("the rules file must hold an object")
    if "dicomTagRules" in doc:
        doc = microsoft_to_native(doc)
    check(doc)
    return compile_rules(doc)


def _parse(path: Path, what: str) -> Any:  # noqa: ANN401 - a parsed JSON or YAML document
    try:
        text = path.read_text("utf-8")
    except OSError as e:
        raise RuleError(f"cannot read the {what} ({os_reason(e)})") from None
    try:
        return yaml.safe_load(text) if path.suffix in (".yaml", ".yml") else json.loads(text)
    except (ValueError, yaml.YAMLError) as e:
        raise RuleError(
            f"the {what} is not valid {path.suffix[1:].upper()}: {str(e).splitlines()[0]}"
        ) from None


def load_masks(path: Path) -> tuple[Mask, ...]:
    """Pixel masks for the 'clean' burned-in policy, from a JSON or YAML file."""
    doc = _parse(path, "pixel masks file")
    if not isinstance(doc, dict):
        raise RuleError("the pixel masks file must hold an object with a 'masks' list")
    return compile_masks(doc)


def check(doc: dict[str, Any]) -> None:
    """Validate against the schema; the error names the rule (by name or number)."""
    validator = jsonschema.Draft202012Validator(load_schema("deid-rules.schema.json"))
    errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path))
    if not errors:
        return
    e = errors[0]
    where = "the rules file"
    path = list(e.absolute_path)
    if len(path) >= 2 and path[0] == "rules" and isinstance(path[1], int):  # noqa: PLR2004
        rule = doc["rules"][path[1]]
        name = rule.get("name") if isinstance(rule, dict) else None
        where = f"rule {path[1] + 1}" + (f" ({name})" if name else "")
        if len(path) > 2:  # noqa: PLR2004
            where += f", field {'.'.join(str(p) for p in path[2:])}"
    elif path:
        where = f"field {'.'.join(str(p) for p in path)}"
    raise RuleError(f"{where}: {e.message}")
