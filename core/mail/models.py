"""Tables of the mail reader, created by migrations 0002 and 0007."""

from __future__ import annotations

import peewee as pw

from core.models import BaseModel
from core.timeutil import utcnow


class QuarantinedMessage(BaseModel):
    """An email that could not be parsed or stored, kept for a person to read.

    The raw bytes are in ``raw_path`` under ``DATA_DIR/quarantine``.
    """

    source = pw.CharField(max_length=16)
    source_id = pw.CharField(max_length=255)
    message_id = pw.CharField(max_length=998, default="")
    raw_path = pw.TextField()
    size = pw.IntegerField(default=0)
    error = pw.TextField()
    created_at = pw.DateTimeField(default=utcnow, index=True)

    class Meta:
        table_name = "mail_quarantine"
        indexes = ((("source", "source_id"), True),)


class MessageFingerprint(BaseModel):
    """The content fingerprint of an incoming email, keyed by its Message-ID.

    See ``core.mail.parse.fingerprint`` for what the digest covers.
    """

    message_id = pw.CharField(max_length=998, unique=True)
    fingerprint = pw.CharField(max_length=64)

    class Meta:
        table_name = "mail_fingerprint"
