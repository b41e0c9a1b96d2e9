"""Site rules: selectors and methods that override the PS3.15 profile (first match wins).

Pure: ``compile_rules`` takes the parsed, schema-checked document (``indexer.rules_file``
reads and checks files). Methods keep, remove, empty, dummy and refresh_uid map onto the
profile's actions; redact, dateshift, perturb, encrypt, cryptohash and substitute compute
new values here, keyed and deterministic, fitted to the element's VR.
"""

from __future__ import annotations

import base64
import datetime as dt
import functools
import hashlib
import hmac
import math
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pydicom import config
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.multival import MultiValue
from pydicom.valuerep import DSfloat, validate_value

from indexer.deid import pseudonym
from indexer.deid.actions import TEXT_VRS, shift_date
from indexer.deid.rawvalue import NUMBER_VRS
from indexer.deid.table import Action, TagPattern
from indexer.errors import DeidError, RuleError

SIMPLE = {
    "keep": Action.KEEP,
    "remove": Action.REMOVE,
    "empty": Action.ZERO,
    "dummy": Action.DUMMY,
    "refresh_uid": Action.UID,
}
DATE_VRS = frozenset({"DA", "DT"})
# the values each integer VR holds (PS3.5 6.2): a perturbed value is kept within them
INTEGER_RANGES: Mapping[str, tuple[int, int]] = {
    "IS": (-(2**31), 2**31 - 1),
    "SS": (-(2**15), 2**15 - 1),
    "US": (0, 2**16 - 1),
    "SL": (-(2**31), 2**31 - 1),
    "UL": (0, 2**32 - 1),
    "SV": (-(2**63), 2**63 - 1),
    "UV": (0, 2**64 - 1),
}
FLOAT32_MAX = 3.4028234663852886e38  # the largest finite IEEE 754 single (FL)
# the finite values each float VR holds: a perturbed value is kept within them too
FLOAT_RANGES: Mapping[str, tuple[float, float]] = {
    "FL": (-FLOAT32_MAX, FLOAT32_MAX),
    "FD": (-sys.float_info.max, sys.float_info.max),
    "DS": (-1e308, 1e308),  # (the largest double, in a DS's 16 characters, reads as inf)
}
# PS3.5 6.2's syntax of the text VRs whose values a reader parses (pydicom checks them)
SYNTAX_VRS = frozenset({"DA", "DT", "TM", "UI", "AS"})
_INTEGER_TEXT = re.compile(r" *[+-]?[0-9]+ *")
_DECIMAL_TEXT = re.compile(r" *[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)? *")
_TAG_TEXT = re.compile(r"\(?([0-9A-Fa-f]{4}),?([0-9A-Fa-f]{4})\)?")
STRING_VRS = TEXT_VRS - {"UI"}
METHOD_VRS: Mapping[str, frozenset[str]] = {
    "dateshift": DATE_VRS,
    "perturb": NUMBER_VRS,
    "cryptohash": STRING_VRS | {"UI"},
    "encrypt": frozenset({"LO", "LT", "ST", "UT", "UC", "SH", "PN"}),
}
MAX_LENGTH = {
    "AE": 16,
    "AS": 4,
    "CS": 16,
    "DA": 8,
    "DS": 16,
    "DT": 26,
    "IS": 12,
    "LO": 64,
    "LT": 10240,
    "PN": 64,
    "SH": 16,
    "ST": 1024,
    "TM": 14,
    "UC": 1024,
    "UI": 64,
    "UR": 4096,
    "UT": 10240,
}


@dataclass(frozen=True, slots=True)
class Selector:
    """Which elements a rule applies to; every given part must match."""

    pattern: TagPattern | None = None
    vr: str | None = None
    private_creator: str | None = None
    element: int | None = None  # low byte of a private element, with private_creator

    def matches(self, tag: int, vr: str, creator: str | None) -> bool:
        """Whether an element with this tag, VR and private creator is selected."""
        if self.pattern is not None and not self.pattern.matches(tag):
            return False
        if self.vr is not None and vr != self.vr:
            return False
        if self.private_creator is not None:
            if creator is None or creator.strip() != self.private_creator:
                return False
            if self.element is not None and tag & 0xFF != self.element:
                return False
        return True


@dataclass(frozen=True, slots=True)
class SiteRule:
    """One compiled rule."""

    name: str
    selector: Selector
    method: str
    params: Mapping[str, Any] = field(default_factory=dict)

    @property
    def action(self) -> Action | None:
        """The profile action this rule maps to, or None for a computing method."""
        return SIMPLE.get(self.method)

    @property
    def source(self) -> str:
        """How --what-if names it."""
        return f"site rule {self.name!r} ({self.method})"


@dataclass(frozen=True, slots=True)
class RuleSet:
    """Ordered site rules and their parameters."""

    rules: tuple[SiteRule, ...] = ()
    parameters: Mapping[str, Any] = field(default_factory=dict)

    def match(self, tag: int, vr: str, creator: str | None) -> SiteRule | None:
        """The first rule selecting this element."""
        for rule in self.rules:
            if rule.selector.matches(tag, vr, creator):
                return rule
        return None

    @property
    def keeps_private(self) -> bool:
        """Whether some rule may keep private elements (their creators must stay too)."""
        return any(r.selector.private_creator and r.method != "remove" for r in self.rules)


def compile_rules(doc: Mapping[str, Any]) -> RuleSet:
    """Compile a schema-checked rules document; RuleError names the rule and the problem."""
    params = dict(doc.get("parameters", {}))
    rules = []
    for i, raw in enumerate(doc.get("rules", []), start=1):
        name = str(raw.get("name") or f"rule {i}")
        selector = _selector(raw["select"], name)
        method = str(raw["method"])
        _check_vr(selector, method, name)
        extra = {k: v for k, v in raw.items() if k not in ("name", "select", "method")}
        if method == "substitute":
            _check_substitute(selector, str(extra["value"]), name)
            extra["value"] = str(extra["value"])
        rules.append(SiteRule(name, selector, method, extra))
    return RuleSet(tuple(rules), params)


def _selector(sel: Mapping[str, Any], name: str) -> Selector:
    pattern = None
    if "tag" in sel:
        pattern = TagPattern.parse(str(sel["tag"]))
    if "keyword" in sel:
        tag = tag_for_keyword(str(sel["keyword"]))
        if tag is None:
            raise RuleError(f"{name}: unknown keyword {sel['keyword']!r}")
        pattern = TagPattern(f"({tag >> 16:04X},{tag & 0xFFFF:04X})", 0xFFFFFFFF, tag)
    element = int(str(sel["element"]), 16) if "element" in sel else None
    return Selector(pattern, sel.get("vr"), sel.get("private_creator"), element)


def _known_vr(selector: Selector) -> str | None:
    if selector.vr:
        return selector.vr
    if selector.pattern is not None and selector.pattern.is_exact:
        try:
            return str(dictionary_VR(selector.pattern.value)).split(" or ")[0]
        except KeyError:
            return None
    return None


def _check_vr(selector: Selector, method: str, name: str) -> None:
    vr = _known_vr(selector)
    allowed = METHOD_VRS.get(method)
    if vr is not None and allowed is not None and vr not in allowed:
        raise RuleError(
            f"{name}: {method} does not apply to VR {vr} "
            f"(it applies to {', '.join(sorted(allowed))})"
        )


def _check_substitute(selector: Selector, value: str, name: str) -> None:
    vr = _known_vr(selector)
    if vr is not None and len(value) > MAX_LENGTH.get(vr, 10240):
        raise RuleError(
            f"{name}: the substitute value is longer than VR {vr} allows "
            f"({MAX_LENGTH[vr]} characters)"
        )
    if vr is not None and _as_vr(vr, value) is None:
        raise RuleError(f"{name}: the substitute value {value!r} is no VR {vr} value")


@functools.lru_cache(maxsize=256)  # a rule's one value, checked for each element it selects
def _as_vr(vr: str, text: str) -> Any:  # noqa: ANN401 - a value of any VR
    """A substitute value (text) as an element of ``vr`` holds it; None: it holds no such.

    The binary number VRs hold numbers: an integer within its VR's range, a finite float
    within FL's or FD's. IS and DS hold text that reads as one in PS3.5's syntax (not
    Python's: no ``1_000``, ``inf`` or ``0x10``). AT holds a tag, written ``gggg,eeee`` or
    ``ggggeeee``. DA (a date of the calendar), TM, DT, UI and AS hold text of their syntax.
    Other VRs hold the text as it is.
    """
    if vr in SYNTAX_VRS:
        return text if _valid_text(vr, text) else None
    if vr == "AT":
        tag = _TAG_TEXT.fullmatch(text.strip())
        return int(tag[1] + tag[2], 16) if tag else None
    if vr not in INTEGER_RANGES and vr not in FLOAT_RANGES:
        return text
    syntax = _INTEGER_TEXT if vr in INTEGER_RANGES else _DECIMAL_TEXT
    if not syntax.fullmatch(text) or len(text.strip()) > MAX_LENGTH.get(vr, len(text)):
        return None
    x = int(text) if vr in INTEGER_RANGES else float(text)
    low, high = INTEGER_RANGES.get(vr) or FLOAT_RANGES[vr]
    if not low <= x <= high:
        return None
    return text.strip() if vr in ("IS", "DS") else x


def _valid_text(vr: str, text: str) -> bool:
    try:
        validate_value(vr, text, config.RAISE)
        if vr == "DA":
            dt.date(int(text[:4]), int(text[4:6]), int(text[6:8]))
    except ValueError:
        return False
    return True


@dataclass(frozen=True, slots=True)
class Scope:
    """The original identifiers a keyed method may be scoped by."""

    patient: str
    study: str
    series: str
    instance: str


def _mac(key: bytes, *parts: str) -> bytes:
    return hmac.new(key, "\x00".join(parts).encode(), hashlib.sha256).digest()


def compute(
    rule: SiteRule,
    rules: RuleSet,
    vr: str,
    value: Any,  # noqa: ANN401 - any element value
    key: bytes,
    tag: int,
    scope: Scope,
) -> Any:  # noqa: ANN401
    """The new value of an element under a computing method (redact, dateshift, ...)."""
    method = rule.method
    if isinstance(value, (list, MultiValue)):
        return [compute(rule, rules, vr, v, key, tag, scope) for v in value]
    if value in (None, ""):
        return value
    if method == "substitute":
        if (new := _as_vr(vr, rule.params["value"])) is None:
            raise DeidError(f"{rule.source} substitutes no {vr} value", reason="rule_mismatch")
        return new
    if method == "redact":
        return _redact(vr, str(value), rules.parameters)
    if method == "dateshift":
        return _dateshift(rule, rules, vr, str(value), key, scope)
    if method == "perturb":
        return _perturb(rule, vr, value, key, tag)
    if method == "cryptohash":
        return _cryptohash(vr, str(value), key, rules.parameters)
    if method == "encrypt":
        return encrypt_value(vr, str(value), key, rules.parameters)
    raise RuleError(f"{rule.name}: unknown method {method}")  # the schema prevents this


def changes(rule: SiteRule, rules: RuleSet, vr: str, value: Any) -> Any:  # noqa: ANN401
    """What of ``value`` ``rule`` changes, recorded for the leak check; None: nothing.

    ``redact`` with ``partial_ages_for_redact`` keeps an age under 90, and with
    ``partial_dates_for_redact`` a date that is its year's first day ("20230101" stays): by
    design, no identifying value. Recorded, such a value was found in its own place, and
    every object with one was refused (``leak_detected``); of a multi-value, only the values
    it changes are recorded.
    """
    if rule.method != "redact":
        return value
    items = value if isinstance(value, (list, MultiValue)) else [value]
    params = rules.parameters
    changed = [v for v in items if v not in (None, "") and _redact(vr, str(v), params) != str(v)]
    return changed or None


def _redact(vr: str, value: str, params: Mapping[str, Any]) -> str:
    if vr in DATE_VRS and params.get("partial_dates_for_redact") and value[:4].isdigit():
        return value[:4] + "0101" if vr == "DA" else value[:4]
    if vr == "AS" and params.get("partial_ages_for_redact"):
        age = _AGE.fullmatch(value.strip(" \0"))  # (text that is no age: redacted)
        if age and (age[2] != "Y" or int(age[1]) < 90):  # noqa: PLR2004 - HIPAA: over 89
            return value
    return ""


_AGE = re.compile(r"([0-9]{3})([DWMY])")


def _dateshift(
    rule: SiteRule, rules: RuleSet, vr: str, value: str, key: bytes, scope: Scope
) -> str:
    if vr not in DATE_VRS:
        raise DeidError(f"{rule.source} selected a {vr} element", reason="rule_mismatch")
    which = rule.params.get("scope") or rules.parameters.get("dateshift_scope", "patient")
    ident = getattr(scope, which)
    days = int(rule.params.get("range_days") or rules.parameters.get("dateshift_range_days", 365))
    salt = str(rules.parameters.get("dateshift_salt", ""))
    offset = pseudonym.date_offset_days(key, f"{which}:{salt}:{ident}", days)
    return shift_date(value, vr, offset)


def _perturb(rule: SiteRule, vr: str, value: Any, key: bytes, tag: int) -> Any:  # noqa: ANN401
    if vr not in NUMBER_VRS:
        raise DeidError(f"{rule.source} selected a {vr} element", reason="rule_mismatch")
    try:  # a DS or IS that is no number ("N/A", damaged bytes): emptied, as a date no date is
        x = float(value)
    except ValueError:
        return ""
    if not math.isfinite(x):  # FL and FD hold NaN and infinity as they are; no DS or IS does
        return value if vr in ("FL", "FD") else ""
    u = int.from_bytes(_mac(key, "perturb", f"{tag:08X}", repr(x))[:8], "big") / 2**64 * 2 - 1
    span = float(rule.params["span"])
    noise = u * span * (abs(x) if rule.params.get("range_type") == "proportional" else 1.0)
    y = round(x + noise, int(rule.params.get("round_to", 2)))
    if vr in INTEGER_RANGES:  # (a value past them could not be written, or no IS)
        low, high = INTEGER_RANGES[vr]
        return min(max(math.floor(y + 0.5), low), high)
    low_f, high_f = FLOAT_RANGES[vr]  # (noise can take a float past FL's range, or to inf)
    y = min(max(y, low_f), high_f)
    if vr == "DS":
        return DSfloat(y, auto_format=True)
    return y


def _cryptohash(vr: str, value: str, key: bytes, params: Mapping[str, Any]) -> str:
    salt = str(params.get("cryptohash_salt", ""))
    if vr == "UI":
        return pseudonym.uid(key, f"cryptohash:{salt}:{value}")
    digest = _mac(key, "cryptohash", salt, value).hex()
    digest = digest.upper() if vr == "CS" else digest
    return digest[: MAX_LENGTH.get(vr, 64)]


def _encrypt_key(key: bytes, params: Mapping[str, Any]) -> bytes:
    return _mac(key, "site-encrypt", str(params.get("encrypt_salt", "")))


def encrypt_value(vr: str, value: str, key: bytes, params: Mapping[str, Any]) -> str:
    """Reversible with the key (AES-256-GCM, nonce from an HMAC of the value: deterministic)."""
    k = _encrypt_key(key, params)
    nonce = _mac(k, "nonce", value)[:12]
    token = base64.urlsafe_b64encode(nonce + AESGCM(k).encrypt(nonce, value.encode(), None))
    text = token.decode().rstrip("=")
    if len(text) > MAX_LENGTH.get(vr, 64):
        raise DeidError(
            f"an encrypted value does not fit VR {vr} ({MAX_LENGTH.get(vr, 64)} characters)",
            reason="value_too_long",
        )
    return text


def decrypt_value(token: str, key: bytes, params: Mapping[str, Any] | None = None) -> str:
    """Invert ``encrypt_value`` with the same key and parameters."""
    k = _encrypt_key(key, params or {})
    raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    return AESGCM(k).decrypt(raw[:12], raw[12:], None).decode()


_MS_METHODS = {
    "cryptohash": "cryptohash",
    "dateshift": "dateshift",
    "perturb": "perturb",
    "encrypt": "encrypt",
    "redact": "redact",
    "keep": "keep",
    "remove": "remove",
    "refreshuid": "refresh_uid",
    "substitute": "substitute",
}
_MS_SCOPES = {"seriesinstance": "series", "studyinstance": "study", "sopinstance": "instance"}
_MS_PARAMS: Mapping[str, tuple[str, Callable[[Any], Any]]] = {  # theirs (lower case) -> ours
    "dateshiftscope": ("dateshift_scope", lambda v: _MS_SCOPES.get(str(v).lower(), "patient")),
    "dateshiftrange": ("dateshift_range_days", int),
    "dateshiftkey": ("dateshift_salt", str),
    "cryptohashkey": ("cryptohash_salt", str),
    "encryptkey": ("encrypt_salt", str),
    "enablepartialagesforredact": ("partial_ages_for_redact", bool),
    "enablepartialdatesforredact": ("partial_dates_for_redact", bool),
}
_MS_RULE_FIELDS: Mapping[str, tuple[str, Callable[[Any], Any]]] = {
    "span": ("span", float),
    "roundto": ("round_to", int),
    "rangetype": ("range_type", lambda v: str(v).lower()),
    "value": ("value", str),
}


def microsoft_to_native(doc: Mapping[str, Any]) -> dict[str, Any]:
    """Convert the Microsoft DICOM anonymization format into ours (before schema checks).

    Their keys (dateShiftKey, cryptoHashKey, encryptKey) become salts mixed with our keys,
    so a rules file never carries the secret that decides pseudonyms.
    """
    params: dict[str, Any] = {}
    for k, v in dict(doc.get("parameters", {})).items():
        if str(k).lower() in _MS_PARAMS:
            name, convert = _MS_PARAMS[str(k).lower()]
            params[name] = convert(v)
    rules = []
    for i, r in enumerate(doc.get("dicomTagRules", []), start=1):
        method = str(r.get("method", ""))
        rule: dict[str, Any] = {
            "name": f"dicomTagRules[{i}]",
            "select": _ms_selector(r.get("tag")),
            "method": _MS_METHODS.get(method.lower(), method),
        }
        for k, v in r.items():
            if str(k).lower() in _MS_RULE_FIELDS:
                name, convert = _MS_RULE_FIELDS[str(k).lower()]
                rule[name] = convert(v)
        rules.append(rule)
    return {"version": 1, "parameters": params, "rules": rules}


def _ms_selector(tag: Any) -> dict[str, Any]:  # noqa: ANN401
    if isinstance(tag, dict):
        if "value" in tag:
            return _ms_selector(tag["value"])
        if "VR" in tag:
            return {"vr": str(tag["VR"])}
        return {}
    text = str(tag or "")
    if text.startswith("("):
        return {"tag": text}
    if len(text) == 2 and text.isupper():  # noqa: PLR2004 - a VR
        return {"vr": text}
    return {"keyword": text}


__all__ = [
    "RuleSet",
    "SiteRule",
    "compile_rules",
    "compute",
    "decrypt_value",
    "encrypt_value",
    "microsoft_to_native",
]
