"""Tables of the mail reader. The schema is created by migration 0002."""

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
