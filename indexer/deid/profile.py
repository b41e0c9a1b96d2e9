"""Profile + options (+ later site rules) compiled into a Plan: element -> action.

Compound actions (X/Z, X/D, X/Z/D, Z/D, X/Z/U*) are resolved to the choice that keeps an
object valid whatever the attribute's type in its IOD: emptying (Z) keeps Type 2 valid, a
dummy (D) keeps Type 1 valid. Sequences are emptied rather than filled with dummies, except
under X/Z/U*, where the sequence is kept and its UIDs replaced.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydicom import config
from pydicom.datadict import (
    dictionary_has_tag,
    dictionary_VM,
    dictionary_VR,
    keyword_dict,
    repeater_has_tag,
)
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.valuerep import EXPLICIT_VR_LENGTH_32, validate_value

from indexer.deid.burned_in import BurnedInPolicy
from indexer.deid.pixels import Mask
from indexer.deid.rawvalue import AS_BYTES, CONTROL, KNOWN_VRS, NUMBER_SIZES
from indexer.deid.rules import RuleSet, SiteRule
from indexer.deid.table import Action, Option, Row, SafePrivate, TagPattern

RULES_VERSION = 41
"""Raised with every change that gives the same source, under the same settings, another copy.

A rerun processes again the sources indexed under another rules version (their fingerprint
includes it), and each replaces the copy and the index rows it made before (``Ingest``).
A change that gives only video objects another copy raises ``VIDEO_RULES_VERSION`` instead.
``tests/deid/test_rules_version.py`` fails when the copies of its corpus change while this
stays. 1: the rules before these numbers; 2: the pixel-data rules (pixel data past the image
cut, text in compressed frame headers blanked, unused pixel bits cleared); 3: JPX labels and
XML inside association boxes blanked; 4: the frames of a streamed object blanked a whole
fragment at a time, not its first MiB, and what stays of their headers searched (a value
found refuses the object); 5: user data in video (MPEG-2 user data, H.264 and HEVC user data
SEI messages) blanked; 6: an MP4 file wrapped whole has its metadata zeroed; 7: and the user
data SEI messages of its H.264 and HEVC tracks blanked; 8: both where such a file streams (128
MiB or more), as far as its first fragment holds it; 9: video in a transport stream: the user
data in its video packets blanked, its service information made null packets, its adaptation
fields' private data zeroed; 10: video in a program stream: user data cut by a PES packet's
header blanked whole; 11: the user data SEI messages of a fragmented MP4 file's samples (placed
by its movie fragments) blanked; 12: a streamed MP4 file's boxes past its first fragment
blanked as they come, and a box a fragment cuts read on into the next; 13: and the samples
its movie box or movie fragments place past its first fragment; 14: and those placed by a
movie box at its end, read ahead from the source; 15: an MP4 file's event messages (``emsg``)
and a live recording's producer times (``prft``) zeroed; 16: a movie box at the end of a
compressed archive member's MP4 file read ahead too (its member decompressed once more);
17: user data SEI messages that another message nests (scalable, multiview, regional, tile
set and partition nesting) blanked, and a nesting message that cannot be read blanked whole;
18: a streamed MP4 file's top-level box too large to hold (over 32 MiB) zeroed as it passes:
user data, metadata and free space whole, a UUID box, an event message and a producer time
as held; 19: HEVC's overlay information and annotated regions SEI messages (names, labels)
blanked whole; 20: a streamed SEI unit that fragments cut read on to its end, however long
(it was left unread past 32 MiB, and past 32 MiB of a fragment larger than that), an SEI
message whose type or size no stream holds (over 1 MiB of bytes of 255) blanked from there
with the rest of its unit, a nesting header counting more layers or views than any stream
holds (over 1,024) unread, and a nesting message whose header cannot be read blanked from
the byte its reading stopped in, not whole (a streamed unit cut inside its header kept the
bytes before the cut); 21: a streamed MP4 file's movie box or fragment too large to hold
(over 32 MiB) walked into: the boxes it holds parsed as held (it was left), and the samples
its tables or runs place read (their SEI was neither blanked nor searched); 22: a sample that
a movie fragment's run places before an MP4 file's start not read (a held copy read it from
the file's end, as Python's slices do, and blanked what it found there); 23: the samples of
an MP4 file's tracks of text, metadata, timecode or hints (a track whose handler is not video,
auxiliary video or audio, or that names none) zeroed whole, held and streamed; 24: a JPEG
frame in several fragments walked across them: a segment a fragment's end cuts blanked on
into the next, and the header searched across them (the next fragments were neither);
25: a JPEG 2000 frame in several fragments walked across them: the tile-parts' headers in
the later fragments (their comments) blanked and searched; 26: a JPEG walked past its
first scan: what follows its end (a phone's trailer: a motion photo's MP4 file, a second
picture) zeroed and searched, and comments and application segments between scans blanked;
27: a wrapped JP2 or JPEG XL file in several fragments walked across them: a box a
fragment's end cuts zeroed on into the next, the boxes after it (and the codestream) walked;
28: a wrapped JP2 or JPEG XL file's boxes that no decoder reads zeroed, whatever their kind
(only its text boxes were: a writer's own box, a URL, MPEG-7 metadata, a binary filter's,
free space, JPEG XL's JPEG reconstruction data were kept), JP2's header and JPX's
superboxes walked into (they were kept whole), and the bytes in one that are no box zeroed
after those a box's header would take (they were kept, and not searched); 29: a date that
its shift takes out of the years 1 to 9999 (0001-01-01, a placeholder some writers put for
none, shifted back) emptied (the object failed), and a shifted date of a year under 1000
written in four digits (its leading zeros were lost), and an integer a ``perturb`` rule
pushes past what its VR holds stopped at the bound (a US past 65,535 failed the object),
a float too (an FL past float32's range failed the object, an FD or DS went to infinity),
and a ``substitute`` rule's IS or DS value written without the spaces around it, its AT
value a tag; and an identifying value kept whole right before an element whose tag's first
byte reads as a letter found by the leak check (the object was indexed), and an
identifying number found inside a shifted date no leak (the object was refused), and a
value an identifying attribute held searched for as that attribute's wherever an element
removed for what it might hold held it too, before it in a damaged file (the object was
indexed), and a sequence attribute written under a VR of bytes other than UN (OB, OD, a
binary number's) read as the sequence it is and its items walked (they were kept whole),
and a kept private sequence (safe-private list, site rule) without a VR or under UN, OB or
OW read as one and walked (it was kept as bytes), and ACR-NEMA's Variable Pixel Data (7Fxx,0010) and
its companions removed (they were kept), and a kept time that holds letters (a damaged VR
byte, text written as a time) replaced by a dummy (it was kept as read), and an element of
undefined length where PS3.5 allows none removed unread (a text got a dummy, a number was
kept as read); 30: a kept or cleaned date, date-time, age or number string holding letters
replaced by a dummy, and a shifted date-time whose rest is no time of day emptied (both kept
the text as read); 31: a kept UID holding characters no UID has (letters) replaced by its
keyed pseudonym (it was kept as read), and a kept binary number read without its VR whose
bytes make no value its attribute allows replaced by a dummy (it was kept as read, or the
object failed to index), and in a big endian object the UIDs read for the identity map
written as read where kept (they were encoded again); 32: of a kept UID's values, only those
holding such characters replaced (every value was), and a ``redact`` rule with partial ages
redacting what is no age (it kept it as read); 33: the leak check searches a kept text
holding more than ASCII as a reader shows it, in the object's character set and with ISO
2022 escape sequences taken out (it was searched as its bytes only, in the common encodings:
no name in ISO_IR 144, Cyrillic, was found, nor "Ja", ESC ( B, "ne"), and for names of two
ideographs, kana or Hangul syllables, as a word or inside one (they were never searched for,
and a name with a letter right after it was no word of its own), and for a name or ID in
any case ("Jane Doe" of "DOE^JANE" was no leak): the objects that held one are refused, and
a rerun withdraws their copies; 34: encapsulated frames whose items do not fill the Pixel
Data (a damaged item tag or length) refused, ``bad_pixels`` (the frames past the damage were
neither blanked nor searched, and went into the copy as read: a JPEG comment, an SEI unit's
text), and so are frames under a transfer syntax of native pixel data, or none (a video's
SEI text was neither), and a rerun withdraws their copies; 35: a JPEG whose header holds
bytes that are no segment where one begins (damage) has all from there to its end searched
(the walk stopped there, and a comment after it, which decoders read, was neither blanked
nor searched): the objects that held a name there are refused; 36: a JPEG 2000
codestream's header holding bytes that are no marker segment (or a tile-part's length
that ends within its header, or no tile-part where the last one's length ends) has all
from them searched, to where the tile-part's length ends it (the walk goes on there), or
in the main header to the codestream's end (the comments after them were neither blanked
nor searched); 37: under a JPEG or JPEG 2000 transfer syntax, encapsulated frames whose
first fragment begins as no JPEG, codestream or JP2 file does (its first bytes damaged)
searched whole up to the first fragment that does (the frame's Exif went into the copy,
neither blanked nor searched): the objects that held a name there are refused; 38: all the
bytes of encapsulated frames, pictures too (a slice's, a scan's), searched for the values
too long to lie there by chance (``verify.DATA_MIN``): text that damage moved into a
picture's data (an SEI unit whose header became a slice's) went into the copy, unsearched;
39: a comment, or any attribute Clean Descriptors or Clean Graphics names (curve data,
Occupation), searched for as a description is, in its own case and no leak as a kept
attribute's whole value, and an application entity title as the Station Name is, in its own
case and no leak inside the kept Manufacturer or model name (both were searched for as a
name is: Image Comments "Surview" beside a kept Scan Options "SURVIEW", or the Source AE
Title "VIDIVIEW" beside the model name "VidiView R4", refused the object), and a value found
only inside a UID the standard defines no leak (a Patient ID "10008", a Study ID "1000" in
the SOP Class UID "1.2.840.10008.5.1.4.1.1.2" refused the object), and a value that stands
for none not searched for (a Referring Physician's Name "UNKNOWN" beside a kept Acquisition
Contrast "UNKNOWN" refused the object); 40: a deflated object read whole, its pixel data
too (it was read up to its Pixel Data, as an object whose pixel data lies in place is, and
its copy went without it; a cut in it passed unseen); 41: the Patient ID, Patient's Name,
Accession Number or Study ID under a VR that holds no text (a damaged VR byte: "UL", "SQ",
"DA") given its pseudonym under its dictionary VR (written under the damaged one, it failed
the object, ``encode_failed`` or ``invalid_element``).
"""

VIDEO_RULES_VERSION = 15
"""Raised, instead of ``RULES_VERSION``, with a change that gives only video objects another copy.

Video objects: those whose transfer syntax is a video one (MPEG-2, H.264, HEVC;
``video.VIDEO``), whatever their frames hold. An archive holds a few, beside thousands of
slices that a change to the video rules leaves as they are: a rerun processes again only
the video sources indexed under another video rules version (each source's is recorded as
it is indexed; a source that is no video records 0), not every source, as a new
``RULES_VERSION`` makes it. ``tests/deid/test_rules_version.py`` records the digest of its
video objects' copies by both numbers. 1: the video rules of ``RULES_VERSION`` 23; 2: an
MP4 file's image sequence tracks (HEIF's, handler ``pict``) kept as they are, as video
tracks are (1 zeroed their samples); 3: a transport or program stream's data streams
(metadata, ancillary data, private stream 2; private stream 1 where the program map table
names it metadata, KLV, teletext or subtitles) zeroed, a video PID's bytes parsed before
it carries another stream, a transport stream packet whose next one's sync byte is
damaged read as a packet, and a streamed stream's last bytes before a fragment's end, too
few to tell a packet by, checked with the next fragment's (damage taken for a packet
swallowed the packets after it); 4: an MP4 file's Motion JPEG samples have their text
segments (Exif, XMP, comments) blanked, as a JPEG frame's are; 5: a program stream's DVD
subpictures (private stream 1's substreams 20 to 3F, in MPEG-2 PES packets) zeroed after
their substream's id; 6: an H.264 or HEVC SEI message of a payload type its codec does not
define (which decoders skip) blanked whole, nested or not, and so are H.274's envelope,
neural-network post-filter and processing order nesting messages, and in H.264 too, HEVC's
overlay information and annotated regions (they were kept, and searched); 7: a transport
stream's private stream 1 zeroed but where a program map table names it audio (it was only
where one named it text: a writer's own data, and a stream no table names, were kept); 8: an
MP4 file's handler names, data reference locations and compressor names zeroed; 9: an MP4
file's media data that no track's sample places zeroed (a meta box's items, a writer's own
data, the samples of a track its movie box does not name or past those looked at; a
streamed file's samples that went before their movie box came), and a top-level box of a
kind not known read as media data (it was kept, and searched); the samples of its audio
tracks, and of video of other codecs, kept; 10: an MP4 file's bytes at its top level where
its boxes end and no box follows (damage, a writer's trailer) read as media data past the
16 a box's header would take (they were kept, and not searched); 11: video that is no stream
of start codes, nor a transport, program or MP4 stream (damage before its first start code,
which decoders pass over) searched whole, held and streamed (it was neither blanked nor
searched), and a transport or program stream's video and data PES headers' data searched (a
damaged header data length took in an SEI unit, neither blanked nor searched): the objects
that held a name there are refused; 12: an H.264 or HEVC unit that is no coded slice under a
sound header (a parameter set, a delimiter, a reserved or unspecified type, a forbidden bit
set), and an MPEG-2 unit that is no slice, searched whole, held, streamed and in an MP4
file's samples (an SEI unit whose start code or header is damaged went into the copy with
its text, neither blanked nor searched): the objects that held a name there are refused;
13: a transport stream's adaptation fields' bytes past their fields (stuffing) searched
where any is not 0xFF (a damaged length took in the payload, a PES header and an ID3
title, neither zeroed nor searched): the objects that held a name there are refused; 14:
a transport stream's PES packet of a stream id below any PES stream's (damage) zeroed as a
data stream's (it was kept, and not searched); and in an MP4 file, a Motion JPEG sample
that does not begin as a JPEG does searched whole, an H.264 or HEVC unit whose length
runs past its sample searched to the sample's end, and the samples of a video track whose
sample entry no decoder reads (none, a kind that is no four letters, an H.264 or HEVC
entry without its configuration) zeroed (each was kept, and not searched); and an HEVC
unit whose header's temporal id plus 1 is 0 (damage) searched as no slice is; 15: a
program stream's video PES header whose data length runs past its packet (damage) searched
to the packet's end (it was neither parsed nor searched), and a transport stream's null
packets searched where their bytes are neither 0xFF nor zeros (a damaged PID made a video
packet one, dropped unread): the objects that held a name there are refused.
"""

_RESOLVE = {
    Action.X_Z: Action.ZERO,
    Action.Z_D: Action.ZERO,
    Action.X_D: Action.DUMMY,
    Action.X_Z_D: Action.DUMMY,
    Action.X_Z_U: Action.UID,
}
_RESOLVE_SQ = {
    Action.X_Z: Action.ZERO,
    Action.Z_D: Action.ZERO,
    Action.X_D: Action.ZERO,
    Action.X_Z_D: Action.ZERO,
    Action.X_Z_U: Action.UID,
}

# Unlisted UI elements that name a class, a syntax or a coding system, not an instance: kept.
_CLASS_UID = re.compile(
    r"Class|TransferSyntax|CodingScheme|^ContextUID$|^MappingResourceUID$|"
    r"^ContextGroupExtensionCreatorUID$"
)
CLASS_UID_TAGS = frozenset(
    tag for kw, tag in keyword_dict.items() if _CLASS_UID.search(kw) and dictionary_VR(tag) == "UI"
)


@dataclass(frozen=True, slots=True)
class Decision:
    """The action for one element and what decided it (a table row, an option, a default)."""

    action: Action
    source: str
    # replaced or removed for what damage may have made of the value, not only for what its
    # attribute is: recorded for the leak check as a damaged value (``values.DAMAGED``)
    suspect: bool = False


KEEP_DEFAULT = Decision(Action.KEEP, "not in Table E.1-1: kept")
GROUP_LENGTH = Decision(Action.REMOVE, "group length: removed (recomputed on write)")
# A public tag that no edition of the standard defines (a writer's own element in an even
# group, or a damaged tag): its meaning and VR are unknown, so nothing vouches for its value.
NON_STANDARD = Decision(Action.REMOVE, "not a standard attribute (in no data dictionary): removed")
# Command (0000), file meta (0002) and item (FFFE) tags belong to no data set: inside one,
# the file is damaged or mis-written, and what they hold is no attribute's value.
NOT_DATA_SET_GROUPS = frozenset({0x0000, 0x0002, 0xFFFE})
NOT_DATA_SET = Decision(
    Action.REMOVE, "a command, file meta or item tag inside the data set: removed"
)
# Not a sequence's, such a value is checked as a damaged one's (``Decision.suspect``): a file
# meta element a writer put in the data set holds the object's own SOP Instance UID, which the
# copy keeps under Retain UIDs.
NOT_DATA_SET_VALUE = Decision(NOT_DATA_SET.action, NOT_DATA_SET.source, suspect=True)
# A VR no edition defines (a damaged or mis-written element): its value can be neither read,
# judged nor written as DICOM, whatever the attribute or a site rule would do with it.
UNKNOWN_VR = Decision(Action.REMOVE, "an unknown value representation: removed")
# Undefined length is for sequences and encapsulated pixel data (PS3.5 7.1.1): under any
# other VR, the element is damaged, and its value as read is whatever followed it.
UNDEFINED_LENGTH = Decision(
    Action.REMOVE,
    "of undefined length under a VR that cannot have one (a damaged element: its value as "
    "read is what followed it): removed unread",
)
UNLISTED_PN = Decision(Action.ZERO, "not in Table E.1-1, VR PN: treated as identifying")
# ACR-NEMA's Variable Pixel Data (7Fxx,0010) and its companions, retired: an image the copy
# would carry uncleaned and unchecked for burned-in text (or a damaged Pixel Data tag, its
# frames' text unblanked), as Table E.1-1 removes Curve Data (50xx) and Overlay Data.
RETIRED_IMAGE = Decision(
    Action.REMOVE,
    "retired image data in a group 7Fxx other than 7FE0 (Variable Pixel Data and its "
    "companions): removed, as curve and overlay data are, never cleaned nor checked",
)
_RETIRED_IMAGE_ELEMENTS = frozenset({0x0010, 0x0011, 0x0020, 0x0030, 0x0040})
_PIXEL_GROUP = 0x7FE0
_IMAGE_GROUPS = 0x7F  # 7Fxx
UNLISTED_UI = Decision(Action.UID, "not in Table E.1-1, VR UI: instance UIDs replaced")
# A kept attribute written as text its dictionary never gives it (a name where a code, a
# number, a flag or a sequence belongs): most often a damaged tag that now names the wrong
# attribute, so nothing vouches for the value. Replaced by a dummy, which keeps the object
# valid whatever the attribute's type (the IOD types known are only those of compound
# actions). Free text, codes (CS: an upper-case name fits one), dates, times and ages.
FREE_TEXT_VRS = frozenset({"AE", "LO", "LT", "PN", "SH", "ST", "UC", "UR", "UT"})
MISREAD_VRS = FREE_TEXT_VRS | {"AS", "CS", "DA", "DT", "TM"}
MISREAD_TEXT = Decision(
    Action.DUMMY,
    "kept, but written as text (free text, a code, a date, time or age) of a VR its "
    "attribute never has: replaced by a dummy",
    suspect=True,
)
# Written as UN, OB or OW, a public attribute is read by its dictionary VR (some systems write
# known attributes so): a value that is no valid value of that VR (a name as Primary
# Chromaticities; bytes that make no whole numbers of Scene Type) is most often one a damaged
# tag moved there, and nothing vouches for it.
MISREAD_BYTES = Decision(
    Action.DUMMY,
    "a kept or cleaned value written as UN, OB or OW that is no valid value of the VR its "
    "attribute has (a damaged tag may name the wrong attribute): replaced by a dummy",
    suspect=True,
)
# Read without a VR (implicit VR), a public attribute of binary numbers (Rows, an angle) is
# read by the VR its tag names: a value a damaged tag moved there (a name) is read as numbers
# too. Bytes that make no value the attribute allows (not whole numbers, or more or fewer
# than it holds: eight letters under Rows make four) are most often such a value; kept, they
# went into the copy as read, and the index could not read them (``index_failed``).
UNFIT_NUMBER = Decision(
    Action.DUMMY,
    "a kept or cleaned binary number read without its VR (implicit VR) whose bytes make no "
    "value its attribute allows (not whole numbers, more or fewer than it holds; a damaged "
    "tag may name the wrong attribute): replaced by a dummy",
    suspect=True,
)
# No character set has C0 control codes in text but ESC (ISO 2022), and LF, FF, CR and TAB
# (ST, LT, UT). A kept or cleaned text value holding another, or a NUL before its padding, is
# damaged: most often its length runs on, so that it swallowed the elements after it.
TEXT_VRS = frozenset(
    {"AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "LT", "PN", "SH", "ST", "TM", "UC", "UI"}
    | {"UR", "UT"}
)
DAMAGED_TEXT = Decision(
    Action.DUMMY,
    "a kept or cleaned text value holding control codes no character set has (a damaged "
    "element, maybe holding the next ones): replaced by a dummy",
)


# A time is kept as read wherever dates move by whole days (Clean, or Keep under an option):
# one holding letters is no time of day at all. Its VR byte was damaged (a description
# written as TM), or a writer put text there; kept as read, the text went into the copy, and
# a time is never recorded for the leak check. Digits, colons (ACR-NEMA's HH:MM:SS) and
# a fraction's point are a time's; anything else is not.
NOT_A_TIME = Decision(
    Action.DUMMY,
    "a kept time of day holding what no time holds (letters: a damaged VR, or text written "
    "as a time): replaced by a dummy",
    suspect=True,
)
# A date, date-time, age or number string likewise, kept (by the profile: an Expiration Date
# Time, a Slice Thickness; or under an option: Patient's Age) or cleaned (a date moved by
# whole days: a date-time's time of day was kept as read). Kept, its text went into the
# copy, and the leak check takes what a kept number holds for chance. Digits, the points of
# ACR-NEMA's YYYY.MM.DD, what writers put between a date's parts (slashes, spaces, colons),
# signs, an exponent's E and an age's unit hold no name; other letters may.
HOLDS_TEXT = Decision(
    Action.DUMMY,
    "a kept date, date-time, age or number string holding letters no such value has (a name "
    "typed after a date, text written as a number, a description whose VR byte was "
    "damaged): replaced by a dummy",
    suspect=True,
)
# A UID likewise, kept (a class UID; an instance UID under Retain UIDs, or a private one the
# object or the list vouches for): it holds digits and points only. Letters in it ("1.2.3
# Smith") went into the copy as read. Such a value gets its keyed pseudonym, as any instance
# UID does, so a reference to it in another object still matches; the element's other
# values, sound, stay as kept (``actions.clean``), and only the replaced ones are recorded
# (``values.recorded_value``): a sound one is kept elsewhere too.
UID_HOLDS_TEXT = Decision(
    Action.CLEAN,
    "a kept UID holding characters no UID has (a name typed after it, a description whose VR "
    "byte was damaged): each such value replaced by its keyed pseudonym",
    suspect=True,
)
_TIME_TEXT = re.compile(r"[0-9.:]*")  # each value, its padding aside
# A whole value: its values, the backslashes between them, padding. Writers' placeholders
# ("N/A", "UNKNOWN"), NaN and infinity ("1e400", "-inf") and a decimal comma ("1,5") hold no
# name; they are kept as they came.
_PLACEHOLDER = r"(?i:n/a|nan|na|none|null|unknown|unk|infinity|inf)"
_DATE_TEXT = re.compile(rf"(?:[0-9 ./:+\-\\\0]|{_PLACEHOLDER})*")
NUMBER_TEXT = re.compile(rf"(?:[0-9 .,+\-Ee\\\0]|{_PLACEHOLDER})*")
_TEXT_OF = {
    "DA": _DATE_TEXT,
    "DT": _DATE_TEXT,
    "AS": re.compile(rf"(?:[0-9 DWMY\\\0]|{_PLACEHOLDER})*"),
    "DS": NUMBER_TEXT,
    "IS": NUMBER_TEXT,
    "UI": re.compile(r"[0-9. \\\0]*"),
}


def not_of_vr(value: object, vr: str) -> bool:
    """Whether a TM, DA, DT, AS, DS, IS or UI value holds a character no value of ``vr`` has.

    ``value`` as read (bytes) or converted; ``_TEXT_OF`` says what each VR's values hold.
    """
    if value is None:
        return False
    if isinstance(value, bytes | memoryview):
        value = bytes(value).decode("latin-1")
    elif not isinstance(value, str):
        value = "\\".join(map(str, value)) if isinstance(value, MultiValue) else str(value)
    if vr == "TM":
        return not all(_TIME_TEXT.fullmatch(part.strip(" \0")) for part in value.split("\\"))
    return _TEXT_OF[vr].fullmatch(value) is None


def damaged_text(vr: str, value: object) -> bool:
    """Whether a text element's value holds a control code no character set has.

    The value as read (bytes) or decoded; trailing NUL and space padding aside.
    """
    if vr not in TEXT_VRS or not value:
        return False
    if isinstance(value, bytes):
        data = value
    elif isinstance(value, (list, MultiValue)):
        data = "\\".join(str(v) for v in value).encode("utf-8", "surrogateescape")
    else:  # text, or a person name, number or date pydicom made of it
        data = str(value).encode("utf-8", "surrogateescape")
    return CONTROL.search(data.rstrip(b"\x00 ")) is not None


# A data set's elements come in ascending tag order, each right after the one before it
# (PS3.5 7.1). An element read where its tag does not belong, or where an element went
# missing before it (a later one of the same tag took its place as read), most often bears a
# damaged tag: it may now name a kept attribute of the very VR its own has, which nothing in
# its bytes betrays. Its kept free text, dates and ages are replaced by a dummy; its
# neighbours' too, as which of two is damaged cannot be told. Codes (CS), UIDs (the leak
# check finds an original UID anywhere) and numbers are no such text.
OUT_OF_PLACE_VRS = FREE_TEXT_VRS | {"AS", "DA", "DT", "TM"}
OUT_OF_PLACE = Decision(
    Action.DUMMY,
    "a kept or cleaned value (free text, a date, time or age) read out of ascending tag "
    "order, or after an element that went missing (a damaged tag may name the wrong "
    "attribute): replaced by a dummy",
    suspect=True,
)
# Out of place, any other value its attribute does not allow is damaged too: written in a VR
# the attribute never has (bytes under a sequence's tag), or one its VR's rules or its
# multiplicity refuse. Implicit VR gives an element the VR of the attribute its tag names, so
# a damaged tag that now names a kept code or number (Modality, Slice Thickness, Rows) has a
# name read as that code or number. A sound neighbour's value is allowed, and stays.
OUT_OF_PLACE_INVALID = Decision(
    Action.DUMMY,
    "a kept or cleaned value read out of its place (out of ascending tag order, or after an "
    "element that went missing) that its attribute does not allow (written in a VR it never "
    "has; a code string in lower case, a number string holding letters, too many numbers): "
    "replaced by a dummy",
    suspect=True,
)
# Values replaced for what damage may have made of them (``Decision.suspect``): the five above,
# which the profile keeps, and a value the profile removes or replaces read in a VR its
# attribute never has (``foreign``: a UID or a time written under a date's or an allergy's tag,
# a code meaning written as LO under a sequence's). Recorded for the leak check, but, as a
# description, no leak where a kept attribute of the copy holds one as its whole value
# (``values.DAMAGED``): a sound element may hold the same time, code meaning or (under Retain
# UIDs) UID (an Acquisition Time out of place equal to the Content Time; one code in many
# items; an element written twice, the second under a damaged tag). A name a damaged tag moved
# there is still found inside any longer kept value; the attribute's own value, where the
# object holds it sound too, is recorded from there, strictly (``values.put``). Not a text
# holding control codes (``DAMAGED_TEXT``): it may have swallowed the elements after it, names
# among them.
FOREIGN_VRS = MISREAD_VRS | {"UI"}  # text and UIDs: what a leak check records
PATIENT_ID, PATIENT_NAME = 0x00100020, 0x00100010
ACCESSION_NUMBER, STUDY_ID = 0x00080050, 0x00200010
# Never so: the patient's and the study's identifiers. A writer that gives one another VR
# still writes it there, and the engine records it as read, strictly, as it gives it its
# pseudonym (``engine.IDENTITY_TAGS``): ``verify`` must judge it alike.
IDENTIFIERS = frozenset({PATIENT_ID, PATIENT_NAME, ACCESSION_NUMBER, STUDY_ID})


@functools.lru_cache(maxsize=1024)  # a plan's decisions and a few VRs: few pairs
def foreign(decision: Decision, vr: str) -> Decision:
    """``decision`` (removing or replacing) for a value read in a VR its attribute never has."""
    why = f"{decision.source}; read as {vr}, a VR its attribute never has: checked as damaged"
    return Decision(decision.action, why, suspect=True)


# A date, time, date-time, age or code that no such value can be, even as old writers wrote
# them (ACR-NEMA's "1970.01.01", "10:15:00"; a date cut to its year): a Code Meaning under a
# date's tag, a UID under a code's. Implicit VR gives an element the VR of the attribute its
# tag names, so a damaged tag's value is read so. Not that attribute's value either: checked
# as damaged too (``values.record_prefix``).
_SYNTAX = {
    "DA": re.compile(r"\d{4}(\d{2}(\d{2})?)?|\d{4}\.\d{2}\.\d{2}"),
    "TM": re.compile(r"\d{2}(\d{2}(\d{2}(\.\d{1,6})?)?)?|\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?"),
    "DT": re.compile(r"\d{4}(\d{2}){0,5}(\.\d{1,6})?([+-]\d{4})?"),
    "AS": re.compile(r"\d{3}[DWMY]"),
    "CS": re.compile(r"[A-Z0-9 _]*"),
}


def foreign_value(vr: str, value: object) -> bool:
    """Whether a decoded ``value`` of ``vr`` (a date, time, age or code) is none of that VR.

    Not one holding control codes (``damaged_text``): it may have swallowed the elements
    after it, names among them.
    """
    syntax = _SYNTAX.get(vr)
    if syntax is None or value is None:
        return False
    parts = value if isinstance(value, list | MultiValue) else [value]
    texts = (str(part).strip(" \0") for part in parts)
    invalid = any(text and not syntax.fullmatch(text) for text in texts)
    return invalid and not damaged_text(vr, value)


PIXEL_EXCESS = Decision(
    Action.CLEAN,
    "native pixel data longer than its image (Rows, Columns, Samples per Pixel, Bits "
    "Allocated, Number of Frames): cut to the image's size; the bytes past it, which a damaged "
    "length can take in from the elements after it, are dropped",
)
UNUSED_BITS = Decision(
    Action.CLEAN,
    "bits of native pixel data outside each sample's stored bits (Bits Stored, High Bit), "
    "where embedded overlays lay: cleared (zeros, and a signed sample's sign above it); the "
    "image's values stay",
)
FRAME_TEXT = Decision(
    Action.CLEAN,
    "text in the headers of compressed frames (JPEG comments and application segments "
    "decoders do not read: Exif, XMP, IPTC; JPEG 2000 comments; the boxes of a JP2 or JPEG "
    "XL file that decoders do not read: XML, UUID, rights, labels, URLs, Exif, JUMBF, JPEG "
    "reconstruction data, a writer's own; video user data: MPEG-2 user data, H.264 "
    "and HEVC user data SEI messages and those of a type the codec does not define, in a "
    "stream, an MP4 file's video tracks or a transport "
    "or program stream's video packets; an MP4 file's metadata, free space, times, handler "
    "and compressor names and data references, and the "
    "samples of its tracks of text (subtitles, captions), timed metadata (places), timecode "
    "and hints (zeroed); a transport or program stream's data streams, and private stream 1 "
    "but audio a table names (zeroed); a transport "
    "stream's service information (made null packets) and private data): blanked in place, "
    "each keeping its length; the image is not decoded or changed",
)


def not_allowed(tag: int, vr: str, value: object) -> bool:
    """Whether a value as read (bytes) is no value its attribute allows.

    One its VR's rules refuse (``valid_value``: a code string in lower case, a number string
    holding letters, binary numbers not filling whole values), or binary numbers more or
    fewer than the attribute's multiplicity allows. Values converted already: False.
    """
    if not isinstance(value, bytes) or not value:
        return False
    if not valid_value(vr, value):
        return True
    size = NUMBER_SIZES.get(vr)
    return size is not None and not _multiplicity_allows(tag, len(value) // size)


def _multiplicity_allows(tag: int, n: int) -> bool:
    """Whether the dictionary's VM of ``tag`` ("1", "1-3", "2-2n") allows ``n`` values."""
    try:
        low, _, high = dictionary_VM(tag).partition("-")
        if not high:
            return n == int(low)
        if high.endswith("n"):
            return n >= int(low) and n % int(high[:-1] or 1) == 0
        return int(low) <= n <= int(high)
    except (KeyError, ValueError):  # not in the dictionary, or a VM not of these forms
        return True


# explicit VR heads: 12 bytes for the VRs of 32-bit lengths, 8 for the others (implicit VR: 8)
_HEAD_SIZES = dict.fromkeys((vr.value for vr in EXPLICIT_VR_LENGTH_32), 12)
_UNDEFINED = 0xFFFFFFFF
_IN_PLACE: frozenset[int] = frozenset()


def out_of_place(d: Dataset) -> frozenset[int]:
    """Tags of the elements of ``d`` read out of their order (before anything changes them).

    In the order they were read (by where their values begin): each element whose tag is not
    above the one before it and below the one after it, and each that does not begin where
    the one before it ended (where both lengths are known). Elements made, not read, have no
    place and are passed over. Empty for a sound data set, in one pass over its elements.
    """
    elements = d._dict  # noqa: SLF001 - as read: the elements' places are in them
    last_tag, last_tell, end = -1, 0, -1
    for key, elem in elements.items():
        tell, head, length = _extent(elem)
        if not tell:
            continue  # made, not read
        tag = key.real
        if tag <= last_tag or tell <= last_tell or (end >= 0 and head >= 0 and tell - head != end):
            return _judged(elements)
        last_tag, last_tell = tag, tell
        end = -1 if length < 0 or length == _UNDEFINED else tell + length
    return _IN_PLACE


def _extent(elem: object) -> tuple[int, int, int]:
    """Where an element's value began as read (0: not read), its head's size, its length.

    Size and length are -1 where they are not known: an element converted since (its
    file_tell kept).
    """
    if type(elem) is RawDataElement:  # as read (its fields unpacked: the quickest way)
        _tag, vr, length, _value, tell, implicit, *_rest = elem
        return tell or 0, 8 if implicit else _HEAD_SIZES.get(vr or "", 8), length
    if isinstance(elem, RawDataElement):  # written since it was read (rawvalue.Written)
        return 0, -1, -1
    return getattr(elem, "file_tell", None) or 0, -1, -1


def _judged(elements: Mapping[Any, Any]) -> frozenset[int]:
    """``out_of_place`` where the one pass met a fault: every element read, judged."""
    read = sorted((*_extent(elem), key.real) for key, elem in elements.items())
    read = [r for r in read if r[0]]
    out = set()
    end = -1
    for i, (tell, head, length, tag) in enumerate(read):
        if (
            (end >= 0 and head >= 0 and tell - head != end)
            or (i > 0 and tag <= read[i - 1][3])
            or (i + 1 < len(read) and tag >= read[i + 1][3])
        ):
            out.add(tag)
        end = -1 if length < 0 or length == _UNDEFINED else tell + length
    return frozenset(out)


def damaged(
    tag: int,
    vr: str,
    value: object,
    misplaced: frozenset[int],
    read_as: frozenset[int] = frozenset(),
) -> Decision | None:
    """Why a kept or cleaned value as read is damaged, nothing vouching for it; None: sound.

    ``value`` as read (bytes) or converted; ``misplaced``: ``out_of_place`` of its data set;
    ``read_as``: the tags ``rawvalue.read_as_known`` gave their dictionary VR (``vr``).
    """
    if vr in TEXT_VRS and damaged_text(vr, value):
        return DAMAGED_TEXT
    if vr == "TM" and not_of_vr(value, vr):
        return NOT_A_TIME
    if read_as and tag in read_as and not valid_value(vr, value):
        return MISREAD_BYTES
    if vr in AS_BYTES and misread_numbers(tag, value):
        return MISREAD_BYTES
    if misplaced and tag in misplaced:
        if vr in OUT_OF_PLACE_VRS:
            return OUT_OF_PLACE
        if foreign_vr(tag, vr) or not_allowed(tag, vr, value):
            return OUT_OF_PLACE_INVALID
    if vr in NUMBER_SIZES and misread_numbers(tag, value):  # (the engine: implicit VR ones)
        return UNFIT_NUMBER
    if vr in _TEXT_OF and not_of_vr(value, vr):
        return UID_HOLDS_TEXT if vr == "UI" else HOLDS_TEXT
    return None


def misread_numbers(tag: int, value: object) -> bool:
    """Whether bytes (as read) under a public attribute of binary numbers make no value of it.

    Such bytes keep their VR (their byte order may be the file's), but not their length: it
    must give whole numbers, as many as the attribute holds. Attributes that may also hold
    bytes (US or OW) are passed over.
    """
    if (tag >> 16) & 1:
        return False
    try:
        known = dictionary_VR(tag).split(" or ")
    except KeyError:
        return False
    return all(vr in NUMBER_SIZES for vr in known) and not_allowed(tag, known[0], value)


def misread_text(tag: int, vr: str) -> bool:
    """Whether a public element is written as text of a VR its attribute never has."""
    return vr in MISREAD_VRS and foreign_vr(tag, vr)


def foreign_vr(tag: int, vr: str) -> bool:
    """Whether a public element is written in a VR its attribute never has (known ones)."""
    if (tag >> 16) & 1:
        return False
    try:
        known = dictionary_VR(tag)
    except KeyError:
        return False
    return vr not in known.split(" or ")


@dataclass(frozen=True, slots=True)
class Plan:
    """Element -> action mapping compiled from the table, the options and site rules."""

    options: frozenset[Option]
    exact: Mapping[int, Decision]
    masks: tuple[tuple[TagPattern, Decision], ...]
    private: Decision
    burned_in: BurnedInPolicy = BurnedInPolicy.REJECT
    rules: RuleSet = field(default_factory=RuleSet)
    safe_private: SafePrivate = field(default_factory=dict)
    pixel_masks: tuple[Mask, ...] = ()
    # what the engine's walk made of the plan for a public tag (engine._choice); bounded
    memo: dict[tuple[object, ...], object] = field(
        default_factory=dict, init=False, compare=False, repr=False
    )

    @property
    def may_keep_private(self) -> bool:
        """Whether any private element can survive (so private creators must be kept)."""
        return self.rules.keeps_private or self.private.action is Action.CLEAN

    def private_action(
        self, tag: int, creator: str | None, vr: str, ds: Dataset | None = None
    ) -> Decision:
        """A private element: kept only if known safe under Retain Safe Private (E.3.10).

        The table's private row decides: basic X removes every private element. Under the
        option's C, an element the object itself declares identifying gets the action it
        gives (``declared_action``: D, Z, X or U); the others are kept if known safe, by the
        list or by the object:

        - listed in Table E.3.10-1 (by creator, group and element), with the VR listed and a
          value (in ``ds``, the data set holding it) valid for it. Another VR, or a value
          such as free text in a code string, is no longer what the list vouches for:
          removed. One read without its VR (UN) is kept as its bytes if they fit;
        - or, not listed, in a block ``ds`` declares safe (its Private Data Element
          Characteristics, ``declared_safe``), as read.

        A UID kept is replaced like any instance UID, unless Retain UIDs is chosen; a listed
        UID read as UN cannot be, and is removed. In a declared block read as UN, what is a
        UID cannot be told: its bytes are kept, and the leak check refuses the object's own.
        """
        if self.private.action is not Action.CLEAN:
            return self.private
        source = self.private.source
        declared = declared_action(ds, tag, creator) if ds is not None else None
        if declared is not None:  # the object's own word on this element: before any list
            return self._declared(declared, vr, source)
        listed = (
            self.safe_private.get((creator.strip(), tag >> 16, tag & 0xFF))
            if creator is not None
            else None
        )
        why = "on the safe-private list"
        if listed is None:
            if ds is None or not declared_safe(ds, tag, creator):
                return Decision(Action.REMOVE, f"{source}: not on the safe-private list")
            listed, why = "", "in a block the object declares safe (0008,0300)"
        if listed == "UI" or (not listed and vr == "UI"):
            if vr != "UI":
                return Decision(Action.REMOVE, f"{source}: a listed UID read as {vr}")
            if Option.RETAIN_UIDS not in self.options:
                return Decision(Action.UID, f"{source}: {why}, a UID")
        elif listed and vr not in (listed, "UN"):
            return Decision(Action.REMOVE, f"{source}: listed as {listed}, read as {vr}")
        if ds is not None and not fits(listed or vr, ds.get_item(tag)):
            return Decision(Action.REMOVE, f"{source}: listed, its value no valid {listed or vr}")
        return Decision(Action.KEEP, f"{source}: {why}")

    def _declared(self, action: Action, vr: str, source: str) -> Decision:
        """A Deidentification Action (0008,0307) an object gives its element, as applied.

        U is for UIDs (kept under Retain UIDs); D of a sequence cleans its items as D of a
        public one does. What cannot be applied to the element's VR removes it.
        """
        why = f"{source}: the object declares it identifying (0008,0306), action {action.value}"
        if action is Action.UID and vr == "UI" and Option.RETAIN_UIDS in self.options:
            return Decision(Action.KEEP, f"{why}, a UID kept (Retain UIDs)")
        if action is Action.UID and vr != "UI":
            return Decision(Action.REMOVE, f"{why}, not a UID: removed")
        return Decision(action, why)

    def decide(self, tag: int, vr: str) -> Decision:
        """Return the decision for an element with this tag and VR."""
        d = self._decide(tag, vr)
        if d.action is Action.KEEP:
            return MISREAD_TEXT if misread_text(tag, vr) else d
        if vr in FOREIGN_VRS and tag not in IDENTIFIERS and foreign_vr(tag, vr):
            return foreign(d, vr)
        return d

    def _decide(self, tag: int, vr: str) -> Decision:
        d = self.exact.get(tag)
        if d is not None:
            return d
        if (tag >> 16) & 1:
            return self.private_action(tag, None, vr)
        if tag & 0xFFFF == 0:
            return GROUP_LENGTH
        for pattern, decision in self.masks:
            if pattern.matches(tag):
                return decision
        if tag >> 16 in NOT_DATA_SET_GROUPS:
            return NOT_DATA_SET
        return _unlisted(tag, vr)


def _unlisted(tag: int, vr: str) -> Decision:
    """The decision for a public element that no row of the table names."""
    if not (dictionary_has_tag(tag) or repeater_has_tag(tag)):
        return NON_STANDARD
    if retired_image(tag):
        return RETIRED_IMAGE
    if vr == "PN":
        return UNLISTED_PN
    if vr == "UI" and tag not in CLASS_UID_TAGS:
        return UNLISTED_UI
    return KEEP_DEFAULT


def retired_image(tag: int) -> bool:
    """Whether ``tag`` is ACR-NEMA's Variable Pixel Data, or one of its companions."""
    return (
        tag >> 24 == _IMAGE_GROUPS
        and tag >> 16 != _PIXEL_GROUP
        and tag & 0xFFFF in _RETIRED_IMAGE_ELEMENTS
    )


COMPOUND = frozenset(_RESOLVE)


def resolve(action: Action, vr: str, attr_type: str | None = None) -> Action:
    """Resolve a compound action (PS3.15 E.1) by the attribute's type in the object's IOD.

    Type 1/1C: a dummy (D) where allowed; Type 2/2C: empty (Z) where allowed; Type 3 or not
    in the IOD: removed (X) where allowed. With the type unknown (nested, or an IOD we do not
    know), the choice that is valid for any type. X/Z/U* keeps the sequence and replaces its
    UIDs, so references between objects survive.
    """
    if action not in COMPOUND:
        return action
    if action is Action.X_Z_U:
        return Action.UID
    if attr_type is None:
        return (_RESOLVE_SQ if vr == "SQ" else _RESOLVE)[action]
    allowed = set(action.value.split("/"))
    if attr_type in ("1", "1C"):
        choice = "D" if "D" in allowed else "Z"
    elif attr_type in ("2", "2C"):
        choice = "Z" if "Z" in allowed else "D"
    else:
        choice = "X" if "X" in allowed else "Z"
    return Action(choice)


def _choose(row: Row, options: frozenset[Option]) -> tuple[Action, str]:
    chosen = [(row.options[o], o) for o in options if o in row.options]
    # an explicit Retain (K) beats Clean (C) when two chosen options both name the row
    chosen.sort(key=lambda ao: (ao[0] != Action.KEEP, ao[1].value))
    if chosen:
        action, option = chosen[0]
        return action, f"E.1-1 {row.tag.text} option {option.value}"
    return row.basic, f"E.1-1 {row.tag.text} basic"


def compile_plan(
    rows: Iterable[Row],
    options: Iterable[Option] = (),
    *,
    burned_in: BurnedInPolicy = BurnedInPolicy.REJECT,
    rules: RuleSet | None = None,
    safe_private: SafePrivate | None = None,
    pixel_masks: tuple[Mask, ...] = (),
) -> Plan:
    """Merge the table, the chosen options and site rules into a Plan (site rules win)."""
    opts = frozenset(options)
    exact: dict[int, Decision] = {}
    masks: list[tuple[TagPattern, Decision]] = []
    private = Decision(Action.REMOVE, "E.1-1 private attributes basic")
    for row in rows:
        action, source = _choose(row, opts)
        vr = row.vr.split(" or ")[0]
        if row.tag.is_exact:  # compound actions wait for the object's IOD
            decision = Decision(action, source)
        else:
            decision = Decision(resolve(action, vr), f"{source} ({action.value})")
        if row.tag.private:
            private = decision
        elif row.tag.is_exact:
            exact[row.tag.value] = decision
        else:
            masks.append((row.tag, decision))
    return Plan(
        opts,
        exact,
        tuple(masks),
        private,
        burned_in,
        rules or RuleSet(),
        safe_private or {},
        pixel_masks,
    )


_CHECKED_TEXT = frozenset({"AS", "CS", "DA", "DS", "DT", "IS", "LO", "LT", "SH", "TM", "UI"})


def fits(vr: str, element: object) -> bool:
    """Whether ``element``'s value is a valid value of ``vr`` (a safe-private element's).

    Read with a VR from a dictionary (implicit VR) or none (UN), an element's bytes are all
    that show what it holds; written by another device, a listed slot may hold anything.
    Text is checked by its VR's rules (a code string holds no free text), numbers by their
    size; other VRs (OB, SQ) have nothing to check.
    """
    return valid_value(vr, getattr(element, "value", None))


def valid_value(vr: str, value: object) -> bool:
    """Whether ``value`` (as read, or converted) is valid for ``vr``, as ``fits`` judges."""
    if value is None or (vr not in NUMBER_SIZES and vr not in _CHECKED_TEXT):
        return True
    if isinstance(value, bytes | memoryview):
        if vr in NUMBER_SIZES:
            return len(value) % NUMBER_SIZES[vr] == 0
        value = bytes(value).decode("latin-1")
    elif vr in NUMBER_SIZES:
        return True  # numbers, as read
    if not isinstance(value, str):
        value = "\\".join(map(str, value)) if isinstance(value, MultiValue) else str(value)
    parts = [value.rstrip("\0 ")] if vr == "LT" else value.split("\\")
    try:
        for part in parts:
            validate_value(vr, part.strip(" \0") if vr != "LT" else part, config.RAISE)
    except ValueError:
        return False
    return True


CREATOR_FIRST, CREATOR_LAST, PRIVATE_FIRST = 0x0010, 0x00FF, 0x1000  # PS3.5 7.8.1
CHARACTERISTICS = 0x00080300  # Private Data Element Characteristics Sequence (PS3.3 C.12.1)
GROUP_REF, CREATOR_REF = 0x00080301, 0x00080302  # the block described: group, creator
BLOCK_STATUS, NONIDENTIFYING = 0x00080303, 0x00080304  # SAFE / MIXED, safe elements of MIXED


ACTIONS_SEQUENCE = 0x00080305  # Deidentification Action Sequence, in an item of the above
IDENTIFYING, DEID_ACTION = 0x00080306, 0x00080307  # elements (low bytes) and their action
_DECLARED_ACTIONS = {a.value: a for a in (Action.DUMMY, Action.ZERO, Action.REMOVE, Action.UID)}
_DECLARATION_ERRORS = (ValueError, TypeError, AttributeError, KeyError, IndexError)


def declared_safe(ds: Dataset, tag: int, creator: str | None) -> bool:
    """Whether ``ds`` declares its private element ``tag`` free of identifying information.

    Its Private Data Element Characteristics Sequence names the block by group and creator:
    Block Identifying Information Status SAFE declares the whole block, MIXED the elements
    listed (by their low byte) in Nonidentifying Private Elements. An element it also lists
    as identifying (``declared_action``) is not. A damaged sequence declares nothing. Only
    the data set holding it is described: an item's blocks are not.
    """
    try:
        item = _description(ds, tag, creator)
        if item is None or _identifying(item, tag) is not None:
            return False
        found = item.get(BLOCK_STATUS)
        status = str(found.value).strip() if found is not None else ""
        if status == "SAFE":
            return True
        if status == "MIXED":
            return tag & 0xFF in _numbers(item.get(NONIDENTIFYING))
    except _DECLARATION_ERRORS:
        return False
    return False


def declared_action(ds: Dataset, tag: int, creator: str | None) -> Action | None:
    """The action ``ds`` gives its private element ``tag`` as identifying; None if none.

    An item of the block's Deidentification Action Sequence lists the element (its low
    byte) in Identifying Private Elements with a Deidentification Action: D, Z, X or U (PS3.3
    C.12.1.1.7). Any other action removes it. A damaged sequence declares nothing.
    """
    try:
        item = _description(ds, tag, creator)
        return _identifying(item, tag) if item is not None else None
    except _DECLARATION_ERRORS:
        return None


def _description(ds: Dataset, tag: int, creator: str | None) -> Dataset | None:
    """The item of ``ds``'s Private Data Element Characteristics describing ``tag``'s block."""
    if creator is None or CHARACTERISTICS not in ds:
        return None
    for item in ds[CHARACTERISTICS].value or ():
        if item.get(GROUP_REF) is None or item[GROUP_REF].value != tag >> 16:
            continue
        name = item.get(CREATOR_REF)
        if name is None or str(name.value).strip() != creator.strip():
            continue
        return item  # type: ignore[no-any-return]
    return None


def _identifying(item: Dataset, tag: int) -> Action | None:
    """The action ``item`` (a block's description) gives ``tag`` as identifying, if any."""
    actions = item.get(ACTIONS_SEQUENCE)
    for entry in (actions.value or ()) if actions is not None else ():
        if tag & 0xFF in _numbers(entry.get(IDENTIFYING)):
            found = entry.get(DEID_ACTION)
            code = str(found.value).strip() if found is not None else ""
            return _DECLARED_ACTIONS.get(code, Action.REMOVE)
    return None


def _numbers(element: object) -> list[int]:
    """The values of a US element (one or many); ValueError if it holds other values."""
    value = getattr(element, "value", None)
    values = list(value) if isinstance(value, MultiValue | list) else [value]
    numbers = [v for v in values if type(v) is int]
    if len(numbers) != len(values):
        raise ValueError  # damaged: what it names cannot be told
    return numbers


def _creator(ds: Dataset, tag: int) -> str | None:
    """The private creator of a private element (PS3.5 7.8.1), if the block has one."""
    element = tag & 0xFFFF
    if not (tag >> 16) & 1 or element < PRIVATE_FIRST:
        return None
    creator = ds.get((tag & 0xFFFF0000) | (element >> 8))
    return str(creator.value) if creator is not None and creator.value else None


def unknown_vr(vr: str) -> bool:
    """Whether ``vr`` is none the standard defines (pydicom's "US or SS" and such are)."""
    return vr not in KNOWN_VRS and vr.partition(" or ")[0] not in KNOWN_VRS


def decide(plan: Plan, ds: Dataset, tag: int, vr: str) -> Decision | SiteRule:
    """Site rules first, then private handling, then the table.

    An element of a VR no edition defines, and a command, file meta or item tag inside the
    data set, are removed before any of them.
    """
    if unknown_vr(vr):
        return UNKNOWN_VR
    if tag >> 16 in NOT_DATA_SET_GROUPS:  # before the table, which has (0002,0003) (U) too:
        # of the file meta, which is made anew; no copy can hold it here
        return NOT_DATA_SET if vr == "SQ" else NOT_DATA_SET_VALUE
    is_private = bool((tag >> 16) & 1)
    creator = _creator(ds, tag) if is_private else None
    rule = plan.rules.match(tag, vr, creator) if plan.rules.rules else None
    if rule is not None:
        return Decision(rule.action, rule.source) if rule.action is not None else rule
    if is_private:
        if CREATOR_FIRST <= tag & 0xFFFF <= CREATOR_LAST:  # a private creator element
            if plan.may_keep_private:
                return Decision(Action.KEEP, "private creator: kept while its block is")
            return Decision(Action.REMOVE, "private creator: removed with its block")
        return plan.private_action(tag, creator, vr, ds)
    return plan.decide(tag, vr)
