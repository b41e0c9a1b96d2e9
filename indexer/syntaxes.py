"""Transfer syntaxes the standard added after the installed pydicom: taught to it when met.

pydicom reads an object in a transfer syntax of the DICOM root it does not know yet (JPEG XL,
1.2.840.10008.1.2.4.110, came in 2024) as explicit VR little endian, which it is: PS3.5
encodes every transfer syntax but Implicit VR Little Endian and Explicit VR Big Endian so,
and every one added since those has its pixel data encapsulated. It refuses to write one,
though, so without this such objects could not be carried through. A UID outside the DICOM
root, or not a UID at all, is never taken for a transfer syntax.
"""

from __future__ import annotations

import re

from pydicom._uid_dict import UID_dictionary
from pydicom.uid import UID

DICOM_ROOT = "1.2.840.10008.1.2."
_UID = re.compile(r"1\.2\.840\.10008\.1\.2(\.(0|[1-9][0-9]{0,8}))+")
MAX_UID_LENGTH = 64  # PS3.5 9.1
MAX_TAUGHT = 64  # new transfer syntaxes a process learns: a few in reality, bounded all the same
_TAUGHT: set[str] = set()


def known(uid: str) -> bool:
    """Whether objects in transfer syntax ``uid`` can be written; teaches pydicom a new one.

    A transfer syntax of the DICOM root pydicom does not know is registered as an
    encapsulated explicit VR little endian one (its name says it was not known).
    """
    if UID(uid).is_transfer_syntax:
        return True
    if len(uid) > MAX_UID_LENGTH or not _UID.fullmatch(uid) or len(_TAUGHT) >= MAX_TAUGHT:
        return False
    UID_dictionary[uid] = (
        f"Transfer Syntax {uid} (newer than pydicom)",
        "Transfer Syntax",
        "",
        "",
        "",
    )
    _TAUGHT.add(uid)
    return True
