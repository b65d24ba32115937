"""Content sniffing: every accepted type from its bytes, disguises and bad names refused."""

from __future__ import annotations

import pytest

from carmenta.files import detect
from carmenta.files.detect import DetectedType, UnsupportedFileType
from carmenta.settings import Settings
from tests import file_samples as samples

DOCX, PPTX, XLSX = detect.DOCX_TYPE, detect.PPTX_TYPE, detect.XLSX_TYPE


@pytest.mark.parametrize(
    ("name", "make", "expected"),
    [
        ("photo.jpg", samples.jpeg, ("image", "image/jpeg")),
        ("photo.png", samples.png, ("image", "image/png")),
        ("photo.webp", samples.webp, ("image", "image/webp")),
        ("photo.gif", samples.gif, ("image", "image/gif")),
        ("photo.heic", samples.heic, ("image", "image/heic")),
        ("paper.pdf", samples.pdf, ("pdf", "application/pdf")),
        ("notes.docx", samples.docx, ("document", DOCX)),
        ("slides.pptx", samples.pptx, ("presentation", PPTX)),
        ("sheet.xlsx", samples.xlsx, ("spreadsheet", XLSX)),
        ("data.csv", lambda: samples.CSV, ("spreadsheet", "text/csv")),
        ("readme.md", lambda: samples.MARKDOWN, ("text", "text/markdown")),
        ("readme.markdown", lambda: samples.MARKDOWN, ("text", "text/markdown")),
        ("notes.txt", lambda: samples.TEXT, ("text", "text/plain")),
        ("no-extension", lambda: samples.TEXT, ("text", "text/plain")),
        ("script.py", lambda: b"print('hi')\n", ("text", "text/plain")),
        ("utf16.txt", lambda: samples.UTF16_TEXT, ("text", "text/plain")),
        ("bom.txt", lambda: b"\xef\xbb\xbfwith a BOM\n", ("text", "text/plain")),
        ("song.mp3", samples.mp3, ("audio", "audio/mpeg")),
        (
            "tagged.mp3",
            lambda: b"ID3\x04\x00\x00\x00\x00\x00\x00" + samples.mp3(),
            ("audio", "audio/mpeg"),
        ),
        ("voice.m4a", samples.m4a, ("audio", "audio/mp4")),
        ("generic.m4a", lambda: samples.m4a(brand=b"isom"), ("audio", "audio/mp4")),
        ("raw.aac", samples.adts_aac, ("audio", "audio/aac")),
        ("tone.wav", samples.wav, ("audio", "audio/wav")),
        ("voice.ogg", samples.ogg_opus, ("audio", "audio/ogg")),
        ("lossless.flac", samples.flac, ("audio", "audio/flac")),
        ("memo.webm", samples.webm, ("audio", "audio/webm")),
    ],
)
def test_each_accepted_type_is_recognised_from_its_content(name, make, expected):
    assert detect.detect_bytes(make(), name=name) == DetectedType(*expected)


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (samples.jpeg, "image/jpeg"),
        (samples.pdf, "application/pdf"),
        (samples.wav, "audio/wav"),
        (samples.docx, DOCX),
    ],
)
def test_the_name_does_not_decide_binary_types(make, expected):
    # A JPEG called .pdf is still a JPEG; the bytes decide.
    assert detect.detect_bytes(make(), name="misnamed.pdf").content_type == expected
    assert detect.detect_bytes(make(), name="no extension").content_type == expected


def test_text_is_told_apart_by_extension_only_among_text_kinds():
    assert detect.detect_bytes(b"a,b\n1,2\n", name="x.CSV").content_type == "text/csv"
    assert detect.detect_bytes(b"a,b\n1,2\n", name="x.txt").content_type == "text/plain"


@pytest.mark.parametrize(
    ("data", "name", "message"),
    [
        (samples.EXE, "cat.png", "This file looks like a program, not a PNG image."),
        (samples.ELF, "cat.jpg", "This file looks like a program, not a JPEG image."),
        (samples.MACHO, "report.pdf", "This file looks like a program, not a PDF."),
        (samples.EXE, "setup.exe", "This file looks like a program; programs can't be uploaded."),
        (samples.TEXT, "cat.png", "This file contains plain text, not a PNG image."),
        (b"#!/bin/sh\nrm -rf /\n", "song.mp3", "This file contains plain text, not an MP3"),
    ],
)
def test_disguised_files_are_refused_with_a_plain_reason(data, name, message):
    with pytest.raises(UnsupportedFileType) as refused:
        detect.detect_bytes(data, name=name)
    assert str(refused.value).startswith(message)


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (b"", "empty"),
        (b"\x00\x01\x02\x03binary junk\xff\xfe\x00" * 10, "can't read this kind of file"),
        (b"valid start \xc3\x28 invalid utf-8", "can't read this kind of file"),
        (b"text with a NUL\x00 in it", "can't read this kind of file"),
        (samples.plain_zip(), "ZIP archives aren't accepted"),
        (samples.m4a(brand=b"isom", handler=b"vide"), "video"),
        (samples.m4a(brand=b"qt  "), "video"),
        (samples.webm(codec=b"V_VP9"), "video"),
        (b"\x1f\x8b\x08\x00" + b"\x00" * 20, "Compressed archives"),
        (b"II*\x00" + b"\x00" * 20, "TIFF"),
        (b"\x00\x00\x00\x1cftypavif\x00\x00\x00\x00avifmif1miaf", "AVIF"),
        (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 20, "Old Office formats"),
    ],
)
def test_unsupported_content_is_refused(data, fragment):
    with pytest.raises(UnsupportedFileType) as refused:
        detect.detect_bytes(data, name="file.bin")
    assert fragment in str(refused.value)


def test_utf32_is_not_mistaken_for_utf16_text():
    with pytest.raises(UnsupportedFileType):
        detect.detect_bytes("hello".encode("utf-32"), name="a.txt")


def test_office_files_with_macros_are_refused():
    import io
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        archive.writestr("word/document.xml", "<document/>")
        archive.writestr("word/vbaProject.bin", b"\x00" * 10)
    with pytest.raises(UnsupportedFileType, match="macros"):
        detect.detect_bytes(buffer.getvalue(), name="letter.docm")


@pytest.mark.parametrize(
    ("head", "kind"),
    [
        (b"\xff\xd8\xff\xe0", "image"),
        (b"\x89PNG\r\n\x1a\n", "image"),
        (b"RIFF\x00\x00\x00\x00WAVEfmt ", "audio"),
        (b"ID3\x04", "audio"),
        (b"\xff\xfb\x90\x64", "audio"),
        (b"%PDF-1.7", None),
        (b"PK\x03\x04", None),
        (b"plain text", None),
        (b"\xff\xfe" + "utf-16".encode("utf-16-le"), None),  # a BOM, not an MPEG frame
    ],
)
def test_kind_hints_from_the_first_bytes(head, kind):
    assert detect.kind_hint(head + b"\x00" * 64) == kind


@pytest.mark.parametrize(
    "name",
    [
        "",
        "   ",
        "../etc/passwd",
        "folder/file.txt",
        "C:\\Windows\\file.txt",
        "tab\there.txt",
        "new\nline.txt",
        "nul\x00.txt",
        "bell\x07.txt",
        "del\x7f.txt",
        "rlo\u202egnp.exe",
        ".",
        "..",
        "x" * 252 + ".txt",
        "é" * 128,
    ],
)
def test_bad_names_are_refused(name):
    with pytest.raises(detect.InvalidFileName):
        detect.validate_name(name)


@pytest.mark.parametrize(
    ("name", "kept"),
    [
        ("report.pdf", "report.pdf"),
        ("  spaced out.txt ", "spaced out.txt"),
        ("Résumé — final (2).docx", "Résumé — final (2).docx"),
        ("写真.jpg", "写真.jpg"),
        (".hidden", ".hidden"),
        ("x" * 251 + ".txt", "x" * 251 + ".txt"),
    ],
)
def test_ordinary_names_are_kept(name, kept):
    assert detect.validate_name(name) == kept


def test_size_limits_follow_the_settings():
    settings = Settings(max_image_mb=3, max_audio_mb=4, max_document_mb=5)
    assert detect.limit_mb("image", settings) == 3
    assert detect.limit_mb("audio", settings) == 4
    for kind in ("pdf", "document", "spreadsheet", "presentation", "text"):
        assert detect.limit_mb(kind, settings) == 5
    assert detect.limit_mb(None, settings) == 5


def test_header_dimensions_refuse_an_image_bomb_without_decoding(tmp_path):
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(samples.png_claiming(100_000, 100_000))
    with pytest.raises(detect.UnacceptableContent, match="too many pixels|megapixels"):
        detect.inspect_image(bomb, max_pixels=60_000_000)
    modest = tmp_path / "modest.png"
    modest.write_bytes(samples.png_claiming(9000, 9000))  # 81 MP: over our limit only
    with pytest.raises(detect.UnacceptableContent, match="9,000 × 9,000 pixels"):
        detect.inspect_image(modest, max_pixels=60_000_000)
    fine = tmp_path / "fine.png"
    fine.write_bytes(samples.png())
    assert detect.inspect_image(fine, max_pixels=60_000_000) == (64, 48, "PNG")


def test_a_damaged_pdf_is_refused_with_a_plain_reason(tmp_path):
    broken = tmp_path / "broken.pdf"
    broken.write_bytes(samples.corrupt_pdf())
    with pytest.raises(detect.UnacceptableContent, match="This PDF is damaged"):
        detect.inspect_pdf(broken)
    good = tmp_path / "good.pdf"
    good.write_bytes(samples.pdf(pages=3))
    assert detect.inspect_pdf(good) == 3
