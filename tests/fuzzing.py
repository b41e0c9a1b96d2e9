"""Seeded damage to DICOM objects, for the tests and ``scripts/fuzz.py``."""

from __future__ import annotations

import io
import random
import struct
import warnings
from collections.abc import Iterator

import pydicom
from pydicom.charset import convert_encodings, encode_string
from pydicom.datadict import dictionary_VR
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.tag import BaseTag

from indexer.deid.rawvalue import CHARSET_VRS, NUMBER_FORMATS
from tests.builders import _LENGTH_32


def mutated(rng: random.Random, base: bytes) -> bytes:
    """``base`` with one to six bytes changed, made up (VRs, lengths, item tags) or cut
    out, past the preamble; one in ten cut short too."""
    data = bytearray(base)
    kind = rng.random()
    for _ in range(rng.randint(1, 6)):
        pos = rng.randrange(128, len(data))
        if kind < 0.5:  # a byte changed
            data[pos] = rng.randrange(256)
        elif kind < 0.7:  # a VR or a length made up
            data[pos : pos + 2] = rng.choice([b"\xff\xff", b"\x00\x00", b"SQ", b"UN", b"OB"])
        elif kind < 0.85:  # undefined lengths, item and sequence tags
            data[pos : pos + 4] = rng.choice(
                [b"\xff\xff\xff\xff", b"\xfe\xff\x00\xe0", b"\xfe\xff\xdd\xe0", b"\0\0\0\0"]
            )
        else:  # bytes cut out
            del data[pos : pos + rng.randrange(1, 40)]
    if rng.random() < 0.1:  # cut short
        data = data[: rng.randrange(132, len(data))]
    return bytes(data)


_SHORT_VRS = [b"AE", b"AS", b"AT", b"CS", b"DA", b"DS", b"DT", b"FL", b"FD", b"IS", b"LO"]
_SHORT_VRS += [b"LT", b"PN", b"SH", b"SL", b"SS", b"ST", b"TM", b"UI", b"UL", b"US"]
_LONG_VRS = sorted(vr for vr in _LENGTH_32 if vr != b"SQ")  # (a set's order varies by run)


_UNDEFINED = 0xFFFFFFFF


Head = tuple[int, int, int, bool, str]  # offset, header size, length, a VR written, byte order


def heads(data: bytes, *, encoding: str = "explicit") -> list[Head]:
    """(offset, header size, value length, a VR written, byte order) of each element from the
    file meta on, sequences and items walked into. ``encoding``: the data set's, "explicit"
    (VR little endian), "implicit" (a sequence known by its tag or its undefined length) or
    "big" (explicit VR big endian); the file meta is explicit VR little endian."""
    found: list[Head] = []
    pos, meta_end = 132, 144 + struct.unpack_from("<L", data, 140)[0]
    while pos + 8 <= len(data):
        meta = pos < meta_end
        order = ">" if encoding == "big" and not meta else "<"
        group, number = struct.unpack_from(order + "HH", data, pos)
        if group == 0xFFFE:  # an item or a delimiter
            pos += 8
            continue
        explicit = meta or encoding != "implicit"
        if not explicit:
            size, length = 8, struct.unpack_from("<L", data, pos + 4)[0]
            walk_in = length == _UNDEFINED or _dictionary_vr(group << 16 | number) == "SQ"
        else:
            size = 12 if data[pos + 4 : pos + 6] in _LENGTH_32 else 8
            fmt = order + ("L" if size == 12 else "H")
            length = struct.unpack_from(fmt, data, pos + size - struct.calcsize(fmt))[0]
            walk_in = data[pos + 4 : pos + 6] == b"SQ" or length == _UNDEFINED
        found.append((pos, size, length, explicit, order))
        pos += size if walk_in else size + length
    return found


def _dictionary_vr(tag: int) -> str:
    try:
        return str(dictionary_VR(tag))
    except KeyError:
        return ""


def damaged(
    rng: random.Random, base: bytes, tags: list[int], *, encoding: str = "explicit"
) -> bytes:
    """``base`` with one to three elements damaged as a byte of a VR or a tag is: another VR
    of the same header size (explicit VR only), another tag (of Table E.1-1, or of the same
    group), or the element written twice; or given a value that its writer should not have
    made (``ODD_VALUES``). ``encoding``: ``base``'s data set's (``heads``)."""
    data = bytearray(base)
    for _ in range(rng.randint(1, 3)):
        pos, size, length, explicit, order = rng.choice(heads(bytes(data), encoding=encoding))
        kind = rng.random()
        if kind < 0.3 and explicit:
            data[pos + 4 : pos + 6] = rng.choice(_SHORT_VRS if size == 8 else _LONG_VRS)
        elif kind < 0.6:
            group = struct.unpack_from(order + "H", data, pos)[0]
            tag = rng.choice(tags) if rng.random() < 0.7 else group << 16 | rng.randrange(1 << 16)
            struct.pack_into(order + "HH", data, pos, tag >> 16, tag & 0xFFFF)
        elif length == _UNDEFINED:
            continue
        elif kind < 0.8:
            value = rng.choice(ODD_VALUES)
            fmt = order + ("H" if explicit and size == 8 else "L")  # the length's field
            struct.pack_into(fmt, data, pos + size - struct.calcsize(fmt), len(value))
            data[pos + size : pos + size + length] = value
        elif data[pos + 4 : pos + 6] != b"SQ" or not explicit:
            end = pos + size + length
            data[end:end] = data[pos:end]
    return bytes(data)


# Where no kept value holds text (``profile.HOLDS_TEXT``, ``NOT_A_TIME``, ``UID_HOLDS_TEXT``):
# dates, times, ages, number strings, UIDs; read without a VR (implicit VR), binary numbers
# too (``UNFIT_NUMBER``), read as numbers whatever they hold
VALUE_VRS = frozenset({"DA", "DT", "TM", "AS", "DS", "IS", "UI"})


def planted(rng: random.Random, base: bytes, marker: bytes, *, encoding: str = "explicit") -> bytes:
    """``base`` with text holding ``marker`` written into one to three of its data set's
    dates, times, ages, number strings or UIDs (implicit VR: binary numbers too), at any
    depth, as a name is typed after a value, or in its place: "20230101 PHIMARK",
    "Doe^PHIMARK". Written again by pydicom, the other elements as they were read, so that
    the sequences' and items' lengths hold."""
    ds = pydicom.dcmread(io.BytesIO(base))
    by_vr: dict[str, list[tuple[Dataset, BaseTag]]] = {}
    for d, key, vr in list(_holding_no_text(ds)):
        if isinstance(d._dict[key], RawDataElement):  # (reading a sequence converts some)
            by_vr.setdefault(vr, []).append((d, key))
    for _ in range(rng.randint(1, 3)):
        if not by_vr:
            break
        d, key = rng.choice(by_vr[rng.choice(sorted(by_vr))])  # a VR, then one of its elements
        raw = d._dict[key]
        old = bytes(raw.value).rstrip(b"\x00 ")
        text = rng.choice([old + b" " + marker, old + b"\\" + marker, marker, b"Doe^" + marker])
        text += b"\x00" * (len(text) % 2)  # even, as every value is
        d._dict[key] = raw._replace(length=len(text), value=text)
    return _written(ds, encoding)


def _written(ds: Dataset, encoding: str) -> bytes:
    """``ds`` written by pydicom in ``encoding``, its elements as they were read."""
    buf = io.BytesIO()
    with warnings.catch_warnings():  # (pydicom's, on a value it finds odd: errors in tests)
        warnings.simplefilter("ignore")
        ds.save_as(
            buf,
            enforce_file_format=True,
            implicit_vr=encoding == "implicit",
            little_endian=encoding != "big",
        )
    return buf.getvalue()


def _holding_no_text(ds: Dataset) -> Iterator[tuple[Dataset, BaseTag, str]]:
    """(data set, key, VR) of each element of ``ds`` (any depth) ``planted`` writes into."""
    for d, key, raw, vr in _raw_elements(ds):
        if vr in VALUE_VRS or (raw.VR is None and vr in NUMBER_FORMATS):
            yield d, key, vr


def _raw_elements(d: Dataset) -> Iterator[tuple[Dataset, BaseTag, RawDataElement, str]]:
    """(data set, key, element, VR) of each element of ``d`` (any depth) held as read."""
    for key, raw in list(d._dict.items()):
        vr = raw.VR or _dictionary_vr(key)
        if vr == "SQ":
            for item in d[key].value or ():
                yield from _raw_elements(item)
        elif isinstance(raw, RawDataElement) and raw.value is not None:
            yield d, key, raw, vr


# ISO 2022 escape sequences a reader takes out of a text: to ASCII, to JIS X 0201's Roman
# letters (ASCII but for two signs), Latin-1's upper half to G1
ESCAPES = [b"\x1b(B", b"\x1b(J", b"\x1b-A"]
_CHARSETS = ["ISO 2022 IR 6", "\\ISO 2022 IR 87", "ISO 2022 IR 100", "ISO_IR 192", "ISO_IR 100"]
# names in character sets whose bytes beyond ASCII no other encoding gives, or of scripts
# that write two characters for a name
NAMES = [
    ("ISO_IR 144", "Иванов^Пётр"),
    ("ISO_IR 101", "Łukasz^Żółw"),
    ("ISO_IR 126", "Παπαδόπουλος^Νίκος"),
    ("ISO_IR 127", "محمد^علي"),
    ("ISO_IR 166", "สมชาย^ใจดี"),
    ("ISO_IR 192", "山田^太郎"),
    ("GB18030", "王^小明"),
    ("\\ISO 2022 IR 87", "Yamada^Tarou=山田^太郎"),
    ("\\ISO 2022 IR 149", "Hong^Gildong=洪^吉童=홍^길동"),
]


def recoded(rng: random.Random, base: bytes, marker: bytes, *, encoding: str = "explicit") -> bytes:
    """``base`` with its texts in the character set (SH, LO, ST, LT, UT, UC, PN) as readers
    decode them otherwise than their bytes read: one object in three gets a patient's name
    in another character set (``NAMES``: Cyrillic, Greek, Thai, ideographs...), which it
    names; one in three names another set, or none. Then one to three of its texts, at any
    depth, become a name first one time in two (that one, or "Doe^" and ``marker``, as a
    name is typed into a kept field; in another case, at times: its ASCII letters in lower
    or upper case, or each word's first), and get up to two ISO 2022 escape sequences inside,
    which a reader takes out again: "Ja", ESC ( B, "ne" reads "Jane". Written again by
    pydicom, as ``planted`` writes."""
    ds = pydicom.dcmread(io.BytesIO(base))
    found = [(d, key) for d, key, raw, vr in _raw_elements(ds) if vr in CHARSET_VRS and raw.value]
    name = ds._dict.get(BaseTag(0x00100010))
    kind = rng.randrange(3)
    if kind == 0 and name is not None:
        charset, text = rng.choice(NAMES)
        value = encode_string(text, _named(ds, charset))
        ds._dict[BaseTag(0x00100010)] = name = name._replace(length=len(value), value=value)
    elif kind == 1:
        _named(ds, rng.choice([*_CHARSETS, None]))
    names = [b"Doe^" + marker, *([bytes(name.value)] if name is not None and name.value else [])]
    for _ in range(rng.randint(1, 3)):
        if not found:
            break
        d, key = rng.choice(found)
        raw = d._dict[key]
        text = bytes(raw.value).rstrip(b"\x00 ")
        if rng.randrange(2):
            text = rng.choice(names).rstrip(b"\x00 ")  # as written, or in another case
            text = rng.choice([text, text, text.lower(), text.upper(), text.title()])
            text += rng.choice([b"", b" scan"])
        for at in sorted(rng.randrange(len(text) + 1) for _ in range(rng.randrange(3)))[::-1]:
            text = text[:at] + rng.choice(ESCAPES) + text[at:]  # (never inside another)
        text += b" " * (len(text) % 2)  # even, as every value is
        d._dict[key] = raw._replace(length=len(text), value=text)
    return _written(ds, encoding)


def _named(ds: Dataset, charset: str | None) -> list[str]:
    """Name ``charset`` in ``ds`` (None: none), as read: pydicom writes its texts as they were
    read, not decoded in the set read and encoded in this one; its codecs."""
    if charset is None:
        ds._dict.pop(BaseTag(0x00080005), None)
    else:
        ds.SpecificCharacterSet = charset
    codecs = convert_encodings(charset.split("\\") if charset else None)
    implicit, little = ds.original_encoding
    ds.set_original_encoding(implicit, little, codecs)
    return codecs


# Values archives hold that no writer should have made: numbers past every integer column
# and JSON's, NaN and infinity as text and as binary (FD, FL), dates at the calendar's ends
ODD_VALUES = [
    *(b"NaN ", b"-inf", b"1e400 ", b"99999999999 ", b"-99999999999", b"99999999999999999999"),
    *(b"00010101", b"99991231", b"00000000", b"\xff" * 8, b"\xff\xff\xff\xff"),
    *(struct.pack("<d", float("inf")), struct.pack("<f", float("-inf")), b"\x00" * 8),
]
