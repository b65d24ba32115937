"""Files in the browser: upload with progress, thumbnails, ready status, cancel, delete."""

from __future__ import annotations

import os
import re
import shutil
import uuid
from pathlib import Path

import psycopg
import pytest
from PIL import Image
from playwright.sync_api import expect


def _noisy_image(width: int, height: int) -> Image.Image:
    # Random pixels do not compress: the files are big enough to watch them upload.
    return Image.frombytes("RGB", (width, height), os.urandom(width * height * 3))


@pytest.fixture(scope="module")
def sample_files(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("uploads")
    photo = folder / "holiday photo.jpg"
    _noisy_image(1200, 800).save(photo, "JPEG", quality=95)
    report = folder / "quarterly report.pdf"
    pages = [_noisy_image(1000, 1400) for _ in range(2)]
    pages[0].save(report, "PDF", save_all=True, append_images=pages[1:], resolution=100)
    big = folder / "large scan.pdf"
    scans = [_noisy_image(1600, 2200) for _ in range(3)]
    scans[0].save(big, "PDF", save_all=True, append_images=scans[1:], resolution=100)
    return {"photo": photo, "report": report, "big": big}


def _throttle_uploads(page, bytes_per_second: int) -> None:
    session = page.context.new_cdp_session(page)
    session.send("Network.enable")
    session.send(
        "Network.emulateNetworkConditions",
        {
            "offline": False,
            "latency": 0,
            "downloadThroughput": -1,
            "uploadThroughput": bytes_per_second,
        },
    )


def _file_rows(app_server, name: str) -> int:
    with psycopg.connect(app_server.database_url) as connection:
        return connection.execute(
            "select count(*) from files where original_name = %s", (name,)
        ).fetchone()[0]


def test_upload_a_pdf_and_an_image_and_see_them_ready_with_thumbnails(page, sample_files):
    page.goto("/files")
    expect(page.get_by_test_id("file-uploader")).to_be_visible()
    _throttle_uploads(page, 400 * 1024)
    page.get_by_test_id("file-input").set_input_files(
        [str(sample_files["report"]), str(sample_files["photo"])]
    )
    progress = page.get_by_role("progressbar", name="Upload of quarterly report.pdf")
    expect(progress).to_be_visible()
    # A real progress bar: seen part-way, not just empty and then full.
    expect(progress).to_have_attribute(
        "aria-valuenow", re.compile(r"^([1-9]|[1-9]\d)$"), timeout=20_000
    )

    rows = page.get_by_test_id("file-row")
    report_row = rows.filter(has_text="quarterly report.pdf")
    photo_row = rows.filter(has_text="holiday photo.jpg")
    expect(report_row).to_have_attribute("data-status", "ready", timeout=60_000)
    expect(photo_row).to_have_attribute("data-status", "ready", timeout=60_000)
    expect(report_row).to_contain_text("2 pages")
    expect(photo_row).to_contain_text("1200×800")
    for row in (report_row, photo_row):
        thumb = row.get_by_test_id("file-thumbnail")
        expect(thumb).to_be_visible()
        page.wait_for_function(
            "img => img.complete && img.naturalWidth > 0", arg=thumb.element_handle()
        )


def test_cancelling_an_upload_leaves_nothing_behind(page, sample_files, app_server):
    page.goto("/files")
    expect(page.get_by_test_id("file-uploader")).to_be_visible()
    _throttle_uploads(page, 150 * 1024)
    page.get_by_test_id("file-input").set_input_files(str(sample_files["big"]))
    progress = page.get_by_role("progressbar", name="Upload of large scan.pdf")
    expect(progress).to_have_attribute(
        "aria-valuenow", re.compile(r"^([1-9]|[1-9]\d)$"), timeout=20_000
    )
    page.get_by_role("button", name="Cancel upload of large scan.pdf").click()
    expect(page.get_by_test_id("upload-item").filter(has_text="large scan.pdf")).to_contain_text(
        "Cancelled."
    )
    page.wait_for_timeout(1500)
    assert _file_rows(app_server, "large scan.pdf") == 0
    page.reload()
    expect(page.get_by_text("large scan.pdf")).to_have_count(0)


def test_deleting_a_file_asks_first_then_removes_it(page, sample_files, app_server, tmp_path):
    # A name of its own, so no other test's upload can be mistaken for this one.
    name = f"to delete {uuid.uuid4().hex[:6]}.jpg"
    photo = tmp_path / name
    shutil.copy(sample_files["photo"], photo)
    page.goto("/files")
    page.get_by_test_id("file-input").set_input_files(str(photo))
    row = page.get_by_test_id("file-row").filter(has_text=name)
    expect(row).to_have_attribute("data-status", "ready", timeout=60_000)
    assert _file_rows(app_server, name) == 1
    row.get_by_role("button", name=f"Delete {name}").click()
    dialog = page.get_by_role("alertdialog")
    expect(dialog).to_contain_text("Delete this file?")
    dialog.get_by_role("button", name="Keep it").click()
    expect(dialog).to_be_hidden()
    assert _file_rows(app_server, name) == 1
    row.get_by_role("button", name=f"Delete {name}").click()
    page.get_by_role("alertdialog").get_by_role("button", name="Delete").click()
    expect(page.get_by_role("status").filter(has_text="was deleted")).to_be_visible()
    expect(row).to_have_count(0)
    assert _file_rows(app_server, name) == 0


def test_a_disguised_program_is_refused_with_a_clear_message(page, tmp_path):
    fake = tmp_path / "cute cat.png"
    fake.write_bytes(b"MZ\x90\x00" + os.urandom(4000))
    page.goto("/files")
    page.get_by_test_id("file-input").set_input_files(str(fake))
    item = page.get_by_test_id("upload-item").filter(has_text="cute cat.png")
    expect(item).to_have_attribute("data-state", "failed")
    expect(item).to_contain_text("program")
