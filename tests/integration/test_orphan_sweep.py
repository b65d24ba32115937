"""Objects no row names (a crash between storing and committing) are swept away."""

from __future__ import annotations

import os
import time
import uuid
from datetime import UTC, datetime, timedelta

from carmenta.files import service as files_service
from carmenta.files.processing import temp_root
from carmenta.settings import get_settings
from tests import file_samples as samples
from tests.integration import files_support
from tests.integration.files_support import file_rows, sign_up, store, stored_files, upload

files_client = files_support.files_client


async def test_sweep_removes_orphans_after_the_grace_period_and_keeps_real_files(
    files_client, tmp_path
):
    user = await sign_up()
    kept = await upload(files_client, user, "kept.jpg", samples.jpeg())
    assert kept.status_code == 201
    # What a crash after storing and before committing leaves: an object, no row.
    orphan_id = uuid.uuid4()
    source = tmp_path / "orphan.bin"
    source.write_bytes(samples.jpeg())
    await store().put_file(
        key=f"{user.user_id}/{orphan_id}/original", path=source, content_type="image/jpeg"
    )
    settings = get_settings()
    stale_temp = temp_root(settings) / "upload-left-behind"
    stale_temp.write_bytes(b"partial")
    old = time.time() - 2 * 24 * 3600
    os.utime(stale_temp, (old, old))

    # Within the grace period an object may belong to an upload still committing.
    early = await files_service.sweep_orphans(settings=settings)
    assert early == {"orphans_removed": 0, "stale_temp_files_removed": 1}
    assert not stale_temp.exists()
    assert any(str(orphan_id) in path for path in stored_files(user.user_id))

    later = datetime.now(UTC) + files_service.ORPHAN_GRACE + timedelta(minutes=1)
    swept = await files_service.sweep_orphans(settings=settings, now=later)
    assert swept == {"orphans_removed": 1, "stale_temp_files_removed": 0}
    remaining = stored_files(user.user_id)
    assert not any(str(orphan_id) in path for path in remaining)
    kept_id = kept.json()["id"]
    assert any(kept_id in path for path in remaining)
    assert [row["id"] for row in await file_rows(user.user_id)] == [uuid.UUID(kept_id)]
