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


def may_carry_text(ds: Dataset) -> bool:
    """Whether the object's pixels may hold burned-in identifying text."""
    if "PixelData" not in ds and "FloatPixelData" not in ds:
        return False
    flag = str(ds.get("BurnedInAnnotation", "")).strip().upper()
    if flag:
        return flag == "YES"
    sop = str(ds.get("SOPClassUID", ""))
    modality = str(ds.get("Modality", "")).strip().upper()
    return sop.startswith(RISKY_SOP_PREFIXES) or modality in RISKY_MODALITIES


def enforce(ds: Dataset, policy: BurnedInPolicy, masks: tuple[Mask, ...] = ()) -> bool:
    """Apply the policy; returns whether pixel data was cleaned (code 113101 applies)."""
    if policy is BurnedInPolicy.ALLOW or not may_carry_text(ds):
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
