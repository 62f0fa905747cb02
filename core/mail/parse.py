"""Turn the raw bytes of one email into the facts the mail reader needs.

Parsing uses the standard ``email`` package with ``policy.default``. Real mail
is often broken, so every header and body read falls back to a lenient
decoding instead of raising: unknown charsets, raw 8-bit bytes in headers,
parts that declare one charset and carry another.
"""

from __future__ import annotations

import codecs
import functools
import hashlib
import html
import logging
import re
from dataclasses import dataclass, field
from email import _header_value_parser as address_parser
from email import message_from_bytes, policy
from email.header import decode_header, make_header
from email.headerregistry import BaseHeader, HeaderRegistry
from email.message import EmailMessage, Message
from email.parser import BytesHeaderParser, BytesParser
from email.policy import compat32

import nh3
from charset_normalizer import from_bytes

from core.emails import address_from_parts, normalize_message_id

logger = logging.getLogger(__name__)

# Generated ids end in the reserved top-level domain .invalid (RFC 2606), which
# no real mail server may use in a Message-ID.
GENERATED_ID_HOST = "threadtask.invalid"
MAX_ID_LENGTH = 255
MAX_HEADER_BYTES = 256 * 1024
# Charset detection guesses wildly on a handful of bytes, so shorter runs of
# undeclared 8-bit text are read as Windows-1252 instead.
MIN_BYTES_TO_DETECT = 8

# The machine-readable parts of a report (RFC 6522) describe the report
# itself; they are not files anyone attached.
REPORT_PART_TYPES = {
    "text/rfc822-headers",
    "message/delivery-status",
    "message/disposition-notification",
    "message/feedback-report",
}

_MESSAGE_ID = re.compile(r"<[^<>\s]+>")


class _CachingHeaderRegistry(HeaderRegistry):
    """Parse each distinct header value once.

    ``policy.default`` parses a header again on every access, and finding the
    body reads Content-Type many times per part. Header objects are immutable
    strings, so sharing one between equal values is safe.
    """

    max_entries = 512

    def __init__(self) -> None:
        super().__init__()
        self._cache: dict[tuple[str, str], BaseHeader] = {}
        self._classes: dict[str, type[BaseHeader]] = {}

    def __getitem__(self, name: str) -> type[BaseHeader]:
        # The base class builds a new header class on every lookup.
        header_class = self._classes.get(name.lower())
        if header_class is None:
            header_class = super().__getitem__(name)
            if len(self._classes) < self.max_entries:
                self._classes[name.lower()] = header_class
        return header_class

    def __call__(self, name: str, value: str) -> BaseHeader:
        key = (name, value)
        header = self._cache.get(key)
        if header is None:
            header = super().__call__(name, value)
            if len(self._cache) >= self.max_entries:
                self._cache.clear()
            self._cache[key] = header
        return header


MAIL_POLICY = policy.default.clone(header_factory=_CachingHeaderRegistry())
_PARSER = BytesParser(policy=MAIL_POLICY)

# Keep the sanitizer's defaults and also allow cid: links, so inline images
# keep their reference to the part they name.
_URL_SCHEMES = set(nh3.ALLOWED_URL_SCHEMES) | {"cid"}


@dataclass
class Attachment:
    """Metadata of one attachment or inline part; the bytes are not kept."""

    name: str
    content_type: str
    size: int
    inline: bool = False

    def as_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "type": self.content_type,
            "size": self.size,
            "inline": self.inline,
        }


@dataclass(frozen=True)
class Recipient:
    """One address of an address header: normalised, or why it is invalid."""

    header: str
    text: str
    address: str = ""
    error: str = ""


@dataclass
class ParsedMessage:
    """The facts of one email, decoded, with the parsed message kept for checks."""

    message: EmailMessage
    raw_size: int
    message_id: str
    has_message_id: bool
    sender: str
    sender_name: str
    subject: str
    to: list[str]
    cc: list[str]
    # Every address of To, then of Cc, in order, the invalid ones included.
    recipients: list[Recipient]
    in_reply_to: list[str]
    references: list[str]
    html: str
    attachments: list[Attachment] = field(default_factory=list)

    @property
    def reply_ids(self) -> list[str]:
        """Every Message-ID this message replies to, nearest first, without repeats."""
        ids = [*self.in_reply_to, *reversed(self.references)]
        return list(dict.fromkeys(ids))

    @property
    def thread_root(self) -> str:
        """The Message-ID of the first message of the conversation."""
        if self.references:
            return self.references[0]
        if self.in_reply_to:
            return self.in_reply_to[0]
        return self.message_id

    def header(self, name: str) -> str:
        return header_text(self.message, name)


def parse_message(raw: bytes) -> ParsedMessage:
    """Parse ``raw`` into a ParsedMessage; only a broken MIME tree raises."""
    message = _PARSER.parsebytes(raw)
    if message.get_content_maintype() == "multipart" and not message.is_multipart():
        message = _PARSER.parsebytes(_quote_boundary(raw))
    own_id = _first_id(header_text(message, "Message-ID"))
    message_id = own_id or generated_message_id(raw)
    html_part = _body_part(message, ("html",))
    text_part = _body_part(message, ("plain",))
    html_body = body_html(message, html_part, text_part)
    sender_name, sender = _sender(message)
    recipients = [*_recipients(message, "To"), *_recipients(message, "Cc")]

    return ParsedMessage(
        message=message,
        raw_size=len(raw),
        message_id=message_id,
        has_message_id=bool(own_id),
        sender=sender,
        sender_name=sender_name,
        subject=" ".join(header_text(message, "Subject").replace("\0", "").split()),
        to=[
            item.address for item in recipients if item.header == "To" and item.address
        ],
        cc=[
            item.address for item in recipients if item.header == "Cc" and item.address
        ],
        recipients=recipients,
        in_reply_to=_all_ids(header_text(message, "In-Reply-To")),
        references=_all_ids(header_text(message, "References")),
        # PostgreSQL text cannot contain NUL, and no mail client means one.
        html=html_body.replace("\0", ""),
        attachments=list(attachments_of(message, (html_part, text_part))),
    )


def fingerprint(parsed: ParsedMessage) -> str:
    """Return the SHA-256 of an email's sender, Date, subject and decoded body.

    Trace headers (Received, Delivered-To, Return-Path) and the transfer
    encoding are left out, since they change when the same email reaches
    the mailbox twice by different routes. A list or relay that adds a
    footer or a subject tag makes a different fingerprint.
    """
    parts = [
        parsed.sender,
        " ".join(header_text(parsed.message, "Date").split()),
        parsed.subject,
        parsed.html,
    ]
    data = "\0".join(parts).encode("utf-8", "surrogatepass")
    return hashlib.sha256(data).hexdigest()


def derived_message_id(content_fingerprint: str) -> str:
    """Return the id given to an email whose Message-ID another email has."""
    return f"<{content_fingerprint}@{GENERATED_ID_HOST}>"


def peek_message_id(raw: bytes) -> str:
    """Return the Message-ID from the header section alone, or "".

    Used for messages too large or too broken to parse whole, so the log and
    the quarantine still name them.
    """
    head = re.split(rb"\r?\n\r?\n", raw[:MAX_HEADER_BYTES], maxsplit=1)[0]
    try:
        headers = BytesHeaderParser(policy=MAIL_POLICY).parsebytes(head)
        return _first_id(header_text(headers, "Message-ID"))
    except Exception:  # noqa: BLE001 - the id is only a label here
        return ""


def _quote_boundary(raw: bytes) -> bytes:
    """Quote an unquoted boundary that contains "=", as Outlook Express wrote.

    ``policy.default`` ends such a boundary at the "=" and then finds no
    parts; the older parser reads it whole, so its value is quoted here.
    """
    head, separator, body = raw.partition(b"\n\n")
    if not separator:
        head, separator, body = raw.partition(b"\r\n\r\n")
    boundary = message_from_bytes(head + separator, policy=compat32).get_boundary()
    if not boundary:
        return raw
    quoted = re.sub(
        rb"(boundary\s*=\s*)" + re.escape(boundary.encode("ascii", "surrogateescape")),
        lambda match: (
            match.group(1) + b'"' + boundary.encode("ascii", "surrogateescape") + b'"'
        ),
        head,
        count=1,
        flags=re.I,
    )
    return quoted + separator + body


def generated_message_id(raw: bytes) -> str:
    """Return a stable id for a message without a Message-ID: its SHA-256."""
    return f"<{hashlib.sha256(raw).hexdigest()}@{GENERATED_ID_HOST}>"


def storable_id(message_id: str) -> str:
    """Return ``message_id``, or its digest when it is too long to be a key."""
    if len(message_id) <= MAX_ID_LENGTH:
        return message_id
    digest = hashlib.sha256(message_id.encode("utf-8", "surrogateescape")).hexdigest()
    return f"<{digest}@{GENERATED_ID_HOST}>"


def _first_id(value: str) -> str:
    ids = _all_ids(value)
    return ids[0] if ids else ""


def _all_ids(value: str) -> list[str]:
    """Return the Message-IDs in a header, in header form and storable length."""
    found = _MESSAGE_ID.findall(value or "")
    if not found and value.strip() and " " not in value.strip():
        found = [value.strip()]
    ids = []
    for item in found:
        normalized = normalize_message_id(item)
        if normalized:
            ids.append(storable_id(normalized))
    return ids


# Headers


def header_text(message: Message, name: str) -> str:
    """Return the decoded value of the first ``name`` header, or ""."""
    values = header_values(message, name, first_only=True)
    return values[0] if values else ""


def header_values(
    message: Message, name: str, *, first_only: bool = False
) -> list[str]:
    """Return the decoded values of the ``name`` headers.

    A value with raw 8-bit bytes is decoded from the stored raw header, since
    ``policy.default`` has already replaced those bytes with U+FFFD.
    """
    values = []
    for key, raw_value in message.raw_items():
        if key.lower() != name.lower():
            continue
        raw_text = str(raw_value)
        if _has_surrogates(raw_text):
            values.append(_decode_raw_header(repair_text(raw_text)))
        else:
            values.append(_parsed_header(message, key, raw_text, len(values)))
        if first_only:
            break
    return values


def _parsed_header(message: Message, key: str, raw_text: str, index: int) -> str:
    try:
        parsed = message.get_all(key) or []
        return str(parsed[index])
    except Exception:  # noqa: BLE001 - header parsers raise many kinds of error
        logger.debug("header %s could not be parsed; decoding it by hand", key)
        return _decode_raw_header(raw_text)


def _has_surrogates(text: str) -> bool:
    return any("\udc80" <= char <= "\udcff" for char in text)


def _decode_raw_header(value: str) -> str:
    try:
        return str(make_header(decode_header(value)))
    except Exception:  # noqa: BLE001 - broken encoded-words: keep the raw text
        return value


def repair_text(text: str) -> str:
    """Turn raw 8-bit bytes that the parser kept as surrogates into text.

    ``policy.default`` keeps undecodable header bytes as surrogate escapes.
    They are decoded as UTF-8 when valid, otherwise by charset detection.
    """
    if not _has_surrogates(text):
        return text
    data = text.encode("utf-8", "surrogateescape")
    return decode_bytes(data, None)


def decode_bytes(data: bytes, charset: str | None) -> str:
    """Decode ``data`` with ``charset``, falling back safely when it is wrong.

    Bytes that are not valid in a declared UTF-8 are read as Windows-1252,
    one by one, so one stray Latin-1 byte does not spoil the rest.
    """
    if charset:
        try:
            return data.decode(charset)
        except LookupError:
            logger.debug("unknown charset %r; detecting the encoding", charset)
        except UnicodeDecodeError:
            if codecs.lookup(charset).name != "utf-8":
                return data.decode(charset, errors="replace")
            return data.decode("utf-8", errors=_CP1252_FALLBACK)
    return _guess_decode(data)


def _guess_decode(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    lenient = data.decode("utf-8", errors="replace")
    if any(char > "\x7f" and char != "\ufffd" for char in lenient):
        # Some valid multi-byte sequences: UTF-8 with a few stray bytes.
        return data.decode("utf-8", errors=_CP1252_FALLBACK)
    non_ascii = sum(byte > 0x7F for byte in data)
    if non_ascii >= MIN_BYTES_TO_DETECT:
        best = from_bytes(data).best()
        if best is not None:
            return str(best)
    return data.decode("cp1252", errors="replace")


def _cp1252_fallback(error: UnicodeError) -> tuple[str, int]:
    if not isinstance(error, UnicodeDecodeError):
        raise error
    bad = error.object[error.start : error.end]
    return bad.decode("cp1252", errors="replace"), error.end


_CP1252_FALLBACK = "threadtask-cp1252"
codecs.register_error(_CP1252_FALLBACK, _cp1252_fallback)


def raw_header_values(message: Message, name: str) -> list[str]:
    """Return every ``name`` header unfolded, without decoding encoded-words."""
    return [
        "".join(str(value).splitlines())
        for key, value in message.raw_items()
        if key.lower() == name.lower()
    ]


def _sender(message: Message) -> tuple[str, str]:
    for display_name, recipient in _header_addresses(message, "From"):
        return display_name, recipient.address
    return "", ""


def _recipients(message: Message, name: str) -> list[Recipient]:
    return [recipient for _, recipient in _header_addresses(message, name)]


def _header_addresses(message: Message, name: str) -> list[tuple[str, Recipient]]:
    """Return the display name and address of each mailbox of the ``name`` headers."""
    found = []
    for key, value in message.raw_items():
        if key.lower() != name.lower():
            continue
        text = "".join(str(value).splitlines())
        if _has_surrogates(text):
            # RFC 6532 allows raw UTF-8 here. Other 8-bit bytes become
            # U+FFFD, which no valid address contains.
            text = text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
        try:
            found.extend(_parse_address_header(name, text))
        except Exception:  # noqa: BLE001 - the parser raises many kinds of error
            logger.debug("the %s header could not be parsed", key)
    return found


@functools.lru_cache(maxsize=1024)
def _parse_address_header(name: str, text: str) -> tuple[tuple[str, Recipient], ...]:
    """Parse one address header value into display names and addresses.

    This is the parser behind ``policy.default``'s address headers, called
    directly: its header objects raise ValueError for a whole header when
    an encoded display name decodes to a line break, and they drop the
    address in angle brackets after an unquoted display name containing
    "@", which Outlook writes. An encoded-word is decoded only into a
    display name, so text inside one never becomes an address. The parser
    is slow and the same addresses recur in a mailbox, hence the cache.
    """
    address_list, _ = address_parser.get_address_list(text)
    found = []
    for address in address_list.addresses:
        for mailbox in address.all_mailboxes:
            display_name = " ".join((mailbox.display_name or "").split())
            found.append((display_name, _recipient(name, mailbox)))
    return tuple(found)


_BRACKETED = re.compile(r"<([^<>\s]+@[^<>\s]+)>")


def _recipient(header: str, mailbox: address_parser.TokenList) -> Recipient:
    """Normalise the address of one mailbox token."""
    if mailbox.token_type == "invalid-mailbox":
        # An unquoted display name containing "@" ends the parse early; the
        # address in the last angle brackets outside encoded-words wins.
        found = _BRACKETED.findall(_text_outside_encoded_words(mailbox))
        if not found:
            return Recipient(header, mailbox.addr_spec or "", error=_NOT_AN_ADDRESS)
        text = found[-1]
        try:
            spec, rest = address_parser.get_addr_spec(text)
        except Exception:  # noqa: BLE001 - the parser raises many kinds of error
            return Recipient(header, text, error=_NOT_AN_ADDRESS)
        if rest:
            return Recipient(header, text, error=_NOT_AN_ADDRESS)
        local_part, domain = spec.local_part, spec.domain
    else:
        local_part, domain = mailbox.local_part, mailbox.domain
        text = mailbox.addr_spec or ""
    if not local_part or not domain:
        return Recipient(header, text, error=_NOT_AN_ADDRESS)
    try:
        return Recipient(header, text, address_from_parts(local_part, domain))
    except ValueError as exc:
        return Recipient(header, text, error=str(exc))


_NOT_AN_ADDRESS = "not an email address"


def _text_outside_encoded_words(token: object) -> str:
    if getattr(token, "token_type", "") == "encoded-word":
        return " "
    if isinstance(token, address_parser.Terminal):
        return str(token)
    return "".join(_text_outside_encoded_words(child) for child in token)


# Bodies


def body_html(
    message: EmailMessage,
    html_part: Message | None = None,
    text_part: Message | None = None,
) -> str:
    """Return the body as sanitized HTML: the HTML part, or the text escaped.

    An HTML part with no visible text (some clients send an empty one beside
    the text part) loses to the text part.
    """
    if html_part is None and text_part is None:
        html_part = _body_part(message, ("html",))
        text_part = _body_part(message, ("plain",))
    if html_part is not None:
        markup = part_text(html_part)
        if _visible_text(markup):
            return sanitize_html(markup)

    if text_part is not None:
        return text_to_html(part_text(text_part))
    return ""


def _body_part(message: EmailMessage, kinds: tuple[str, ...]) -> Message | None:
    try:
        part = message.get_body(preferencelist=kinds)
    except Exception:  # noqa: BLE001 - a broken MIME tree has no usable body
        return None
    if part is None or part.is_attachment():
        return None
    return part


def part_text(part: Message) -> str:
    """Return the decoded text of a leaf part."""
    try:
        data = part.get_payload(decode=True) or b""
    except Exception:  # noqa: BLE001 - broken transfer encoding
        data = str(part.get_payload()).encode("utf-8", "surrogateescape")
    if not isinstance(data, bytes):
        return ""
    charset = part.get_content_charset()
    return decode_bytes(data, _python_charset(charset))


def _python_charset(charset: str | None) -> str | None:
    if charset in (None, "us-ascii", "ascii"):
        # 8-bit bytes under an ASCII label are nearly always UTF-8 or Latin-1;
        # decode_bytes tries UTF-8 and then detection.
        return None
    return charset


def _visible_text(markup: str) -> str:
    text = re.sub(r"<(script|style|head)\b.*?</\1\s*>", "", markup, flags=re.I | re.S)
    text = re.sub(r"<[^>]*>", "", text)
    return html.unescape(text).strip()


def sanitize_html(markup: str) -> str:
    """Remove scripts, event handlers and unsafe links from mail HTML."""
    return nh3.clean(markup, url_schemes=_URL_SCHEMES)


def text_to_html(text: str) -> str:
    """Convert plain text to escaped HTML that keeps its line breaks."""
    text = text.replace("\r\n", "\n").strip("\n")
    if not text.strip():
        return ""
    return f'<div style="white-space: pre-wrap">{html.escape(text)}</div>'


# Attachments


def attachments_of(message: Message, body_parts: tuple[Message | None, ...]):
    """Yield metadata for every part that is not one of ``body_parts``."""
    body_ids = {id(part) for part in body_parts if part is not None}
    yield from _walk_attachments(message, body_ids)


def _walk_attachments(part: Message, body_ids: set[int]):
    content_type = part.get_content_type()
    if content_type in REPORT_PART_TYPES:
        return
    if part.get_content_maintype() == "multipart" and not part.is_multipart():
        # A multipart whose boundary never occurs contains no parts at all.
        return
    if part.is_multipart() and content_type != "message/rfc822":
        for child in part.get_payload():
            if isinstance(child, Message):
                yield from _walk_attachments(child, body_ids)
        return
    if id(part) in body_ids:
        return
    if content_type in ("text/plain", "text/html") and not _has_filename(part):
        if part.get_content_disposition() != "attachment":
            return
    yield Attachment(
        name=_filename(part),
        content_type=content_type,
        size=_part_size(part),
        inline=part.get_content_disposition() == "inline",
    )


def _has_filename(part: Message) -> bool:
    return bool(_filename(part))


def _filename(part: Message) -> str:
    try:
        name = part.get_filename() or ""
    except Exception:  # noqa: BLE001 - broken RFC 2231 parameters
        name = ""
    return repair_text(name)


def _part_size(part: Message) -> int:
    try:
        if part.get_content_type() == "message/rfc822":
            return len(part.as_bytes())
        data = part.get_payload(decode=True)
    except Exception:  # noqa: BLE001 - report what the part holds undecoded
        data = str(part.get_payload()).encode("utf-8", "surrogateescape")
    return len(data) if isinstance(data, bytes) else 0
