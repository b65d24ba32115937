"""Small, real files of every accepted type, made on the spot (no fixtures on disk).

Images, PDFs and Office files come from the libraries that read them; the audio
containers that have no writer here are assembled from their specifications, just
far enough that a reader finds their duration.
"""

from __future__ import annotations

import io
import struct
import wave
import zlib

import pillow_heif
from PIL import Image

pillow_heif.register_heif_opener()


# Images


def image_bytes(
    format: str, *, size: tuple[int, int] = (64, 48), orientation: int | None = None
) -> bytes:
    image = Image.new("RGB", size, (200, 40, 40))
    for x in range(size[0] // 2):
        image.putpixel((x, 0), (10, 10, 200))
    buffer = io.BytesIO()
    options = {}
    if orientation is not None:
        exif = Image.Exif()
        exif[0x0112] = orientation
        options["exif"] = exif.tobytes()
    image.save(buffer, format=format, **options)
    return buffer.getvalue()


def jpeg(**options) -> bytes:
    return image_bytes("JPEG", **options)


def png(**options) -> bytes:
    return image_bytes("PNG", **options)


def webp(**options) -> bytes:
    return image_bytes("WEBP", **options)


def heic(**options) -> bytes:
    return image_bytes("HEIF", **options)


def gif() -> bytes:
    frames = [Image.new("RGB", (32, 32), color) for color in ((255, 0, 0), (0, 0, 255))]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:], duration=100)
    return buffer.getvalue()


def png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header claims these dimensions (a decompression bomb's calling card)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body))
            + kind
            + body
            + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    # A few rows of zeros compress to almost nothing, as a bomb's do.
    data = zlib.compress(b"\x00" * (1 + width * 3) * 4)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b"")
    )


# Documents


def pdf(text_lines: tuple[str, ...] = ("Hello from a PDF",), *, pages: int = 1) -> bytes:
    """A PDF with real text (Helvetica), one copy of `text_lines` per page."""
    objects: list[bytes] = []
    page_ids = [4 + index * 2 for index in range(pages)]
    objects.append(b"<< /Type /Catalog /Pages 2 0 R >>")
    kids = " ".join(f"{page_id} 0 R" for page_id in page_ids).encode()
    objects.append(b"<< /Type /Pages /Kids [" + kids + b"] /Count " + str(pages).encode() + b" >>")
    objects.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    for page_id in page_ids:
        lines = b" ".join(b"(" + line.encode("latin-1") + b") Tj 0 -16 Td" for line in text_lines)
        stream = b"BT /F1 12 Tf 72 720 Td " + lines + b" ET"
        objects.append(
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
            b"/Resources << /Font << /F1 3 0 R >> >> /Contents "
            + str(page_id + 1).encode()
            + b" 0 R >>"
        )
        objects.append(
            b"<< /Length " + str(len(stream)).encode() + b" >>\nstream\n" + stream + b"\nendstream"
        )
    out = io.BytesIO()
    out.write(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(out.tell())
        out.write(f"{number} 0 obj\n".encode() + body + b"\nendobj\n")
    xref = out.tell()
    out.write(f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode())
    for offset in offsets:
        out.write(f"{offset:010d} 00000 n \n".encode())
    out.write(
        f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    )
    return out.getvalue()


def corrupt_pdf() -> bytes:
    return b"%PDF-1.7\n" + b"this is not really a PDF at all\n" * 50


def docx() -> bytes:
    import docx as python_docx

    document = python_docx.Document()
    document.add_heading("Quarterly notes", level=1)
    document.add_paragraph("The first paragraph mentions aardvarks.")
    table = document.add_table(rows=2, cols=2)
    table.cell(0, 0).text = "Animal"
    table.cell(0, 1).text = "Count"
    table.cell(1, 0).text = "Zebra"
    table.cell(1, 1).text = "7"
    document.add_paragraph("A closing paragraph after the table.")
    buffer = io.BytesIO()
    document.save(buffer)
    return buffer.getvalue()


def pptx() -> bytes:
    from pptx import Presentation

    presentation = Presentation()
    first = presentation.slides.add_slide(presentation.slide_layouts[1])
    first.shapes.title.text = "Launch plan"
    first.placeholders[1].text = "Ship the uploader"
    first.notes_slide.notes_text_frame.text = "Speaker notes about kiwis"
    second = presentation.slides.add_slide(presentation.slide_layouts[5])
    second.shapes.title.text = "Second slide"
    buffer = io.BytesIO()
    presentation.save(buffer)
    return buffer.getvalue()


def xlsx() -> bytes:
    from openpyxl import Workbook

    workbook = Workbook()
    sheet = workbook.active
    sheet.title = "Budget"
    sheet.append(["Item", "Cost"])
    sheet.append(["Paint", 12.5])
    sheet.append(["Brushes", 3])
    other = workbook.create_sheet("People")
    other.append(["Name"])
    other.append(["Grace, Hopper"])
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


def plain_zip() -> bytes:
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("readme.txt", "hello")
    return buffer.getvalue()


CSV = b"name,score\nada,10\ngrace,12\n"
MARKDOWN = "# Title\n\nSome *markdown* with ünïcode.\n".encode()
TEXT = b"Just some plain text.\nSecond line.\n"
UTF16_TEXT = "Text in UTF-16 with a BOM: ça va\n".encode("utf-16")


# Programs

EXE = b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff" + b"\x00" * 200
ELF = b"\x7fELF\x02\x01\x01\x00" + b"\x00" * 200
MACHO = b"\xcf\xfa\xed\xfe\x07\x00\x00\x01" + b"\x00" * 200


# Audio


def wav(seconds: float = 1.0, rate: int = 8000) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as writer:
        writer.setnchannels(1)
        writer.setsampwidth(2)
        writer.setframerate(rate)
        writer.writeframes(b"\x00\x00" * int(seconds * rate))
    return buffer.getvalue()


def mp3(frames: int = 40) -> bytes:
    """MPEG-1 layer III frames at 128 kbit/s, 44.1 kHz (417 bytes each, silent)."""
    header = b"\xff\xfb\x90\x64"
    return (header + b"\x00" * 413) * frames


def adts_aac(frames: int = 40) -> bytes:
    """AAC-LC in ADTS frames, 44.1 kHz stereo."""
    out = bytearray()
    payload = b"\x00" * 200
    length = 7 + len(payload)
    for _ in range(frames):
        header = bytearray(7)
        header[0] = 0xFF
        header[1] = 0xF1  # MPEG-4, layer 0, no CRC
        header[2] = (1 << 6) | (4 << 2) | (2 >> 2)  # AAC LC, 44.1 kHz, channels (high bit)
        header[3] = ((2 & 0x3) << 6) | ((length >> 11) & 0x3)
        header[4] = (length >> 3) & 0xFF
        header[5] = ((length & 0x7) << 5) | 0x1F
        header[6] = 0xFC
        out += header + payload
    return bytes(out)


def flac(seconds: int = 2, rate: int = 44100) -> bytes:
    """A FLAC stream header (STREAMINFO) announcing `seconds` of stereo audio."""
    total = seconds * rate
    info = struct.pack(">HH", 4096, 4096) + b"\x00\x00\x00" + b"\x00\x00\x00"
    packed = (rate << 44) | ((2 - 1) << 41) | ((16 - 1) << 36) | total
    info += packed.to_bytes(8, "big") + b"\x00" * 16
    return b"fLaC" + bytes([0x80]) + len(info).to_bytes(3, "big") + info


def _ogg_crc(data: bytes) -> int:
    crc = 0
    for byte in data:
        crc ^= byte << 24
        for _ in range(8):
            crc = ((crc << 1) ^ 0x04C11DB7) if crc & 0x80000000 else crc << 1
            crc &= 0xFFFFFFFF
    return crc


def _ogg_page(packet: bytes, *, sequence: int, granule: int, flags: int) -> bytes:
    segments = []
    remaining = len(packet)
    while remaining >= 255:
        segments.append(255)
        remaining -= 255
    segments.append(remaining)
    header = (
        b"OggS"
        + bytes([0, flags])
        + struct.pack("<qIII", granule, 0x1234, sequence, 0)
        + bytes([len(segments)])
        + bytes(segments)
    )
    page = header + packet
    crc = _ogg_crc(page)
    return page[:22] + struct.pack("<I", crc) + page[26:]


def ogg_opus(seconds: float = 1.5) -> bytes:
    head = b"OpusHead" + bytes([1, 2]) + struct.pack("<HIhB", 312, 48000, 0, 0)
    tags = b"OpusTags" + struct.pack("<I", 4) + b"test" + struct.pack("<I", 0)
    audio = b"\xfc" + b"\x00" * 20  # a silent Opus packet's worth of bytes
    granule = 312 + int(seconds * 48000)
    return (
        _ogg_page(head, sequence=0, granule=0, flags=0x02)
        + _ogg_page(tags, sequence=1, granule=0, flags=0)
        + _ogg_page(audio, sequence=2, granule=granule, flags=0x04)
    )


def _box(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", 8 + len(body)) + kind + body


def _full_box(kind: bytes, body: bytes, version: int = 0) -> bytes:
    return _box(kind, bytes([version, 0, 0, 0]) + body)


def m4a(seconds: int = 3, *, brand: bytes = b"M4A ", handler: bytes = b"soun") -> bytes:
    """An MP4 with one audio track (no samples), enough for its duration to be read."""
    timescale = 44100
    mvhd = _full_box(
        b"mvhd",
        struct.pack(">IIII", 0, 0, 1000, seconds * 1000)
        + b"\x00\x01\x00\x00\x01\x00"
        + b"\x00" * 10
        + struct.pack(">9I", 0x10000, 0, 0, 0, 0x10000, 0, 0, 0, 0x40000000)
        + b"\x00" * 24
        + struct.pack(">I", 2),
    )
    tkhd = _full_box(
        b"tkhd",
        struct.pack(">IIIII", 0, 0, 1, 0, seconds * 1000)
        + b"\x00" * 8
        + struct.pack(">hhhH", 0, 0, 0x0100, 0)
        + struct.pack(">9I", 0x10000, 0, 0, 0, 0x10000, 0, 0, 0, 0x40000000)
        + struct.pack(">II", 0, 0),
    )
    mdhd = _full_box(
        b"mdhd", struct.pack(">IIII", 0, 0, timescale, seconds * timescale) + b"\x55\xc4\x00\x00"
    )
    hdlr = _full_box(b"hdlr", b"\x00" * 4 + handler + b"\x00" * 12 + b"Sound\x00")
    mp4a = _box(
        b"mp4a",
        b"\x00" * 6
        + struct.pack(">H", 1)
        + b"\x00" * 8
        + struct.pack(">HHHHI", 2, 16, 0, 0, timescale << 16)
        + _box(b"btrt", struct.pack(">III", 0, 128000, 128000)),
    )
    stsd = _full_box(b"stsd", struct.pack(">I", 1) + mp4a)
    empty_tables = (
        _full_box(b"stts", struct.pack(">I", 0))
        + _full_box(b"stsc", struct.pack(">I", 0))
        + _full_box(b"stsz", struct.pack(">II", 0, 0))
        + _full_box(b"stco", struct.pack(">I", 0))
    )
    stbl = _box(b"stbl", stsd + empty_tables)
    minf = _box(b"minf", _full_box(b"smhd", b"\x00" * 4) + stbl)
    mdia = _box(b"mdia", mdhd + hdlr + minf)
    trak = _box(b"trak", tkhd + mdia)
    moov = _box(b"moov", mvhd + trak)
    ftyp = _box(b"ftyp", brand + b"\x00\x00\x02\x00" + brand + b"isom")
    return ftyp + moov


def _ebml(element_id: int, body: bytes) -> bytes:
    id_bytes = element_id.to_bytes((element_id.bit_length() + 7) // 8, "big")
    size = len(body)
    return id_bytes + (0x01 << 56 | size).to_bytes(8, "big") + body


def webm(seconds: float = 2.5, *, codec: bytes = b"A_OPUS") -> bytes:
    header = _ebml(
        0x1A45DFA3,
        _ebml(0x4286, b"\x01")
        + _ebml(0x42F7, b"\x01")
        + _ebml(0x4282, b"webm")
        + _ebml(0x4287, b"\x04")
        + _ebml(0x4285, b"\x02"),
    )
    info = _ebml(
        0x1549A966,
        _ebml(0x2AD7B1, (1_000_000).to_bytes(3, "big"))
        + _ebml(0x4489, struct.pack(">d", seconds * 1000)),
    )
    tracks = _ebml(
        0x1654AE6B,
        _ebml(0xAE, _ebml(0xD7, b"\x01") + _ebml(0x83, b"\x02") + _ebml(0x86, codec)),
    )
    return header + _ebml(0x18538067, info + tracks)
