"""What happens to an upload after it is stored: read it, describe it, make it searchable.

`process_file` downloads the original to a scratch folder, extracts what its kind
allows (dimensions and a thumbnail, page count and text, slide and sheet text,
duration and a transcript), stores the derived objects beside the original and marks
the file ready. When the content cannot be read the file is marked failed with a
reason meant for its owner; the original is left where it is either way.

Running it again for the same file overwrites the same outputs, so a retried job is
harmless. A file deleted before or during processing ends the run quietly, and
anything the run stored for it is removed again. So does a run whose file was
replaced meanwhile: it read the previous content, and only the run queued by the
replacement may record an outcome.
"""

from __future__ import annotations

import csv
import io
import logging
import shutil
import struct
import tempfile
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import docx
import httpx
import mutagen
import openpyxl
import pptx
import pypdfium2 as pdfium
import pyvips
from docx.table import Table as DocxTable
from mutagen.aac import AAC
from mutagen.flac import FLAC
from mutagen.mp3 import MP3
from mutagen.mp4 import MP4
from mutagen.wave import WAVE
from PIL import Image, ImageOps
from sqlalchemy import update
from sqlmodel import col

from carmenta.db import session_scope
from carmenta.errors import CarmentaError
from carmenta.files import detect
from carmenta.files.models import FileStatus, StoredFile
from carmenta.files.service import (
    PREVIEW,
    THUMBNAIL,
    discard_revision,
    key_of,
    notify_processed,
    prefix_of,
    storage_for,
)
from carmenta.files.storage.base import ObjectNotFound, StorageError
from carmenta.model_fields import utcnow
from carmenta.settings import Settings

logger = logging.getLogger(__name__)

# Extracted text is stored for chat and search; beyond this it is cut (and said so).
MAX_TEXT_BYTES = 2_000_000
THUMBNAIL_SIZE = 320
PREVIEW_SIZE = 2048
WEBP_QUALITY = 75
# Spreadsheets: cells are read row by row until the text cap; rows are cut this wide.
MAX_SHEET_COLUMNS = 200

SPEECH_TIMEOUT = httpx.Timeout(30.0, read=600.0, write=300.0)

Progress = Callable[[float, str], Awaitable[None]]


class ExtractionFailed(CarmentaError):
    """The file's content could not be read; the message is shown to its owner."""


class TransientProcessingError(CarmentaError):
    """Something outside the file failed (the store, the speech service); worth a retry."""


@dataclass
class Extraction:
    metadata: dict[str, Any] = field(default_factory=dict)
    text: str | None = None
    # Derived objects to store beside the original: object name -> local file.
    variants: dict[str, Path] = field(default_factory=dict)


def temp_root(settings: Settings) -> Path:
    """Scratch space for uploads and processing, on the same disk as the app's data."""
    root = settings.data_dir / "tmp"
    root.mkdir(parents=True, exist_ok=True)
    return root


class _TextCollector:
    """Collects text up to MAX_TEXT_BYTES (UTF-8), remembering whether it had to cut."""

    def __init__(self, limit: int = MAX_TEXT_BYTES) -> None:
        self._parts: list[str] = []
        self._room = limit
        self.truncated = False

    @property
    def full(self) -> bool:
        return self.truncated

    def add(self, text: str) -> bool:
        """Append `text`; False once the cap is reached (callers may stop reading)."""
        if self.truncated:
            return False
        # PostgreSQL text cannot hold NUL, and lone surrogates cannot be encoded.
        cleaned = text.replace("\x00", "").encode("utf-8", "replace")
        if len(cleaned) > self._room:
            cleaned = cleaned[: self._room]
            self.truncated = True
        self._room -= len(cleaned)
        self._parts.append(cleaned.decode("utf-8", "ignore"))
        return not self.truncated

    def result(self, metadata: dict[str, Any]) -> str | None:
        text = "".join(self._parts).strip()
        metadata["text_truncated"] = self.truncated
        if self.truncated:
            metadata["text_note"] = (
                f"Only the first {MAX_TEXT_BYTES // 1_000_000} MB of text was kept."
            )
        return text or None


# Extraction per kind. These run in a worker thread: they block on files and CPU.


def extract(
    path: Path, *, kind: str, content_type: str, settings: Settings, work_dir: Path
) -> Extraction:
    if kind == detect.IMAGE:
        return _extract_image(path, content_type=content_type, settings=settings, work_dir=work_dir)
    if kind == detect.PDF:
        return _extract_pdf(path, work_dir=work_dir)
    if kind == detect.DOCUMENT:
        return _extract_docx(path)
    if kind == detect.PRESENTATION:
        return _extract_pptx(path)
    if kind == detect.SPREADSHEET and content_type == detect.XLSX_TYPE:
        return _extract_xlsx(path)
    if kind in (detect.SPREADSHEET, detect.TEXT):
        return _extract_text(path)
    if kind == detect.AUDIO:
        return _extract_audio(path, content_type=content_type)
    raise ExtractionFailed(f"Files of kind {kind!r} can't be processed.")


_ORIENTATION_TAG = 0x0112


def _extract_image(
    path: Path, *, content_type: str, settings: Settings, work_dir: Path
) -> Extraction:
    # Checked again here: the limit may have been lowered since the upload.
    info = detect.inspect_image(path, max_pixels=settings.max_image_pixels)
    width, height = info.width, info.height
    metadata: dict[str, Any] = {"format": info.format.lower() or content_type.split("/")[1]}
    try:
        with Image.open(path) as image:
            orientation = image.getexif().get(_ORIENTATION_TAG, 1)
            metadata["animated"] = bool(getattr(image, "is_animated", False))
    except (OSError, ValueError, SyntaxError, struct.error):
        raise ExtractionFailed("This image is damaged and can't be opened.") from None
    if orientation in (5, 6, 7, 8):  # rotated a quarter turn: shown the other way round
        width, height = height, width
    metadata.update(width=width, height=height)
    if orientation != 1:
        metadata["orientation"] = orientation

    extraction = Extraction(metadata=metadata)
    thumbnail = work_dir / THUMBNAIL
    _image_to_webp(path, thumbnail, THUMBNAIL_SIZE)
    extraction.variants[THUMBNAIL] = thumbnail
    if content_type in ("image/heic", "image/heif"):
        # Few browsers show HEIC; a WebP rendition stands in for it.
        preview = work_dir / PREVIEW
        _image_to_webp(path, preview, PREVIEW_SIZE)
        extraction.variants[PREVIEW] = preview
    return extraction


def _image_to_webp(source: Path, target: Path, size: int) -> None:
    """Fit the (upright) image within size × size, as a WebP without metadata."""
    try:
        image = pyvips.Image.thumbnail(str(source), size, height=size, size="down", fail_on="error")
        image.webpsave(str(target), Q=WEBP_QUALITY, keep="none")
        return
    except pyvips.Error as error:
        vips_error = error
    # Some builds of libvips lack a decoder Pillow has (HEIC through pillow-heif).
    try:
        with Image.open(source) as opened:
            opened.draft("RGB", (size, size))
            image_pil = ImageOps.exif_transpose(opened)
            image_pil.thumbnail((size, size))
            if image_pil.mode not in ("RGB", "RGBA"):
                image_pil = image_pil.convert("RGBA" if "A" in image_pil.getbands() else "RGB")
            image_pil.save(target, format="WEBP", quality=WEBP_QUALITY)
    except (OSError, ValueError, SyntaxError, struct.error):
        logger.info("image could not be decoded: %s", str(vips_error).splitlines()[0])
        raise ExtractionFailed("This image is damaged and can't be shown.") from None


def _extract_pdf(path: Path, *, work_dir: Path) -> Extraction:
    collector = _TextCollector()
    metadata: dict[str, Any] = {}
    thumbnail = work_dir / THUMBNAIL
    with detect.PDFIUM_LOCK:
        try:
            document = pdfium.PdfDocument(path)
        except pdfium.PdfiumError as error:
            raise ExtractionFailed(
                "The PDF could not be read: "
                + (
                    "it is password-protected."
                    if "password" in detect.pdf_problem(error)
                    else "it may be damaged or password-protected."
                )
            ) from None
        try:
            page_count = len(document)
            if page_count < 1:
                raise ExtractionFailed("The PDF could not be read: it has no pages.")
            metadata["page_count"] = page_count
            title = (document.get_metadata_dict(skip_empty=True) or {}).get("Title")
            if title:
                metadata["title"] = str(title)[:500]
            _render_first_page(document, thumbnail)
            for index in range(page_count):
                page = document[index]
                try:
                    textpage = page.get_textpage()
                    try:
                        page_text = textpage.get_text_range()
                    finally:
                        textpage.close()
                finally:
                    page.close()
                if page_text.strip() and not collector.add(page_text.strip() + "\n\n"):
                    break
        except pdfium.PdfiumError:
            raise ExtractionFailed(
                "The PDF could not be read: it may be damaged or password-protected."
            ) from None
        finally:
            document.close()
    text = collector.result(metadata)
    return Extraction(metadata=metadata, text=text, variants={THUMBNAIL: thumbnail})


def _render_first_page(document: pdfium.PdfDocument, target: Path) -> None:
    page = document[0]
    try:
        width, height = page.get_size()
        scale = min(THUMBNAIL_SIZE / max(width, height, 1.0), 4.0)
        bitmap = page.render(scale=scale)
        try:
            image = bitmap.to_pil()
            image.save(target, format="WEBP", quality=WEBP_QUALITY)
        finally:
            bitmap.close()
    finally:
        page.close()


def _open_office(opener: Callable[[Any], Any], source: Any, what: str) -> Any:
    try:
        return opener(source)
    except Exception as error:  # the libraries raise many kinds of errors on bad input
        logger.info("%s could not be opened: %s", what, type(error).__name__)
        raise ExtractionFailed(f"The {what} could not be read: it may be damaged.") from None


def _extract_docx(path: Path) -> Extraction:
    document = _open_office(docx.Document, path, "Word document")
    collector = _TextCollector()
    paragraphs = tables = 0
    for block in document.iter_inner_content():
        if isinstance(block, DocxTable):
            tables += 1
            ok = collector.add(_table_text(block) + "\n")
        else:
            paragraphs += 1
            ok = collector.add(block.text + "\n")
        if not ok:
            break
    metadata: dict[str, Any] = {"paragraph_count": paragraphs, "table_count": tables}
    text = collector.result(metadata)
    return Extraction(metadata=metadata, text=text)


def _table_text(table: Any) -> str:
    lines = []
    for row in table.rows:
        cells: list[str] = []
        seen: set[int] = set()
        for cell in row.cells:
            # A merged cell appears once per grid column it spans.
            if id(cell._tc) in seen:
                continue
            seen.add(id(cell._tc))
            cells.append(" ".join(cell.text.split()))
        lines.append(" | ".join(cells))
    return "\n".join(lines)


def _shape_texts(shapes: Any) -> list[str]:
    texts: list[str] = []
    for shape in shapes:
        if hasattr(shape, "shapes"):
            texts.extend(_shape_texts(shape.shapes))  # a group
            continue
        if getattr(shape, "has_text_frame", False) and shape.text_frame.text.strip():
            texts.append(shape.text_frame.text.strip())
        if getattr(shape, "has_table", False):
            texts.append(_table_text(shape.table))
    return texts


def _extract_pptx(path: Path) -> Extraction:
    presentation = _open_office(pptx.Presentation, path, "presentation")
    collector = _TextCollector()
    slide_count = 0
    for number, slide in enumerate(presentation.slides, start=1):
        slide_count = number
        parts = [f"Slide {number}", *_shape_texts(slide.shapes)]
        if slide.has_notes_slide:
            notes = slide.notes_slide.notes_text_frame
            if notes is not None and notes.text.strip():
                parts.append("Notes: " + notes.text.strip())
        if not collector.add("\n".join(parts) + "\n\n"):
            slide_count = len(presentation.slides)
            break
    metadata: dict[str, Any] = {"slide_count": slide_count}
    text = collector.result(metadata)
    return Extraction(metadata=metadata, text=text)


def _cell_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _extract_xlsx(path: Path) -> Extraction:
    # A file object, not the path: openpyxl refuses paths without an Excel extension.
    with path.open("rb") as handle:
        workbook = _open_office(
            partial(openpyxl.load_workbook, read_only=True, data_only=True),
            handle,
            "spreadsheet",
        )
        try:
            sheets, collector = _sheets_text(workbook)
        except Exception as error:
            logger.info("spreadsheet could not be read: %s", type(error).__name__)
            raise ExtractionFailed(
                "The spreadsheet could not be read: it may be damaged."
            ) from None
        finally:
            workbook.close()
    metadata: dict[str, Any] = {"sheet_count": len(sheets), "sheets": sheets[:100]}
    text = collector.result(metadata)
    return Extraction(metadata=metadata, text=text)


def _sheets_text(workbook: Any) -> tuple[list[str], _TextCollector]:
    """Each sheet as a heading and CSV rows, until the text cap."""
    collector = _TextCollector()
    sheets: list[str] = []
    for sheet in workbook.worksheets:
        sheets.append(sheet.title)
        if collector.full:
            continue
        collector.add(f"## {sheet.title}\n")
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        for row in sheet.iter_rows(values_only=True):
            cells = [_cell_text(value) for value in row[:MAX_SHEET_COLUMNS]]
            while cells and cells[-1] == "":
                cells.pop()
            if not cells:
                continue
            buffer.seek(0)
            buffer.truncate()
            writer.writerow(cells)
            if not collector.add(buffer.getvalue()):
                break
        collector.add("\n")
    return sheets, collector


def _extract_text(path: Path) -> Extraction:
    with path.open("rb") as stream:
        head = stream.read(4)
        encoding = detect.text_encoding(head)
        stream.seek(0)
        # UTF-16 takes up to twice the bytes of the UTF-8 it becomes.
        raw = stream.read(MAX_TEXT_BYTES * 2 + 4)
        lines = raw.count(b"\n") if encoding != "utf-16" else 0
        while encoding != "utf-16" and (chunk := stream.read(1024 * 1024)):
            lines += chunk.count(b"\n")
    decoded = raw.decode(encoding, errors="replace")
    collector = _TextCollector()
    collector.add(decoded)
    metadata: dict[str, Any] = {"encoding": encoding.replace("-sig", "")}
    if encoding != "utf-16":
        metadata["line_count"] = lines + (0 if raw.endswith(b"\n") or not raw else 1)
    text = collector.result(metadata)
    return Extraction(metadata=metadata, text=text)


_AUDIO_READERS: dict[str, Callable[[str], Any]] = {
    "audio/mpeg": MP3,
    "audio/mp4": MP4,
    "audio/aac": AAC,
    "audio/wav": WAVE,
    "audio/flac": FLAC,
}


def _extract_audio(path: Path, *, content_type: str) -> Extraction:
    if content_type == "audio/webm":
        return Extraction(metadata=_webm_metadata(path))
    reader = _AUDIO_READERS.get(content_type, mutagen.File)
    try:
        audio = reader(str(path))
    except Exception as error:  # mutagen raises its own and plain errors on bad input
        logger.info("audio could not be read: %s", type(error).__name__)
        audio = None
    if audio is None or getattr(audio, "info", None) is None:
        raise ExtractionFailed(
            "The audio file could not be read: it may be damaged or in an unusual format."
        )
    info = audio.info
    metadata: dict[str, Any] = {"codec": _codec(audio, content_type)}
    length = getattr(info, "length", None)
    if isinstance(length, int | float) and length == length and length >= 0:
        metadata["duration_seconds"] = round(float(length), 3)
    for name in ("sample_rate", "channels", "bitrate"):
        value = getattr(info, name, None)
        if isinstance(value, int) and value > 0:
            metadata[name] = value
    return Extraction(metadata=metadata)


def _codec(audio: Any, content_type: str) -> str:
    if content_type == "audio/mpeg":
        return f"mp{getattr(audio.info, 'layer', 3)}"
    if content_type == "audio/mp4":
        return str(getattr(audio.info, "codec", "") or "mp4a")
    if content_type == "audio/wav":
        return "pcm"
    if content_type in ("audio/aac", "audio/flac"):
        return content_type.split("/")[1]
    # Ogg: the stream class names the codec (OggVorbis, OggOpus, OggFLAC, OggSpeex).
    return type(audio).__name__.removeprefix("Ogg").lower() or "ogg"


# Matroska/WebM element ids (with their length markers, as they appear in the file).
_EBML_SEGMENT = 0x18538067
_EBML_INFO = 0x1549A966
_EBML_TIMECODE_SCALE = 0x2AD7B1
_EBML_DURATION = 0x4489
_EBML_CLUSTER = 0x1F43B675
_WEBM_CODECS = {b"A_OPUS": "opus", b"A_VORBIS": "vorbis", b"A_AAC": "aac", b"A_FLAC": "flac"}


def _webm_metadata(path: Path) -> dict[str, Any]:
    """Codec and (when the recorder wrote one) duration, from the first megabyte."""
    with path.open("rb") as stream:
        data = stream.read(1024 * 1024)
    metadata: dict[str, Any] = {"codec": "webm"}
    for marker, codec in _WEBM_CODECS.items():
        if marker in data:
            metadata["codec"] = codec
            break
    scale, duration = 1_000_000, None
    try:
        position, end = 0, len(data)
        while position < end:
            element, position = detect.read_ebml_vint(data, position, keep_marker=True)
            size, position = detect.read_ebml_vint(data, position, keep_marker=False)
            if element in (_EBML_SEGMENT, _EBML_INFO):
                continue  # descend: their children follow
            if element == _EBML_CLUSTER:
                break
            body = data[position : position + size]
            if element == _EBML_TIMECODE_SCALE:
                scale = int.from_bytes(body, "big") or scale
            elif element == _EBML_DURATION and size in (4, 8):
                duration = struct.unpack(">f" if size == 4 else ">d", body)[0]
            position += size
    except ValueError:
        pass  # a header cut short: keep what was found
    if duration is not None and duration == duration and duration >= 0:
        metadata["duration_seconds"] = round(duration * scale / 1e9, 3)
    return metadata


# Transcription, through an OpenAI-compatible speech-to-text service.

_AUDIO_EXTENSIONS = {
    "audio/mpeg": "mp3",
    "audio/mp4": "m4a",
    "audio/aac": "aac",
    "audio/wav": "wav",
    "audio/ogg": "ogg",
    "audio/flac": "flac",
    "audio/webm": "webm",
}


async def transcribe(path: Path, *, content_type: str, settings: Settings) -> str:
    """The speech in the audio file at `path`, as text. Raises ExtractionFailed or
    TransientProcessingError (worth retrying)."""
    assert settings.speech_api_url
    url = settings.speech_api_url.rstrip("/") + "/audio/transcriptions"
    headers = {"Accept": "application/json"}
    if settings.speech_api_key:
        headers["Authorization"] = f"Bearer {settings.speech_api_key}"
    # The provider sees a generic name: the user's file name is not its business.
    upload_name = f"audio.{_AUDIO_EXTENSIONS.get(content_type, 'bin')}"
    stream = await anyio.to_thread.run_sync(path.open, "rb")
    try:
        async with httpx.AsyncClient(timeout=SPEECH_TIMEOUT) as client:
            response = await client.post(
                url,
                headers=headers,
                data={"model": settings.speech_model, "response_format": "json"},
                files={"file": (upload_name, stream, content_type)},
            )
    except httpx.TimeoutException:
        raise TransientProcessingError(
            "The speech service took too long to answer; transcription will be retried."
        ) from None
    except httpx.HTTPError as error:
        raise TransientProcessingError(
            f"The speech service could not be reached ({type(error).__name__})."
        ) from None
    finally:
        stream.close()
    status = response.status_code
    if status in (401, 403):
        raise ExtractionFailed(
            f"The speech service refused Carmenta's key (HTTP {status}); "
            "check SPEECH_API_KEY, then upload the file again."
        )
    if status == 413:
        raise ExtractionFailed("The audio is too large for the speech service to transcribe.")
    if status == 429 or status >= 500:
        raise TransientProcessingError(f"The speech service is unavailable (HTTP {status}).")
    if status >= 400:
        raise ExtractionFailed(
            f"The speech service could not transcribe this audio (HTTP {status})."
        )
    try:
        text = response.json().get("text")
    except (ValueError, AttributeError):
        text = None
    if not isinstance(text, str):
        raise ExtractionFailed("The speech service gave an answer Carmenta could not read.")
    return text


# The whole run.


async def process_file(
    *,
    file_id: uuid.UUID,
    settings: Settings,
    progress: Progress | None = None,
    final_attempt: bool = True,
) -> dict[str, Any]:
    """Process the file and record the outcome; returns {"status": ...} for the job.

    Problems outside the file (the store, the speech service) raise
    TransientProcessingError so the job is retried, unless `final_attempt`: then the
    file is marked failed with the reason.
    """

    async def report(percent: float, message: str) -> None:
        if progress is not None:
            await progress(percent, message)

    async with session_scope() as session:
        row = await session.get(StoredFile, file_id)
        if row is None:
            return {"status": "gone"}
        owner_id, kind, content_type = row.owner_id, row.kind, row.content_type
        revision = row.revision

    store = storage_for(settings)
    work_dir = Path(tempfile.mkdtemp(prefix="process-", dir=temp_root(settings)))
    finish = partial(
        _record, file_id=file_id, owner_id=owner_id, revision=revision, settings=settings
    )
    try:
        original = work_dir / "original"
        await report(5, "Fetching the file")
        try:
            await store.download_to(key=key_of(owner_id, file_id, revision=revision), path=original)
        except ObjectNotFound:
            return await finish(
                status=FileStatus.failed,
                error="The uploaded file is missing from storage. Delete it and upload it again.",
            )
        except StorageError as error:
            raise TransientProcessingError(f"The file store is unavailable ({error}).") from None

        await report(20, "Reading the file")
        try:
            extraction = await anyio.to_thread.run_sync(
                partial(
                    extract,
                    original,
                    kind=kind,
                    content_type=content_type,
                    settings=settings,
                    work_dir=work_dir,
                )
            )
        except (ExtractionFailed, detect.UnacceptableContent) as problem:
            return await finish(status=FileStatus.failed, error=str(problem))
        except Exception:
            logger.exception("processing file %s (%s) failed unexpectedly", file_id, kind)
            return await finish(
                status=FileStatus.failed,
                error="This file could not be processed; it may be damaged.",
            )

        if kind == detect.AUDIO and settings.speech_api_url:
            await report(50, "Transcribing")
            try:
                transcript = await transcribe(
                    original, content_type=content_type, settings=settings
                )
            except ExtractionFailed as problem:
                return await finish(
                    status=FileStatus.failed, error=str(problem), metadata=extraction.metadata
                )
            collector = _TextCollector()
            collector.add(transcript)
            extraction.text = collector.result(extraction.metadata)
            extraction.metadata["transcribed"] = True
            extraction.metadata["transcription_model"] = settings.speech_model

        await report(80, "Saving previews")
        for name, local in extraction.variants.items():
            try:
                await store.put_file(
                    key=key_of(owner_id, file_id, name, revision=revision),
                    path=local,
                    content_type="image/webp",
                )
            except StorageError as error:
                raise TransientProcessingError(
                    f"The file store is unavailable ({error})."
                ) from None
            # The key is recorded for people and tools; links derive it from the ids.
            label = "thumbnail_key" if name == THUMBNAIL else "preview_key"
            extraction.metadata[label] = key_of(owner_id, file_id, name, revision=revision)

        return await finish(
            status=FileStatus.ready, metadata=extraction.metadata, text=extraction.text
        )
    except TransientProcessingError as problem:
        if not final_attempt:
            logger.warning("processing file %s will be retried: %s", file_id, problem)
            raise
        return await finish(status=FileStatus.failed, error=str(problem))
    finally:
        _remove_tree(work_dir)


def _remove_tree(path: Path) -> None:
    # Synchronous on purpose: it must run even when the job is being cancelled.
    shutil.rmtree(path, ignore_errors=True)


async def _record(
    *,
    file_id: uuid.UUID,
    owner_id: uuid.UUID,
    revision: int,
    settings: Settings,
    status: FileStatus,
    error: str | None = None,
    metadata: dict[str, Any] | None = None,
    text: str | None = None,
) -> dict[str, Any]:
    async with session_scope() as session:
        result = await session.exec(
            update(StoredFile)
            .where(col(StoredFile.id) == file_id, col(StoredFile.revision) == revision)
            .values(
                status=status.value,
                error=error,
                extracted_metadata=metadata or {},
                extracted_text=text,
                updated_at=utcnow(),
            )
            .returning(col(StoredFile.id))
        )
        found = result.first()
        if found is not None:
            await notify_processed(
                session=session, file_id=file_id, owner_id=owner_id, status=status.value
            )
        else:
            still_there = await session.get(StoredFile, file_id)
    if found is None:
        store = storage_for(settings)
        if still_there is None:
            # Deleted while this run worked: whatever it stored must not outlive the row.
            await store.delete_prefix(prefix=prefix_of(owner_id, file_id))
            return {"status": "gone"}
        # Replaced while this run read the previous content: drop what it made of it.
        await discard_revision(store, owner_id=owner_id, file_id=file_id, revision=revision)
        return {"status": "superseded"}
    return {"status": status.value}
