"""Redaction of contact details in free text, and photo metadata stripping."""

from __future__ import annotations

import struct
import zlib

import pytest

from urbansec.errors import UsageError
from urbansec.privacy.redact import (
    EMAIL_MASK,
    PHONE_MASK,
    find_personal_data,
    redact,
    sniff_image_type,
    strip_image_metadata,
)

EMAILS = [
    "jo@example.org",
    "jo.doe+reports@mail.example.co.uk",
    "J_O-D@sub-domain.example.museum",
    "jo @ example.org",
    "jo [at] example [dot] org",
    "jo(at)example.org",
    "jo{at}example{dot}org",
    "renée.müller@beispiel.de",
]

PHONES = [
    "+49 30 1234 5678",
    "+493012345678",
    "0049 (0)30 123 45 67",
    "030/1234567",
    "030-123 456 78",
    "(312) 555-0199",
    "312-555-0199",
    "312.555.0199",
    "+1 (312) 555-0199",
    "+1-312-555-0199",
    "+44 20 7946 0958",
    "07700 900123",
    "+33 1 42 68 53 00",
    "+39 06 698 81234",
    "+81 3-1234-5678",
    "+91 98765 43210",
    "0612345678",
    "+31 6 12345678",
    "+61 2 9876 5432",
    "+86 10 1234 5678",
]

NOT_PERSONAL = [
    "on 2017-01-31 around 22:15",
    "since 31.01.2017",
    "1/31/2017",
    "at 41.878113, -87.629799",
    "between 10.30-12.00",
    "1234 N State St, unit 5",
    "three cars, 2 people, 45 minutes",
    "bus line 146",
    "the year 2016",
]


@pytest.mark.parametrize("email", EMAILS)
def test_emails_are_masked_in_context(email: str) -> None:
    text = f"Write to {email} please."
    assert redact(text) == f"Write to {EMAIL_MASK} please."
    (finding,) = find_personal_data(text)
    assert finding.kind == "email"
    assert text[finding.start:finding.end] == email


@pytest.mark.parametrize("phone", PHONES)
def test_phone_numbers_are_masked_in_context(phone: str) -> None:
    text = f"Call me on {phone}, evenings."
    assert redact(text) == f"Call me on {PHONE_MASK}, evenings."


@pytest.mark.parametrize("phone", ["+49 30 1234 5678", "(312) 555-0199"])
def test_phone_at_start_end_and_in_brackets(phone: str) -> None:
    assert redact(phone) == PHONE_MASK
    assert redact(f"me (tel {phone})") == f"me (tel {PHONE_MASK})"


@pytest.mark.parametrize("text", NOT_PERSONAL)
def test_dates_decimals_and_small_numbers_are_kept(text: str) -> None:
    assert redact(text) == text
    assert find_personal_data(text) == []


def test_several_findings_in_order_and_text_between_kept() -> None:
    text = ("Lights out at Main St. Contact: ana@example.com / +1 312 555 0199 "
            "or bo@example.net; seen 2017-03-04.")
    assert redact(text) == (f"Lights out at Main St. Contact: {EMAIL_MASK} / {PHONE_MASK} "
                            f"or {EMAIL_MASK}; seen 2017-03-04.")
    kinds = [f.kind for f in find_personal_data(text)]
    assert kinds == ["email", "phone", "email"]


def test_empty_and_plain_text() -> None:
    assert redact("") == ""
    assert redact("nothing to hide here") == "nothing to hide here"


# --------------------------------------------------------------------------------------------
# photos
# --------------------------------------------------------------------------------------------

def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(
        ">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def tiny_png(with_text: bool = True) -> bytes:
    ihdr = struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00\x80")
    chunks = [_png_chunk(b"IHDR", ihdr)]
    if with_text:
        chunks.append(_png_chunk(b"tEXt", b"GPS\x0041.88,-87.63"))
        chunks.append(_png_chunk(b"eXIf", b"MM\x00*secret"))
    chunks += [_png_chunk(b"IDAT", idat), _png_chunk(b"IEND", b"")]
    return b"\x89PNG\r\n\x1a\n" + b"".join(chunks)


def tiny_jpeg(with_exif: bool = True) -> bytes:
    def segment(marker: int, payload: bytes) -> bytes:
        return bytes((0xFF, marker)) + struct.pack(">H", len(payload) + 2) + payload

    parts = [b"\xff\xd8", segment(0xE0, b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00")]
    if with_exif:
        parts.append(segment(0xE1, b"Exif\x00\x00GPS 41.88 -87.63 serial 1234"))
        parts.append(segment(0xFE, b"a comment"))
    parts.append(segment(0xDB, bytes(65)))
    parts.append(segment(0xDA, b"\x01\x01\x00\x00\x3f\x00") + b"\x12\x34\xff\x00\x56")
    parts.append(b"\xff\xd9")
    return b"".join(parts)


def tiny_webp(with_exif: bool = True) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return kind + struct.pack("<I", len(data)) + data + (b"\x00" if len(data) % 2 else b"")

    flags = 0x08 | 0x04 if with_exif else 0
    chunks = chunk(b"VP8X", bytes((flags, 0, 0, 0)) + b"\x00\x00\x00\x00\x00\x00")
    chunks += chunk(b"VP8L", b"\x2f\x00\x00\x00\x00")
    if with_exif:
        chunks += chunk(b"EXIF", b"MM\x00*GPS") + chunk(b"XMP ", b"<x:xmpmeta/>")
    return b"RIFF" + struct.pack("<I", 4 + len(chunks)) + b"WEBP" + chunks


def test_sniff_by_magic_bytes() -> None:
    assert sniff_image_type(tiny_png()) == "image/png"
    assert sniff_image_type(tiny_jpeg()) == "image/jpeg"
    assert sniff_image_type(tiny_webp()) == "image/webp"
    assert sniff_image_type(b"GIF89a....") is None
    assert sniff_image_type(b"<svg xmlns='http://www.w3.org/2000/svg'/>") is None
    assert sniff_image_type(b"") is None


def test_png_metadata_removed_image_kept() -> None:
    stripped = strip_image_metadata(tiny_png(), "image/png")
    assert stripped == tiny_png(with_text=False)
    assert b"GPS" not in stripped


def test_jpeg_exif_and_comment_removed_scan_kept() -> None:
    stripped = strip_image_metadata(tiny_jpeg(), "image/jpeg")
    assert stripped == tiny_jpeg(with_exif=False)
    assert b"GPS" not in stripped and b"comment" not in stripped


def test_webp_exif_xmp_removed_and_flags_cleared() -> None:
    stripped = strip_image_metadata(tiny_webp(), "image/webp")
    assert stripped == tiny_webp(with_exif=False)
    assert struct.unpack("<I", stripped[4:8])[0] == len(stripped) - 8


def test_truncated_image_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="well-formed"):
        strip_image_metadata(tiny_png()[:40], "image/png")
    with pytest.raises(UsageError, match="well-formed"):
        strip_image_metadata(b"\xff\xd8\xff\xe0\x00", "image/jpeg")


@pytest.mark.parametrize("text", ["!" * 4000, "!" * 3990 + "@", "a@" + "a." * 1995,
                                  "a" + " " * 3990 + "@", "1 " * 2000, "a @ " * 1000,
                                  "a@b." * 1000, "(" * 2000 + "1" * 2000])
def test_no_catastrophic_backtracking_on_long_input(text: str) -> None:
    import time

    started = time.perf_counter()
    redact(text)
    assert time.perf_counter() - started < 0.2
