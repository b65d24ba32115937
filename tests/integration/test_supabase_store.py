"""The Supabase store, through the official client, against a local Storage stand-in."""

from __future__ import annotations

import io
import os
import time
import uuid
from datetime import UTC, datetime
from urllib.parse import parse_qsl, urlsplit

import httpx
import jwt
import pytest
from PIL import Image

from carmenta.files.storage import get_storage
from carmenta.files.storage.base import ObjectNotFound, StorageError, Transform
from carmenta.files.storage.supabase import SupabaseStore
from carmenta.settings import Settings
from tests.supabase_storage_server import StoragePeer

KEY = "0b8e6a52/7d9f2c1e/original.jpg"


@pytest.fixture(scope="module")
def peer(tmp_path_factory):
    with StoragePeer(tmp_path_factory.mktemp("supabase-storage")) as running:
        yield running


@pytest.fixture
async def store(peer):
    # A bucket of its own per test, created by the store on first use.
    found = SupabaseStore(
        url=peer.url,
        service_role_key=peer.service_role_key,
        bucket=f"files-{uuid.uuid4().hex[:8]}",
    )
    yield found
    await found.aclose()


@pytest.fixture
def photo(tmp_path):
    path = tmp_path / "photo.jpg"
    Image.linear_gradient("L").resize((1200, 800)).convert("RGB").save(path, quality=90)
    return path


async def test_upload_download_and_read(store, peer, photo, tmp_path):
    await store.put_file(key=KEY, path=photo, content_type="image/jpeg")

    stored = peer.state.objects[(store.bucket, KEY)]
    assert stored.content_type == "image/jpeg"
    assert stored.path.read_bytes() == photo.read_bytes()
    assert await store.exists(key=KEY)
    await store.download_to(key=KEY, path=tmp_path / "copy.jpg")
    assert (tmp_path / "copy.jpg").read_bytes() == photo.read_bytes()
    chunks = [chunk async for chunk in store.read(key=KEY)]
    assert b"".join(chunks) == photo.read_bytes()
    # Uploading again replaces the object (retried jobs stay idempotent).
    await store.put_file(key=KEY, path=photo, content_type="image/jpeg")


async def test_a_large_upload_goes_through_whole(store, peer, tmp_path):
    large = tmp_path / "large.bin"
    large.write_bytes(os.urandom(5 * 1024 * 1024 + 123))
    await store.put_file(key="u/f/large.bin", path=large, content_type="application/octet-stream")
    await store.download_to(key="u/f/large.bin", path=tmp_path / "back.bin")
    assert (tmp_path / "back.bin").read_bytes() == large.read_bytes()


async def test_the_bucket_is_created_private_once(store, peer, photo):
    assert store.bucket not in peer.state.buckets
    await store.put_file(key=KEY, path=photo, content_type="image/jpeg")
    assert peer.state.buckets[store.bucket]["public"] is False

    again = SupabaseStore(url=peer.url, service_role_key=peer.service_role_key, bucket=store.bucket)
    created_before = peer.state.requests.count(("POST", "/storage/v1/bucket"))
    assert await again.exists(key=KEY)
    assert peer.state.requests.count(("POST", "/storage/v1/bucket")) == created_before
    await again.aclose()


async def test_a_public_bucket_is_refused(peer, photo):
    bucket = f"public-{uuid.uuid4().hex[:8]}"
    async with httpx.AsyncClient() as client:
        created = await client.post(
            f"{peer.url}/storage/v1/bucket",
            json={"id": bucket, "name": bucket, "public": True},
            headers={"Authorization": f"Bearer {peer.service_role_key}"},
        )
    assert created.status_code == 200
    store = SupabaseStore(url=peer.url, service_role_key=peer.service_role_key, bucket=bucket)
    with pytest.raises(StorageError, match="public"):
        await store.put_file(key=KEY, path=photo, content_type="image/jpeg")
    assert (bucket, KEY) not in peer.state.objects
    await store.aclose()


async def test_a_wrong_service_key_is_refused(peer, photo):
    forged = jwt.encode({"role": "service_role"}, "not-the-secret" * 3, algorithm="HS256")
    store = SupabaseStore(url=peer.url, service_role_key=forged, bucket="files-forged")
    with pytest.raises(StorageError, match="403"):
        await store.put_file(key=KEY, path=photo, content_type="image/jpeg")
    await store.aclose()


async def test_a_signed_url_serves_the_object(store, photo):
    await store.put_file(key=KEY, path=photo, content_type="image/jpeg")
    url = await store.signed_url(key=KEY, expires_in=60)
    assert "/storage/v1/object/sign/" in url

    async with httpx.AsyncClient() as client:
        response = await client.get(url)
        assert response.status_code == 200
        assert response.content == photo.read_bytes()
        assert response.headers["content-type"] == "image/jpeg"

        named = await client.get(
            await store.signed_url(key=KEY, expires_in=60, download_name="Résumé.jpg")
        )
    assert named.headers["content-disposition"].startswith("attachment;")
    assert "filename*=UTF-8''R%C3%A9sum%C3%A9.jpg" in named.headers["content-disposition"]


async def test_a_transformed_signed_url_returns_a_resized_image(store, peer, photo):
    await store.put_file(key=KEY, path=photo, content_type="image/jpeg")
    url = await store.signed_url(
        key=KEY, expires_in=60, transform=Transform(width=200, height=200, format="webp")
    )
    assert "/storage/v1/render/image/sign/" in url

    async with httpx.AsyncClient() as client:
        response = await client.get(url)
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/webp"
    assert Image.open(io.BytesIO(response.content)).size == (200, 200)

    token = dict(parse_qsl(urlsplit(url).query))["token"]
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["transformations"] == "height:200,width:200,resize:cover,quality:80,format:webp"


async def test_smart_crop_and_formats_map_to_supabase_names(store, photo):
    await store.put_file(key=KEY, path=photo, content_type="image/jpeg")
    url = await store.signed_url(
        key=KEY,
        expires_in=60,
        transform=Transform(width=120, height=80, gravity="auto", format="png"),
    )
    token = dict(parse_qsl(urlsplit(url).query))["token"]
    claims = jwt.decode(token, options={"verify_signature": False})
    # No png output on Supabase: the source format is kept.
    assert claims["transformations"] == "height:80,width:120,resize:cover,quality:80,gravity:sm"
    async with httpx.AsyncClient() as client:
        response = await client.get(url)
    assert response.headers["content-type"] == "image/jpeg"
    assert Image.open(io.BytesIO(response.content)).size == (120, 80)


async def test_delete_prefix_removes_everything_below(store, peer, photo):
    await store.put_file(key=KEY, path=photo, content_type="image/jpeg")
    await store.put_file(key="0b8e6a52/7d9f2c1e/pages/1.png", path=photo, content_type="image/png")
    await store.put_file(key="0b8e6a52/7d9f2c1e0/kept.jpg", path=photo, content_type="image/jpeg")

    await store.delete_prefix(prefix="0b8e6a52/7d9f2c1e")

    remaining = sorted(name for bucket, name in peer.state.objects if bucket == store.bucket)
    assert remaining == ["0b8e6a52/7d9f2c1e0/kept.jpg"]
    assert not await store.exists(key=KEY)
    # Idempotent.
    await store.delete_prefix(prefix="0b8e6a52/7d9f2c1e")


async def test_missing_objects_raise_object_not_found(store, tmp_path):
    assert not await store.exists(key="u/f/missing.jpg")
    with pytest.raises(ObjectNotFound):
        await store.download_to(key="u/f/missing.jpg", path=tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ObjectNotFound):
        [chunk async for chunk in store.read(key="u/f/missing.jpg")]
    with pytest.raises(ObjectNotFound):
        await store.signed_url(key="u/f/missing.jpg", expires_in=60)


async def test_the_stand_in_refuses_forged_expired_and_moved_tokens(store, peer, photo):
    await store.put_file(key=KEY, path=photo, content_type="image/jpeg")
    url = await store.signed_url(key=KEY, expires_in=60)
    base = url.split("?", 1)[0]
    now = int(time.time())
    url_claim = f"{store.bucket}/{KEY}"
    forged = jwt.encode({"url": url_claim, "exp": now + 60}, "x" * 64, algorithm="HS256")
    expired = jwt.encode(
        {"url": url_claim, "exp": now - 10}, peer.state.jwt_secret, algorithm="HS256"
    )
    other = jwt.encode(
        {"url": f"{store.bucket}/u/other.jpg", "exp": now + 60},
        peer.state.jwt_secret,
        algorithm="HS256",
    )
    async with httpx.AsyncClient() as client:
        for token, error in (
            (forged, "InvalidJWT"),
            (expired, "InvalidJWT"),
            (other, "InvalidSignature"),
        ):
            response = await client.get(base, params={"token": token})
            assert response.status_code == 400
            assert response.json()["error"] == error
        assert (await client.get(base)).status_code == 400


async def test_get_storage_picks_supabase_when_configured(peer):
    settings = Settings(
        _env_file=None,
        supabase_url=peer.url,
        supabase_service_role_key=peer.service_role_key,
        supabase_bucket="configured",
    )
    found = get_storage(settings)
    assert isinstance(found, SupabaseStore)
    assert found.bucket == "configured"
    assert get_storage(settings) is found


async def test_file_folders_lists_each_users_file_folders_with_their_age(store, photo):
    user, first, second = (str(uuid.uuid4()) for _ in range(3))
    await store.put_file(key=f"{user}/{first}/original", path=photo, content_type="image/jpeg")
    await store.put_file(
        key=f"{user}/{first}/thumbnail.webp", path=photo, content_type="image/webp"
    )
    await store.put_file(key=f"{user}/{second}/original", path=photo, content_type="image/jpeg")
    listed = {prefix: changed async for prefix, changed in store.file_folders()}
    assert {f"{user}/{first}", f"{user}/{second}"} <= set(listed)
    for prefix in (f"{user}/{first}", f"{user}/{second}"):
        assert listed[prefix].tzinfo is not None
        assert abs((datetime.now(UTC) - listed[prefix]).total_seconds()) < 600
