"""Email address normalisation shared by every channel."""

from __future__ import annotations

import re
from email.utils import getaddresses, parseaddr

from core.errors import InvalidField

# Deliberately loose: one "@", no spaces or angle brackets, a dot-free domain
# allowed for local setups such as tracker@localhost.
_ADDRESS = re.compile(r"^[^@\s<>\",;]+@[^@\s<>\",;]+$")


def normalize_email(value: str) -> str:
    """Return the bare, lower-cased address of ``value``, or "" if empty.

    Accepts ``Name <addr>`` forms. Raises ValueError for anything that is not
    an address.
    """
    text = (value or "").strip()
    if not text:
        return ""
    if any(char in text for char in "\r\n\0"):
        raise ValueError("an address cannot contain line breaks")
    if len(getaddresses([text])) != 1:
        raise ValueError("only one address is allowed")
    _, address = parseaddr(text)
    address = address.strip().lower()
    if not _ADDRESS.match(address):
        raise ValueError("not an email address")
    local, domain = address.rsplit("@", 1)
    # RFC 5321 section 4.5.3.1: local part 64 octets, domain 255, path 256.
    if len(local) > 64 or len(domain) > 255 or len(address) > 254:
        raise ValueError("longer than an email address may be")
    return address


def normalize_field(field: str, value: object, *, required: bool = False) -> str:
    """Normalise the address in ``field`` or raise InvalidField naming it."""
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise InvalidField(field, value, "must be a string holding an email address")
    try:
        address = normalize_email(value)
    except ValueError as exc:
        raise InvalidField(
            field,
            value,
            f"must be one email address such as alice@example.com ({exc})",
        ) from None
    if required and not address:
        raise InvalidField(field, value, "is required")
    return address


def all_addresses(values: list[str]) -> list[str]:
    """Return every bare, lower-cased address found in header values."""
    found = []
    for _, address in getaddresses(values):
        address = address.strip().lower()
        if _ADDRESS.match(address):
            found.append(address)
    return found


def domain_of(address: str) -> str:
    return address.rsplit("@", 1)[-1]


def normalize_message_id(value: str | None) -> str:
    """Return a Message-ID in its header form ``<id@host>``, or "" if empty.

    Message-IDs are stored and compared in this form everywhere: tasks,
    mail messages and deliveries.
    """
    text = (value or "").strip()
    if not text:
        return ""
    if "<" in text and ">" in text:
        text = text[text.index("<") + 1 : text.index(">", text.index("<"))]
    text = "".join(text.split()).strip("<>")
    return f"<{text}>" if text else ""
