"""Burned-in annotation policy: objects whose pixels may carry text (PS3.15 E.1, 113101).

BurnedInAnnotation = YES, or (with the attribute absent) a SOP class or modality known to
carry burned-in text: secondary capture, ultrasound, endoscopy and other visible light.
An explicit BurnedInAnnotation = NO is taken at its word.
"""

from __future__ import annotations

from enum import StrEnum

from pydicom.dataset import Dataset

from indexer.deid import pixels
from indexer.deid.pixels import Mask
from indexer.deid.rawvalue import text_of
from indexer.errors import DeidError

RISKY_SOP_PREFIXES = (
    "1.2.840.10008.5.1.4.1.1.7",  # secondary capture family
    "1.2.840.10008.5.1.4.1.1.6.",  # ultrasound (image, enhanced volume)
    "1.2.840.10008.5.1.4.1.1.3.1",  # ultrasound multi-frame
    "1.2.840.10008.5.1.4.1.1.77.",  # visible light (endoscopy, photographs, ...)
)
RISKY_MODALITIES = frozenset({"US", "SC", "XC", "ES", "GM", "SM", "OT", "DOC"})


class BurnedInPolicy(StrEnum):
    """What to do with an object that may carry burned-in text."""

    REJECT = "reject"  # recorded as a failure, never exported (default)
    ALLOW = "allow"  # exported as it is; the user has checked the pixels
    CLEAN = "clean"  # rectangles of a device's pixel mask blanked (Clean Pixel Data)


PIXEL_DATA, FLOAT_PIXEL_DATA = 0x7FE00010, 0x7FE00008
BURNED_IN_ANNOTATION, SOP_CLASS_UID, MODALITY = 0x00280301, 0x00080016, 0x00080060


def may_carry_text(ds: Dataset, codec: str | None = None) -> bool:
    """Whether the object's pixels may hold burned-in identifying text.

    ``codec`` (``rawvalue.codec``) lets the values be read without pydicom's elements.
    """
    if PIXEL_DATA not in ds and FLOAT_PIXEL_DATA not in ds:
        return False

    flag = (_said(ds, BURNED_IN_ANNOTATION, codec) or "").upper()
    if flag:
        return flag == "YES"
    modality = _said(ds, MODALITY, codec)
    return (
        text_of(ds, SOP_CLASS_UID, codec).startswith(RISKY_SOP_PREFIXES)
        or modality is None  # unreadable: nothing vouches for the pixels
        or modality.upper() in RISKY_MODALITIES
    )


def _said(ds: Dataset, tag: int, codec: str | None) -> str | None:
    """An attribute's text; None where its VR is none the standard defines.

    Such an element cannot be read, and de-identification removes it unread.
    """
    try:
        return text_of(ds, tag, codec)
    except NotImplementedError:  # pydicom's word for an unknown VR
        return None


def enforce(
    ds: Dataset, policy: BurnedInPolicy, masks: tuple[Mask, ...] = (), codec: str | None = None
) -> bool:
    """Apply the policy; returns whether pixel data was cleaned (code 113101 applies)."""
    if policy is BurnedInPolicy.ALLOW or not may_carry_text(ds, codec):
        return False
    if policy is BurnedInPolicy.CLEAN:
        pixels.clean(ds, masks)
        return True
    if policy is BurnedInPolicy.REJECT:
        raise DeidError(
            "pixel data may carry burned-in text (BurnedInAnnotation YES, or a secondary "
            "capture / ultrasound / photographic object without it); not exported under "
            "the 'reject' policy",
            reason="burned_in_annotation",
        )
    return False
