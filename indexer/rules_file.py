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
    doc = _parse(path, "rules file")
    if not isinstance(doc, dict):
        raise RuleError("the rules file must hold an object")
    if "dicomTagRules" in doc:
        doc = microsoft_to_native(doc)
    check(doc)
    return compile_rules(doc)


MAX_FILE_BYTES = 16 * 1024 * 1024  # a rules or masks file is some KB: more is a mistake


class _NoAliasLoader(yaml.SafeLoader):
    """YAML without aliases (``*name``).

    Nine nested lists of nine aliases each ("billion laughs") make a few lines stand for
    387 million values.
    """

    def __init__(self, text: str, what: str) -> None:
        super().__init__(text)
        self.what = what

    def compose_node(self, parent: Any, index: Any) -> Any:  # noqa: ANN401 - PyYAML's types
        if self.check_event(yaml.AliasEvent):
            raise RuleError(f"the {self.what} uses a YAML alias (*name): write the value out")
        return super().compose_node(parent, index)


def _parse(path: Path, what: str) -> Any:  # noqa: ANN401 - a parsed JSON or YAML document
    try:
        with path.open("rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)
        if len(data) > MAX_FILE_BYTES:
            raise RuleError(f"the {what} is larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB")
        text = data.decode("utf-8")
    except OSError as e:
        raise RuleError(f"cannot read the {what} ({os_reason(e)})") from None
    except UnicodeDecodeError:
        raise RuleError(f"the {what} is not UTF-8 text") from None
    try:
        if path.suffix in (".yaml", ".yml"):
            loader = _NoAliasLoader(text, what)
            try:
                return loader.get_single_data()
            finally:
                loader.dispose()
        return json.loads(text)
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
