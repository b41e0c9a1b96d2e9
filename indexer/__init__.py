"""dicom-index: DICOM archives into a de-identified, queryable index."""

import logging

__version__ = "0.1.0"

logging.getLogger(__name__).addHandler(logging.NullHandler())
