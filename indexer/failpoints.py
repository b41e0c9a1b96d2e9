"""Named points where a test can kill the process (SIGKILL), to prove crash safety.

``DICOM_INDEX_FAILPOINT=name:n`` kills the process the n-th time it passes ``name``
(default n = 1). Unset, a pass costs one dictionary look-up.
"""

from __future__ import annotations

import os
import signal

_counts: dict[str, int] = {}
_SPEC = os.environ.get("DICOM_INDEX_FAILPOINT", "")
_NAME, _, _NTH = _SPEC.partition(":")
_WHEN = int(_NTH) if _NTH.isdigit() else 1

COPY_TEMP_WRITTEN = "copy_temp"  # a copy's temp file is written, not yet renamed
COPY_WRITTEN = "copy_written"  # a copy is on disk, its batch not yet committed
VAULT_WRITTEN = "vault_written"  # inside the batch transaction, after the vault rows
SQL_COMMITTED = "sql_committed"  # the batch committed, its MongoDB write not yet done


def hit(name: str) -> None:
    """Die here if the environment says so."""
    if name != _NAME:
        return
    _counts[name] = _counts.get(name, 0) + 1
    if _counts[name] == _WHEN:
        os.kill(os.getpid(), signal.SIGKILL)
