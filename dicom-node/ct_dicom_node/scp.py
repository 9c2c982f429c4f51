"""The C-STORE SCP (with C-ECHO): CT and MR image storage in the transfer syntaxes the gateway
decodes, from calling AE titles on the allow list only (others are rejected at association).
Each instance is spooled before it is acknowledged; an instance over the series limits, or one
that cannot be spooled, is refused with 0xA700 (out of resources)."""

from __future__ import annotations

import logging
from collections.abc import Callable

from pydicom import Dataset
from pydicom import uid as U
from pynetdicom import AE, evt
from pynetdicom.sop_class import (
    CTImageStorage,
    EnhancedCTImageStorage,
    EnhancedMRImageStorage,
    MRImageStorage,
    Verification,
)

log = logging.getLogger(__name__)

STORAGE = (CTImageStorage, EnhancedCTImageStorage, MRImageStorage, EnhancedMRImageStorage)
# What gateway/decoding.py reads (pydicom + pylibjpeg plugins).
TRANSFER_SYNTAXES = [
    U.ExplicitVRLittleEndian,
    U.ImplicitVRLittleEndian,
    U.DeflatedExplicitVRLittleEndian,
    U.ExplicitVRBigEndian,
    U.JPEGBaseline8Bit,
    U.JPEGExtended12Bit,
    U.JPEGLossless,
    U.JPEGLosslessSV1,
    U.JPEGLSLossless,
    U.JPEGLSNearLossless,
    U.JPEG2000Lossless,
    U.JPEG2000,
    U.HTJ2KLossless,
    U.HTJ2KLosslessRPCL,
    U.HTJ2K,
    U.RLELossless,
]
OUT_OF_RESOURCES = 0xA700
CANNOT_UNDERSTAND = 0xC000

# (series uid, sop uid, whole file bytes) -> None; raises to refuse the instance.
Store = Callable[[str, str, bytes], None]


class Refuse(Exception):
    """Raised by a Store to refuse an instance (limits); the SCP answers OUT_OF_RESOURCES."""


def make_ae(ae_title: str, allowed: frozenset[str]) -> AE:
    ae = AE(ae_title)
    ae.require_calling_aet = sorted(allowed)
    for sop_class in STORAGE:
        ae.add_supported_context(sop_class, TRANSFER_SYNTAXES)
    ae.add_supported_context(Verification)
    return ae


def handlers(store: Store, count: Callable[[str, str], None]) -> list:
    """pynetdicom event handlers; `count(kind, outcome)` feeds the metrics."""

    def on_store(event: evt.Event) -> int:
        try:
            ds: Dataset = event.dataset
            series_uid, sop_uid = str(ds.SeriesInstanceUID), str(ds.SOPInstanceUID)
        except (AttributeError, ValueError, KeyError):
            count("instances", "unreadable")
            return CANNOT_UNDERSTAND
        try:
            store(series_uid, sop_uid, bytes(event.encoded_dataset()))
        except Refuse as why:
            count("instances", "refused")
            log.warning("instance refused", extra={"reason": str(why)})
            return OUT_OF_RESOURCES
        except OSError as exc:
            count("instances", "spool_error")
            log.error("instance not spooled", extra={"error": type(exc).__name__})
            return OUT_OF_RESOURCES
        count("instances", "stored")
        return 0x0000

    return [
        (evt.EVT_C_STORE, on_store),
        (evt.EVT_ACCEPTED, lambda event: count("associations", "accepted")),
        (evt.EVT_REJECTED, lambda event: count("associations", "rejected")),
    ]
