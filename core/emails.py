"""Email address normalisation shared by every channel."""

from __future__ import annotations

import re
import string
import unicodedata
from email.utils import getaddresses, parseaddr

from core.errors import InvalidField

# all_addresses keeps this loose check: one "@", no spaces or angle brackets.
_ADDRESS = re.compile(r"^[^@\s<>\",;]+@[^@\s<>\",;]+$")


def normalize_email(value: str) -> str:
    """Return the bare, normalised address of ``value``, or "" if empty.

    Accepts ``Name <addr>`` forms and quoted local parts; see
    ``address_from_parts`` for the stored form. Raises ValueError for
    anything that is not one address, and for address literals.
    """
    text = (value or "").strip()
    if not text:
        return ""
    if any(char in text for char in "\r\n\0"):
        raise ValueError("an address cannot contain line breaks")
    if len(getaddresses([text])) != 1:
        raise ValueError("only one address is allowed")
    _, address = parseaddr(text)
    local, at, domain = address.strip().rpartition("@")
    if not at:
        raise ValueError("not an email address")
    if len(local) >= 2 and local[0] == local[-1] == '"':
        local = re.sub(r"\\(.)", r"\1", local[1:-1])
    elif not _is_dot_atom(local):
        raise ValueError("not an email address")
    return address_from_parts(local, domain)


# RFC 5322 section 3.2.3 atext. RFC 6532 adds every non-ASCII character.
_ATEXT = frozenset(string.ascii_letters + string.digits + "!#$%&'*+-/=?^_`{|}~")
# RFC 5321 section 4.1.2: letters, digits and inner hyphens.
_DOMAIN_LABEL = re.compile(r"^[a-z0-9](?:[a-z0-9-]*[a-z0-9])?$")
# Controls, format characters (bidi overrides), surrogates, private use,
# unassigned code points and line or paragraph separators.
_REJECTED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})


def address_from_parts(local_part: str, domain: str) -> str:
    """Return the normalised address of a decoded local part and domain.

    The address is lower-cased. The local part is written bare when it is a
    dot-atom and quoted otherwise. A non-ASCII local part stays UTF-8, so
    mail to it needs SMTPUTF8 (RFC 6531). A non-ASCII domain is stored in
    its IDNA ASCII form. Raises ValueError saying what is wrong.
    """
    local = unicodedata.normalize("NFC", local_part).lower()
    _check_local_part(local)
    domain = _ascii_domain(domain)
    if not _is_dot_atom(local):
        local = '"' + local.replace("\\", "\\\\").replace('"', '\\"') + '"'
    address = f"{local}@{domain}"
    # RFC 5321 section 4.5.3.1: local part 64 octets, domain 255, path 256.
    if len(local.encode()) > 64 or len(domain) > 255 or len(address.encode()) > 254:
        raise ValueError("longer than an email address may be")
    return address


def _is_dot_atom(local: str) -> bool:
    atoms = local.split(".")
    return all(
        atom and all(char in _ATEXT or char > "\x7f" for char in atom) for atom in atoms
    )


def _check_local_part(local: str) -> None:
    if not local:
        raise ValueError("the local part before the @ is empty")
    if "\ufffd" in local:
        raise ValueError("the local part contains bytes that are not valid UTF-8")
    for char in local:
        if unicodedata.category(char) in _REJECTED_CATEGORIES:
            raise ValueError(
                f"the local part contains U+{ord(char):04X}, a control or "
                "format character"
            )


def _ascii_domain(domain: str) -> str:
    domain = domain.strip()
    if domain.startswith("["):
        raise ValueError(
            f"address literals such as {domain} are not accepted; use a domain name"
        )
    try:
        ascii_domain = domain.encode("idna").decode("ascii").lower()
    except UnicodeError:
        raise ValueError(f"{domain!r} is not a valid domain name") from None
    labels = ascii_domain.split(".")
    if not all(_DOMAIN_LABEL.match(label) for label in labels):
        raise ValueError(f"{domain!r} is not a valid domain name")
    return ascii_domain


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
