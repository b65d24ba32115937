"""What an uploaded file really is, judged from its bytes, and whether it is safe to keep.

The browser's claimed type is ignored and the name's extension is only a hint: it
chooses between plain text, Markdown and CSV (which look alike), and it lets a
message say what the file pretended to be ("looks like a program, not a PNG image").
"""

from __future__ import annotations

import codecs
import io
import struct
import threading
import unicodedata
import zipfile
from pathlib import Path
from typing import BinaryIO, NamedTuple

import pillow_heif
import pypdfium2 as pdfium
from PIL import Image, UnidentifiedImageError

from carmenta.errors import CarmentaError
from carmenta.files.storage import transform as storage_transform
from carmenta.settings import Settings

IMAGE = "image"
PDF = "pdf"
DOCUMENT = "document"
SPREADSHEET = "spreadsheet"
PRESENTATION = "presentation"
TEXT = "text"
AUDIO = "audio"
KINDS: tuple[str, ...] = (IMAGE, PDF, DOCUMENT, SPREADSHEET, PRESENTATION, TEXT, AUDIO)

DOCX_TYPE = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
PPTX_TYPE = "application/vnd.openxmlformats-officedocument.presentationml.presentation"
XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"

MAX_NAME_BYTES = 255
# How much of the start of a file the signatures are looked for in.
HEAD_BYTES = 64 * 1024
# An Office file is a ZIP of XML; refusing huge expansions keeps processing bounded.
MAX_OFFICE_EXPANDED_BYTES = 256 * 1024 * 1024
MB = 1024 * 1024

ACCEPTED_SUMMARY = (
    "Carmenta accepts images (JPEG, PNG, WebP, GIF, HEIC), PDF, Word, PowerPoint, "
    "Excel and CSV files, plain text and Markdown, and audio (MP3, M4A/AAC, WAV, OGG, "
    "FLAC, WebM)."
)

# pdfium is not thread-safe: every use in the process (the store's page renders
# included) must hold this one lock.
PDFIUM_LOCK: threading.Lock = storage_transform.PDFIUM_LOCK

pillow_heif.register_heif_opener()


class UnsupportedFileType(CarmentaError, ValueError):
    """The content is not a type Carmenta accepts; the message says why in plain words."""


class InvalidFileName(CarmentaError, ValueError):
    """The file name cannot be kept; the message says what is wrong with it."""


class UnacceptableContent(CarmentaError, ValueError):
    """A supported type whose content is damaged or unsafe (a corrupt PDF, an image bomb)."""


class DetectedType(NamedTuple):
    kind: str
    content_type: str


# What a name's extension claims, in words, for messages about disguised files.
_CLAIMS: dict[str, str] = {
    "png": "a PNG image",
    "jpg": "a JPEG image",
    "jpeg": "a JPEG image",
    "jfif": "a JPEG image",
    "gif": "a GIF image",
    "webp": "a WebP image",
    "heic": "a HEIC image",
    "heif": "a HEIC image",
    "pdf": "a PDF",
    "docx": "a Word document",
    "pptx": "a PowerPoint presentation",
    "xlsx": "an Excel spreadsheet",
    "mp3": "an MP3 audio file",
    "m4a": "an M4A audio file",
    "aac": "an AAC audio file",
    "wav": "a WAV audio file",
    "ogg": "an OGG audio file",
    "oga": "an OGG audio file",
    "opus": "an OGG audio file",
    "flac": "a FLAC audio file",
    "webm": "a WebM audio file",
}
_TEXT_TYPES: dict[str, DetectedType] = {
    "md": DetectedType(TEXT, "text/markdown"),
    "markdown": DetectedType(TEXT, "text/markdown"),
    "csv": DetectedType(SPREADSHEET, "text/csv"),
}
_PLAIN_TEXT = DetectedType(TEXT, "text/plain")

_HEIC_BRANDS = {b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"hevm", b"hevs"}
_HEIF_BRANDS = {b"mif1", b"msf1"}
_AVIF_BRANDS = {b"avif", b"avis"}
_M4A_BRANDS = {b"M4A ", b"M4B ", b"M4P ", b"F4A ", b"F4B "}
_QUICKTIME_BRANDS = {b"qt  "}
_WEBM_VIDEO_CODECS = (b"V_VP8", b"V_VP9", b"V_AV1", b"V_MPEG4", b"V_MPEGH", b"V_THEORA")
_WEBM_AUDIO_CODECS = (b"A_OPUS", b"A_VORBIS", b"A_AAC", b"A_FLAC", b"A_MPEG", b"A_PCM")

_BIDI_CONTROLS = {chr(c) for c in (*range(0x202A, 0x202F), *range(0x2066, 0x206A), 0x200E, 0x200F)}


def extension(name: str) -> str:
    stem, dot, ext = name.rpartition(".")
    return ext.lower() if dot and stem else ""


def validate_name(name: str | None) -> str:
    """The name as it will be kept (surrounding spaces removed). Raises InvalidFileName."""
    if name is None or not name.strip():
        raise InvalidFileName("The file has no name.")
    name = name.strip()
    if "/" in name or "\\" in name:
        raise InvalidFileName("File names cannot contain / or \\.")
    for char in name:
        if unicodedata.category(char) in ("Cc", "Zl", "Zp") or char in _BIDI_CONTROLS:
            raise InvalidFileName("The file name contains control characters.")
    if name in (".", ".."):
        raise InvalidFileName("That is not a usable file name.")
    try:
        encoded = name.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidFileName("The file name is not valid text.") from None
    if len(encoded) > MAX_NAME_BYTES:
        raise InvalidFileName(f"The file name is too long (at most {MAX_NAME_BYTES} bytes).")
    return name


def limit_mb(kind: str | None, settings: Settings) -> int:
    """The largest accepted size of a kind, in MB; None: the largest of all kinds."""
    if kind == IMAGE:
        return settings.max_image_mb
    if kind == AUDIO:
        return settings.max_audio_mb
    if kind is None:
        return max(settings.max_image_mb, settings.max_audio_mb, settings.max_document_mb)
    return settings.max_document_mb


def detect_file(path: Path, *, name: str) -> DetectedType:
    """The kind and content type of the file at `path`. Raises UnsupportedFileType."""
    with path.open("rb") as stream:
        return _detect(stream, name=name)


def detect_bytes(data: bytes, *, name: str) -> DetectedType:
    return _detect(io.BytesIO(data), name=name)


def kind_hint(head: bytes) -> str | None:
    """From the first bytes alone: IMAGE or AUDIO when obvious, else None.

    Lets an upload be refused at the image or audio limit before it is complete.
    """
    if _image_type(head) is not None:
        return IMAGE
    if head[:4] in (b"fLaC", b"OggS") or head[:3] == b"ID3":
        return AUDIO
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return AUDIO
    if _mpeg_audio_type(head) is not None:
        return AUDIO
    if head[4:8] == b"ftyp" and head[8:12] in _M4A_BRANDS:
        return AUDIO
    return None


def _claim(name: str) -> str | None:
    return _CLAIMS.get(extension(name))


def _refuse_program(name: str) -> UnsupportedFileType:
    claim = _claim(name)
    if claim:
        return UnsupportedFileType(f"This file looks like a program, not {claim}.")
    return UnsupportedFileType("This file looks like a program; programs can't be uploaded.")


def _detect(stream: BinaryIO, *, name: str) -> DetectedType:
    head = stream.read(HEAD_BYTES)
    if not head:
        raise UnsupportedFileType("This file is empty.")

    if _is_program(head):
        raise _refuse_program(name)

    image_type = _image_type(head)
    if image_type is not None:
        return DetectedType(IMAGE, image_type)
    if head[4:8] == b"ftyp":
        return _iso_media_type(stream, head)
    if b"%PDF-" in head[:1024]:
        return DetectedType(PDF, "application/pdf")
    if head[:4] == b"PK\x03\x04":
        return _office_type(stream)
    audio_type = _audio_type(head)
    if audio_type is not None:
        return DetectedType(AUDIO, audio_type)
    refusal = _known_unsupported(head)
    if refusal is not None:
        raise UnsupportedFileType(refusal)
    if _is_text(stream, head):
        claim = _claim(name)
        if claim:
            raise UnsupportedFileType(f"This file contains plain text, not {claim}.")
        return _TEXT_TYPES.get(extension(name), _PLAIN_TEXT)
    raise UnsupportedFileType(f"Carmenta can't read this kind of file. {ACCEPTED_SUMMARY}")


def _is_program(head: bytes) -> bool:
    return (
        head[:2] == b"MZ"
        or head[:4] == b"\x7fELF"
        or head[:4]
        in (
            b"\xfe\xed\xfa\xce",
            b"\xfe\xed\xfa\xcf",
            b"\xce\xfa\xed\xfe",
            b"\xcf\xfa\xed\xfe",
            b"\xca\xfe\xba\xbe",  # a universal Mach-O binary, or a Java class
        )
        or head[:4] == b"\x00asm"  # WebAssembly
    )


def _image_type(head: bytes) -> str | None:
    if head[:3] == b"\xff\xd8\xff":
        return "image/jpeg"
    if head[:8] == b"\x89PNG\r\n\x1a\n":
        return "image/png"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    if head[4:8] == b"ftyp":
        brands = _ftyp_brands(head)
        if brands & _AVIF_BRANDS:
            return None
        if head[8:12] in _HEIC_BRANDS or head[8:12] in _HEIF_BRANDS:
            return "image/heic" if brands & _HEIC_BRANDS else "image/heif"
    return None


def _ftyp_brands(head: bytes) -> set[bytes]:
    size = struct.unpack(">I", head[:4])[0]
    end = min(max(size, 16), len(head), 4096)
    brands = {head[8:12]}
    brands.update(head[offset : offset + 4] for offset in range(16, end - 3, 4))
    return brands


def _iso_media_type(stream: BinaryIO, head: bytes) -> DetectedType:
    """An ISO media file that is not a HEIC image: M4A audio, or something refused."""
    brands = _ftyp_brands(head)
    if brands & _AVIF_BRANDS:
        raise UnsupportedFileType(
            "AVIF images aren't supported yet; use JPEG, PNG, WebP, GIF or HEIC."
        )
    if head[8:12] in _M4A_BRANDS:
        return DetectedType(AUDIO, "audio/mp4")
    if head[8:12] in _QUICKTIME_BRANDS:
        raise UnsupportedFileType("This is a video; Carmenta accepts audio but not video.")
    handlers = _mp4_handlers(stream)
    if b"vide" in handlers:
        raise UnsupportedFileType("This is a video; Carmenta accepts audio but not video.")
    if b"soun" in handlers:
        return DetectedType(AUDIO, "audio/mp4")
    raise UnsupportedFileType(f"Carmenta can't read this kind of media file. {ACCEPTED_SUMMARY}")


def _mp4_handlers(stream: BinaryIO) -> set[bytes]:
    """The track handler types ('soun', 'vide', ...) in an MP4 file's `moov` box."""
    stream.seek(0, io.SEEK_END)
    file_size = stream.tell()
    offset = 0
    for _ in range(1000):
        if offset + 8 > file_size:
            break
        stream.seek(offset)
        header = stream.read(16)
        size, box_type = struct.unpack(">I4s", header[:8])
        header_size = 8
        if size == 1:
            size = struct.unpack(">Q", header[8:16])[0]
            header_size = 16
        elif size == 0:
            size = file_size - offset
        if size < header_size:
            break
        if box_type == b"moov":
            stream.seek(offset + header_size)
            body = stream.read(min(size - header_size, 32 * MB))
            handlers = set()
            position = body.find(b"hdlr")
            while position != -1:
                handlers.add(body[position + 12 : position + 16])
                position = body.find(b"hdlr", position + 4)
            return handlers
        offset += size
    return set()


def _office_type(stream: BinaryIO) -> DetectedType:
    stream.seek(0)
    try:
        with zipfile.ZipFile(stream) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        raise UnsupportedFileType(
            "This file looks like a ZIP archive or Office document, but it is damaged."
        ) from None
    names = {member.filename for member in members}
    if "[Content_Types].xml" in names:
        if any(name.lower().endswith("vbaproject.bin") for name in names):
            raise UnsupportedFileType(
                "Office files with macros aren't accepted; save it as a regular "
                ".docx, .pptx or .xlsx file."
            )
        if sum(member.file_size for member in members) > MAX_OFFICE_EXPANDED_BYTES:
            raise UnsupportedFileType(
                "This Office file expands to more than "
                f"{MAX_OFFICE_EXPANDED_BYTES // MB} MB when opened, which is more than "
                "Carmenta accepts."
            )
        if "word/document.xml" in names:
            return DetectedType(DOCUMENT, DOCX_TYPE)
        if "ppt/presentation.xml" in names:
            return DetectedType(PRESENTATION, PPTX_TYPE)
        if "xl/workbook.xml" in names:
            return DetectedType(SPREADSHEET, XLSX_TYPE)
    if "mimetype" in names:
        raise UnsupportedFileType(
            "OpenDocument and EPUB files aren't supported yet; save it as .docx, .pptx or .xlsx."
        )
    raise UnsupportedFileType(f"ZIP archives aren't accepted. {ACCEPTED_SUMMARY}")


def _mpeg_audio_type(head: bytes) -> str | None:
    if len(head) < 4 or head[0] != 0xFF or head[1] & 0xE0 != 0xE0:
        return None
    version = (head[1] >> 3) & 0b11
    layer = (head[1] >> 1) & 0b11
    if layer == 0b00:
        # ADTS: AAC in its raw stream form; the version bit is 0 or 1 only.
        if head[1] & 0xF0 == 0xF0 and (head[2] >> 2) & 0x0F < 13:
            return "audio/aac"
        return None
    bitrate = head[2] >> 4
    sample_rate = (head[2] >> 2) & 0b11
    if version == 0b01 or bitrate in (0, 0x0F) or sample_rate == 0b11:
        return None
    if layer in (0b01, 0b10):  # layer III (MP3) or II
        return "audio/mpeg"
    return None


def _audio_type(head: bytes) -> str | None:
    if head[:3] == b"ID3":
        return "audio/mpeg"
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return "audio/wav"
    if head[:4] == b"fLaC":
        return "audio/flac"
    if head[:4] == b"OggS":
        if b"\x80theora" in head or b"\x01video" in head:
            raise UnsupportedFileType("This is a video; Carmenta accepts audio but not video.")
        return "audio/ogg"
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return _webm_type(head)
    return _mpeg_audio_type(head)


def _webm_type(head: bytes) -> str:
    # The EBML header's DocType element (0x4282): a size, then the text.
    position = head.find(b"\x42\x82", 0, 128)
    doc_type = b""
    if position != -1:
        try:
            length, start = read_ebml_vint(head, position + 2, keep_marker=False)
            doc_type = head[start : start + min(length, 16)]
        except ValueError:
            pass
    if doc_type != b"webm":
        raise UnsupportedFileType(
            "Matroska files aren't supported; audio can be WebM, MP3, M4A, WAV, OGG or FLAC."
        )
    if any(codec in head for codec in _WEBM_VIDEO_CODECS):
        raise UnsupportedFileType("This is a video; Carmenta accepts audio but not video.")
    if any(codec in head for codec in _WEBM_AUDIO_CODECS):
        return "audio/webm"
    raise UnsupportedFileType("This WebM file has no audio track Carmenta recognises.")


def read_ebml_vint(data: bytes, position: int, *, keep_marker: bool) -> tuple[int, int]:
    """An EBML variable-length integer at `position`: (value, position after it).

    Element ids keep their length marker bits; sizes do not. Raises ValueError.
    """
    if position >= len(data):
        raise ValueError("truncated")
    first = data[position]
    length = 1
    while length <= 8 and not first & (0x80 >> (length - 1)):
        length += 1
    if length > 8 or position + length > len(data):
        raise ValueError("not a variable-length integer")
    value = first if keep_marker else first & (0xFF >> length)
    for byte in data[position + 1 : position + length]:
        value = (value << 8) | byte
    return value, position + length


def _known_unsupported(head: bytes) -> str | None:
    if head[:2] in (b"BM",) and len(head) > 14 and head[6:10] == b"\x00\x00\x00\x00":
        return "BMP images aren't supported; use JPEG, PNG, WebP, GIF or HEIC."
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return "TIFF images aren't supported; use JPEG, PNG, WebP, GIF or HEIC."
    if head[:2] == b"\x1f\x8b" or head[:6] == b"7z\xbc\xaf\x27\x1c" or head[:4] == b"Rar!":
        return f"Compressed archives aren't accepted. {ACCEPTED_SUMMARY}"
    if head[:16] == b"SQLite format 3\x00":
        return f"Database files aren't accepted. {ACCEPTED_SUMMARY}"
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return "This is a video; Carmenta accepts audio but not video."
    if head[:8] == b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1":
        return (
            "Old Office formats (.doc, .ppt, .xls) aren't supported; "
            "save it as .docx, .pptx or .xlsx."
        )
    return None


def text_encoding(head: bytes) -> str:
    """The codec to decode a text file with, from its byte order mark."""
    if head[:3] == codecs.BOM_UTF8:
        return "utf-8-sig"
    if head[:2] in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE):
        return "utf-16"
    return "utf-8"


def _is_text(stream: BinaryIO, head: bytes) -> bool:
    """UTF-8 (or UTF-16 with a byte order mark) all the way through, and no NUL."""
    decoder = codecs.getincrementaldecoder(text_encoding(head))(errors="strict")
    stream.seek(0)
    try:
        while chunk := stream.read(1024 * 1024):
            if "\x00" in decoder.decode(chunk):
                return False
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return False
    return True


class ImageInfo(NamedTuple):
    width: int
    height: int
    format: str


def inspect_image(path: Path, *, max_pixels: int) -> ImageInfo:
    """Dimensions from the image's header, without decoding it. Raises UnacceptableContent."""
    try:
        with Image.open(path) as image:
            width, height = image.size
            image_format = image.format or ""
    except Image.DecompressionBombError:
        raise UnacceptableContent(
            f"This image has too many pixels; the most Carmenta accepts is "
            f"{_megapixels(max_pixels)} megapixels."
        ) from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, struct.error):
        raise UnacceptableContent("This image is damaged and can't be opened.") from None
    if width <= 0 or height <= 0:
        raise UnacceptableContent("This image is damaged and can't be opened.")
    if width * height > max_pixels:
        raise UnacceptableContent(
            f"This image is {width:,} × {height:,} pixels; the most Carmenta accepts is "
            f"{_megapixels(max_pixels)} megapixels."
        )
    return ImageInfo(width, height, image_format)


def _megapixels(pixels: int) -> str:
    return f"{pixels / 1_000_000:g}"


# pdfium's error codes (FPDF_ERR_*) that mean a password is needed.
_PDF_PASSWORD_ERRORS = {4, 6}


def pdf_problem(error: pdfium.PdfiumError) -> str:
    if getattr(error, "err_code", None) in _PDF_PASSWORD_ERRORS:
        return "This PDF is password-protected; remove the password and upload it again."
    return "This PDF is damaged and can't be opened."


def inspect_pdf(path: Path) -> int:
    """The page count of a PDF that opens. Raises UnacceptableContent."""
    with PDFIUM_LOCK:
        try:
            document = pdfium.PdfDocument(path)
        except pdfium.PdfiumError as error:
            raise UnacceptableContent(pdf_problem(error)) from None
        try:
            pages = len(document)
        finally:
            document.close()
    if pages < 1:
        raise UnacceptableContent("This PDF has no pages.")
    return pages


def validate_content(path: Path, detected: DetectedType, *, settings: Settings) -> None:
    """Deeper checks for kinds whose damage or danger shows only inside the file."""
    if detected.kind == IMAGE:
        inspect_image(path, max_pixels=settings.max_image_pixels)
    elif detected.kind == PDF:
        inspect_pdf(path)
