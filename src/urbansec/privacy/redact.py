"""Find and mask contact details in free text, and strip metadata from photos.

Residents write things like "call me on +49 30 1234 5678" or "mail jo@example.org" into a
report's description. The public text (what viewers, partners and Open311 clients see) has
those removed; only the restricted view keeps the original. The rules err on the side of
masking: a long run of digits that merely looks like a phone number is masked too, while
dates (2017-01-31, 31.01.2017) and decimal numbers (41.8781) are left alone.

Photos carry EXIF/XMP metadata, often with the GPS position of the reporter's phone and the
device's serial number: ``strip_image_metadata`` removes those blocks without re-encoding the
image (no imaging library needed, pixels untouched).
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass

from urbansec.errors import UsageError

__all__ = ["EMAIL_MASK", "PHONE_MASK", "Finding", "find_personal_data", "redact",
           "sniff_image_type", "strip_image_metadata"]

EMAIL_MASK = "[e-mail removed]"
PHONE_MASK = "[phone removed]"

_AT = r"(?:\s*@\s*|\s*[\[\(\{<]\s*(?:at|AT|At)\s*[\]\)\}>]\s*)"
_DOT = r"(?:\.|\s*[\[\(\{<]\s*(?:dot|DOT|Dot)\s*[\]\)\}>]\s*)"
_LOCAL = r"[\w.!#$%&'*+/=?^`{|}~-]"
# the look-behind matches the local part's own characters, so a match starts only where a run
# of them starts: without it, a 4,000-character run would be rescanned from every position
EMAIL = re.compile(
    rf"(?<!{_LOCAL}){_LOCAL}+{_AT}(?:[\w-]+{_DOT})+[A-Za-z]{{2,24}}(?![\w-])", re.UNICODE)
# a phone number: an optional "+", "00" or "(" start, then 7 to 15 digits separated by at most
# a few spaces, dots, dashes, slashes or brackets ("+1 (312) 555-0199", "030/123 45 67")
PHONE = re.compile(r"(?<![\w@+])(?:\+\s?|\(\s?\+?)?\d(?:[ \t.\-/()\u2010-\u2015]{0,3}\d){6,16}"
                   r"(?!\w)")
_DATE = re.compile(r"^(?:\d{4}[-./]\d{1,2}[-./]\d{1,2}|\d{1,2}[-./]\d{1,2}[-./]\d{2,4})$")
_DECIMAL = re.compile(r"^\d{1,3}\.\d+$")
_TIME_RANGE = re.compile(r"^\d{1,2}[.:]\d{2}\s?-\s?\d{1,2}[.:]\d{2}$")


@dataclass(frozen=True)
class Finding:
    """One piece of contact data found in a text: ``kind`` is "email" or "phone"; ``start``
    and ``end`` index the text (Python slice)."""

    kind: str
    start: int
    end: int
    text: str


def _is_phone(candidate: str) -> bool:
    digits = sum(ch.isdigit() for ch in candidate)
    if not 7 <= digits <= 15:
        return False
    stripped = candidate.strip()
    return not (_DATE.match(stripped) or _DECIMAL.match(stripped)
                or _TIME_RANGE.match(stripped))


def find_personal_data(text: str) -> list[Finding]:
    """E-mail addresses (also "name [at] example [dot] org") and phone numbers in ``text``,
    in order, never overlapping."""
    findings = [Finding("email", m.start(), m.end(), m.group()) for m in EMAIL.finditer(text)]
    taken = [(f.start, f.end) for f in findings]
    for m in PHONE.finditer(text):
        if any(s < m.end() and m.start() < e for s, e in taken):
            continue
        candidate = m.group()
        # a closing bracket the number does not open is the sentence's, not the number's
        while candidate.endswith(")") and candidate.count("(") < candidate.count(")"):
            candidate = candidate[:-1]
        if _is_phone(candidate):
            findings.append(Finding("phone", m.start(), m.start() + len(candidate), candidate))
    return sorted(findings, key=lambda f: f.start)


def redact(text: str) -> str:
    """``text`` with every e-mail address and phone number replaced by a mask."""
    parts: list[str] = []
    position = 0
    for finding in find_personal_data(text):
        parts.append(text[position:finding.start])
        parts.append(EMAIL_MASK if finding.kind == "email" else PHONE_MASK)
        position = finding.end
    parts.append(text[position:])
    return "".join(parts)


# --------------------------------------------------------------------------------------------
# photos
# --------------------------------------------------------------------------------------------

def sniff_image_type(data: bytes) -> str | None:
    """The media type from the file's magic bytes: image/jpeg, image/png, image/webp; None for
    anything else (whatever the client claims)."""
    if data[:3] == b"\xff\xd8\xff":
        return "image/jpeg"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "image/png"
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


# APP1 (EXIF, XMP), APP13 (IPTC/Photoshop), COM (comments)
_JPEG_DROP = {0xE1, 0xED, 0xFE}
_PNG_DROP = {b"eXIf", b"tEXt", b"zTXt", b"iTXt", b"tIME"}
_WEBP_DROP = {b"EXIF", b"XMP "}


def strip_image_metadata(data: bytes, media_type: str) -> bytes:
    """``data`` without its metadata blocks (EXIF with GPS, XMP, IPTC, comments, text chunks);
    image data untouched. Raises ``UsageError`` for a file that is not well formed."""
    try:
        if media_type == "image/jpeg":
            return _strip_jpeg(data)
        if media_type == "image/png":
            return _strip_png(data)
        if media_type == "image/webp":
            return _strip_webp(data)
    except (IndexError, struct.error, ValueError) as exc:
        raise UsageError(f"the photo is not a well-formed {media_type} file") from exc
    raise UsageError(f"unsupported photo type {media_type!r}: send JPEG, PNG or WebP")


def _strip_jpeg(data: bytes) -> bytes:
    out = bytearray(data[:2])
    i = 2
    while i < len(data):
        if data[i] != 0xFF:
            raise ValueError("marker expected")
        while data[i] == 0xFF:  # fill bytes
            i += 1
        marker = data[i]
        i += 1
        if marker == 0xD9 or 0xD0 <= marker <= 0xD7 or marker == 0x01:
            out += bytes((0xFF, marker))
            if marker == 0xD9:
                return bytes(out)
            continue
        (length,) = struct.unpack(">H", data[i:i + 2])
        if length < 2 or i + length > len(data):
            raise ValueError("segment runs past the end")
        segment = data[i:i + length]
        if marker == 0xDA:  # start of scan: the entropy-coded image follows; keep the rest
            out += bytes((0xFF, marker)) + data[i:]
            return bytes(out)
        if marker not in _JPEG_DROP:
            out += bytes((0xFF, marker)) + segment
        i += length
    raise ValueError("no image data")


def _strip_png(data: bytes) -> bytes:
    out = bytearray(data[:8])
    i = 8
    while i < len(data):
        (length,) = struct.unpack(">I", data[i:i + 4])
        kind = data[i + 4:i + 8]
        end = i + 12 + length
        if end > len(data):
            raise ValueError("chunk runs past the end")
        if kind not in _PNG_DROP:
            out += data[i:end]
        i = end
        if kind == b"IEND":
            return bytes(out)
    raise ValueError("no IEND chunk")


def _strip_webp(data: bytes) -> bytes:
    chunks = bytearray()
    i = 12
    while i + 8 <= len(data):
        kind = data[i:i + 4]
        (size,) = struct.unpack("<I", data[i + 4:i + 8])
        end = i + 8 + size + (size & 1)
        if i + 8 + size > len(data):
            raise ValueError("chunk runs past the end")
        chunk = bytearray(data[i:min(end, len(data))])
        if kind == b"VP8X" and size >= 1:
            chunk[8] &= ~0x0C & 0xFF  # clear the EXIF (0x08) and XMP (0x04) flags
        if kind not in _WEBP_DROP:
            chunks += chunk
        i = end
    return b"RIFF" + struct.pack("<I", 4 + len(chunks)) + b"WEBP" + bytes(chunks)
