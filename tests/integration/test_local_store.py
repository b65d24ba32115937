"""The local store and GET /files/object: signed URLs, headers, transformations, cache."""

from __future__ import annotations

import asyncio
import io
import os
import stat
import time
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import parse_qsl, urlencode, urlsplit

import httpx
import pytest
from PIL import Image, ImageDraw

from carmenta.api import file_objects
from carmenta.api.routes import build_api
from carmenta.errors import ConfigurationError
from carmenta.files import storage as storage_package
from carmenta.files.storage import get_storage
from carmenta.files.storage import local as local_module
from carmenta.files.storage.base import NotRenderable, ObjectNotFound, Transform, TransformError
from carmenta.files.storage.local import LocalStore, SignatureExpired, SignatureInvalid
from carmenta.settings import get_settings, reset_settings_cache

KEY = "0b8e6a52/7d9f2c1e/original.jpg"


@pytest.fixture
def store(tmp_path, monkeypatch) -> LocalStore:
    """The app's own store, with DATA_DIR in a fresh temporary folder."""
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "data"))
    for name in ("SUPABASE_URL", "SUPABASE_SERVICE_ROLE_KEY", "STORAGE_URL_SECRET"):
        monkeypatch.delenv(name, raising=False)
    reset_settings_cache()
    found = get_storage(get_settings())
    assert isinstance(found, LocalStore)
    yield found
    reset_settings_cache()


async def _request(url: str, *, method: str = "GET", headers=None) -> httpx.Response:
    transport = httpx.ASGITransport(app=build_api())
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        return await client.request(method, url, headers=headers)


def _with_query(url: str, **changes: str | None) -> str:
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    for name, value in changes.items():
        if value is None:
            query.pop(name, None)
        else:
            query[name] = value
    return f"{parts.path}?{urlencode(query)}"


def _photo(path: Path, size=(1200, 800), *, exif: Image.Exif | None = None) -> Path:
    # A gradient with detail, so encoders and crops have something real to work on.
    image = Image.linear_gradient("L").resize(size).convert("RGB")
    draw = ImageDraw.Draw(image)
    for x in range(0, size[0], 40):
        draw.line([(x, 0), (x, size[1])], fill=(200, 40, 40), width=3)
    image.save(path, "JPEG", quality=90, exif=exif.tobytes() if exif else b"")
    return path


async def _put(
    store: LocalStore, tmp_path: Path, *, key=KEY, content_type="image/jpeg", source=None
):
    source = source or _photo(tmp_path / "upload.jpg")
    await store.put_file(key=key, path=source, content_type=content_type)
    return source


# The store itself ------------------------------------------------------------------


async def test_put_read_and_download(store, tmp_path):
    source = await _put(store, tmp_path)
    assert await store.exists(key=KEY)
    chunks = [chunk async for chunk in store.read(key=KEY)]
    assert b"".join(chunks) == source.read_bytes()
    assert all(len(chunk) <= 64 * 1024 for chunk in chunks)
    await store.download_to(key=KEY, path=tmp_path / "copy" / "file.jpg")
    assert (tmp_path / "copy" / "file.jpg").read_bytes() == source.read_bytes()
    # The upload's own file is left where it was.
    assert source.exists()
    mode = stat.S_IMODE((store.root / KEY).stat().st_mode)
    assert mode == 0o600


async def test_missing_objects(store, tmp_path):
    assert not await store.exists(key="a/b/c.jpg")
    with pytest.raises(ObjectNotFound):
        [chunk async for chunk in store.read(key="a/b/c.jpg")]
    with pytest.raises(ObjectNotFound):
        await store.download_to(key="a/b/c.jpg", path=tmp_path / "out")
    with pytest.raises(ObjectNotFound):
        await store.stat(key="a/b/c.jpg")


async def test_unsafe_keys_never_reach_the_disk(store, tmp_path):
    for key in ("../escape.jpg", "/etc/passwd", "a/../../b", ".meta/x.json"):
        with pytest.raises(ValueError):
            await store.put_file(
                key=key, path=_photo(tmp_path / "x.jpg"), content_type="image/jpeg"
            )
        with pytest.raises(ValueError):
            await store.signed_url(key=key, expires_in=60)


async def test_delete_prefix_removes_the_object_its_variants_and_empty_folders(store, tmp_path):
    await _put(store, tmp_path)
    await _put(store, tmp_path, key="0b8e6a52/7d9f2c1e/extra/page-1.png")
    await _put(store, tmp_path, key="0b8e6a52/7d9f2c1e0/kept.jpg")
    variant = await store.variant(key=KEY, transform=Transform(width=100, format="webp"))
    assert variant.path.is_file()

    await store.delete_prefix(prefix="0b8e6a52/7d9f2c1e")

    assert not await store.exists(key=KEY)
    assert not variant.path.exists()
    assert not (store.root / ".variants" / "0b8e6a52" / "7d9f2c1e").exists()
    assert not (store.root / ".meta" / "0b8e6a52" / "7d9f2c1e").exists()
    assert not (store.root / "0b8e6a52" / "7d9f2c1e").exists()
    # A prefix matches whole segments: the neighbour with a longer name stays.
    assert await store.exists(key="0b8e6a52/7d9f2c1e0/kept.jpg")
    await store.delete_prefix(prefix="0b8e6a52/7d9f2c1e0")
    leftovers = [path for path in store.root.rglob("*") if not path.is_dir()]
    assert leftovers == []
    assert not (store.root / "0b8e6a52").exists()
    # Idempotent.
    await store.delete_prefix(prefix="0b8e6a52/7d9f2c1e")


async def test_replacing_an_object_drops_its_variants(store, tmp_path):
    await _put(store, tmp_path)
    variant = await store.variant(key=KEY, transform=Transform(width=100))
    await _put(store, tmp_path, source=_photo(tmp_path / "other.jpg", size=(300, 300)))
    assert not variant.path.exists()


def test_the_url_secret_is_generated_once_and_private(tmp_path):
    keys_dir = tmp_path / "keys"
    first = storage_package.load_url_secret(configured=None, keys_dir=keys_dir)
    second = storage_package.load_url_secret(configured=None, keys_dir=keys_dir)
    assert first == second
    assert len(first) == 32
    path = keys_dir / storage_package.URL_SECRET_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(keys_dir.stat().st_mode) == 0o700
    assert [p.name for p in keys_dir.iterdir()] == [storage_package.URL_SECRET_FILE]


def test_a_configured_secret_wins_and_must_be_long_enough(tmp_path):
    configured = "x" * 40
    assert storage_package.load_url_secret(configured=configured, keys_dir=tmp_path) == (
        configured.encode()
    )
    assert not (tmp_path / storage_package.URL_SECRET_FILE).exists()
    with pytest.raises(ConfigurationError, match="at least 32 characters"):
        storage_package.load_url_secret(configured="short", keys_dir=tmp_path)


async def test_urls_stay_valid_for_a_new_store_on_the_same_data(store, tmp_path):
    url = await store.signed_url(key=KEY, expires_in=600)
    again = LocalStore(
        store.root,
        secret=storage_package.load_url_secret(configured=None, keys_dir=get_settings().keys_dir),
    )
    query = dict(parse_qsl(urlsplit(url).query))
    assert again.verify(key=KEY, query=query, now=time.time()).key == KEY


async def test_verify_tells_a_bad_signature_from_an_expired_one(store):
    url = await store.signed_url(key=KEY, expires_in=60, transform=Transform(width=10))
    query = dict(parse_qsl(urlsplit(url).query))
    expires_at = int(query["exp"])
    assert store.verify(key=KEY, query=query, now=expires_at - 1).transform == Transform(width=10)
    with pytest.raises(SignatureExpired):
        store.verify(key=KEY, query=query, now=expires_at)
    with pytest.raises(SignatureInvalid):
        store.verify(key=KEY, query={**query, "sig": "0" * 64}, now=expires_at - 1)
    with pytest.raises(SignatureInvalid):
        store.verify(key="0b8e6a52/other/original.jpg", query=query, now=expires_at - 1)
    with pytest.raises(TransformError):
        store.verify(key=KEY, query={**query, "width": "0"}, now=expires_at - 1)


async def test_signing_refuses_out_of_range_transformations(store):
    with pytest.raises(TransformError, match="between 1 and 2500"):
        await store.signed_url(key=KEY, expires_in=60, transform=Transform(width=4000))


# The route -------------------------------------------------------------------------


async def test_a_signed_url_serves_the_original_with_safe_headers(store, tmp_path):
    source = await _put(store, tmp_path)
    url = await store.signed_url(key=KEY, expires_in=600)
    assert url.startswith(f"/files/object/{KEY}?exp=")

    response = await _request(url)

    assert response.status_code == 200
    assert response.content == source.read_bytes()
    headers = response.headers
    assert headers["content-type"] == "image/jpeg"
    assert headers["content-length"] == str(source.stat().st_size)
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["content-disposition"] == "inline"
    policy = headers["content-security-policy"]
    assert policy == file_objects.SANDBOXED_POLICY
    assert "default-src 'none'" in policy and "sandbox" in policy
    cache = headers["cache-control"]
    assert cache.startswith("private, max-age=")
    assert 600 <= int(cache.rsplit("=", 1)[1]) <= 600 + 60


async def test_head_answers_headers_only(store, tmp_path):
    source = await _put(store, tmp_path)
    response = await _request(await store.signed_url(key=KEY, expires_in=60), method="HEAD")
    assert response.status_code == 200
    assert response.content == b""
    assert response.headers["content-length"] == str(source.stat().st_size)


async def test_anything_but_images_audio_and_pdf_is_a_download(store, tmp_path):
    page = tmp_path / "page.html"
    page.write_text("<script>alert(1)</script>")
    await store.put_file(key="u/f/original.html", path=page, content_type="text/html")
    response = await _request(await store.signed_url(key="u/f/original.html", expires_in=60))
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert response.headers["content-disposition"] == (
        "attachment; filename=\"original.html\"; filename*=UTF-8''original.html"
    )
    assert response.headers["content-security-policy"] == file_objects.SANDBOXED_POLICY
    assert response.headers["x-content-type-options"] == "nosniff"

    svg = tmp_path / "drawing.svg"
    svg.write_text('<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>')
    await store.put_file(key="u/g/original.svg", path=svg, content_type="image/svg+xml")
    response = await _request(await store.signed_url(key="u/g/original.svg", expires_in=60))
    assert response.headers["content-disposition"].startswith("attachment;")


async def test_audio_and_pdf_are_shown_inline(store, tmp_path):
    audio = tmp_path / "voice.mp3"
    audio.write_bytes(b"ID3" + os.urandom(5000))
    await store.put_file(key="u/a/original.mp3", path=audio, content_type="audio/mpeg")
    response = await _request(await store.signed_url(key="u/a/original.mp3", expires_in=60))
    assert response.headers["content-disposition"] == "inline"
    # Players seek with ranges.
    ranged = await _request(
        await store.signed_url(key="u/a/original.mp3", expires_in=60),
        headers={"Range": "bytes=0-99"},
    )
    assert ranged.status_code == 206
    assert ranged.content == audio.read_bytes()[:100]

    pdf = _pdf(tmp_path / "doc.pdf")
    await store.put_file(key="u/p/original.pdf", path=pdf, content_type="application/pdf")
    response = await _request(await store.signed_url(key="u/p/original.pdf", expires_in=60))
    assert response.headers["content-disposition"] == "inline"
    assert response.headers["content-type"] == "application/pdf"
    # Browsers' PDF viewers do not run in a sandboxed document; scripts stay blocked.
    policy = response.headers["content-security-policy"]
    assert "sandbox" not in policy
    assert "default-src 'none'" in policy and "script-src" not in policy


async def test_a_download_name_always_means_attachment_with_that_name(store, tmp_path):
    await _put(store, tmp_path)
    url = await store.signed_url(key=KEY, expires_in=60, download_name="Résumé final.jpg")
    response = await _request(url)
    assert response.headers["content-disposition"] == (
        "attachment; filename=\"R_sum_ final.jpg\"; filename*=UTF-8''R%C3%A9sum%C3%A9%20final.jpg"
    )


@pytest.mark.parametrize(
    "change",
    [
        {"sig": "0" * 64},
        {"sig": None},
        {"exp": None},
        {"exp": "99999999999"},
        {"width": "101"},
        {"format": "png"},
        {"download": "renamed.jpg"},
        {"width": None, "resize": None, "format": None, "quality": None},
    ],
)
async def test_a_changed_url_is_refused(store, tmp_path, change):
    await _put(store, tmp_path)
    url = await store.signed_url(
        key=KEY, expires_in=60, transform=Transform(width=100, format="webp")
    )
    response = await _request(_with_query(url, **change))
    assert response.status_code == 403
    assert response.json() == {"error": "This link is not valid."}
    assert response.headers["cache-control"] == "no-store"


async def test_a_url_for_one_key_does_not_open_another(store, tmp_path):
    await _put(store, tmp_path)
    await _put(store, tmp_path, key="0b8e6a52/other/original.jpg")
    url = await store.signed_url(key=KEY, expires_in=60)
    response = await _request(url.replace(KEY, "0b8e6a52/other/original.jpg"))
    assert response.status_code == 403


async def test_an_expired_url_is_refused(store, tmp_path, monkeypatch):
    await _put(store, tmp_path)
    url = await store.signed_url(key=KEY, expires_in=60)
    expires_at = int(dict(parse_qsl(urlsplit(url).query))["exp"])
    monkeypatch.setattr(file_objects, "time", SimpleNamespace(time=lambda: expires_at + 1))
    response = await _request(url)
    assert response.status_code == 403
    assert response.json() == {"error": "This link has expired."}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"width": "9999"}, "width must be between 1 and 2500"),
        ({"quality": "5"}, "quality must be between 20 and 100"),
        ({"resize": "stretch"}, "resize must be one of cover, contain, fill"),
    ],
)
async def test_out_of_range_parameters_get_400_with_the_range(store, tmp_path, change, message):
    await _put(store, tmp_path)
    url = await store.signed_url(key=KEY, expires_in=60, transform=Transform(width=100))
    response = await _request(_with_query(url, **change))
    assert response.status_code == 400
    assert response.json() == {"error": message}


async def test_missing_object_and_bad_key_are_404(store, tmp_path):
    url = await store.signed_url(key=KEY, expires_in=60)
    assert (await _request(url)).status_code == 404
    assert (await _request("/files/object/..%2F..%2Fetc/passwd?exp=1&sig=00")).status_code == 404


async def test_the_route_is_404_when_supabase_stores_the_files(store, tmp_path, monkeypatch):
    await _put(store, tmp_path)
    url = await store.signed_url(key=KEY, expires_in=60)
    monkeypatch.setenv("SUPABASE_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("SUPABASE_SERVICE_ROLE_KEY", "service-role-key")
    reset_settings_cache()
    response = await _request(url)
    assert response.status_code == 404


# Transformations -------------------------------------------------------------------


async def _variant(store: LocalStore, key: str, transform: Transform) -> httpx.Response:
    response = await _request(await store.signed_url(key=key, expires_in=60, transform=transform))
    assert response.status_code == 200, response.text
    return response


async def test_exif_orientation_is_applied_and_metadata_stripped(store, tmp_path):
    # Stored sideways: the left quarter is red, and the tag says "rotate 90° clockwise".
    pixels = Image.new("RGB", (400, 200), (0, 0, 255))
    pixels.paste((255, 0, 0), (0, 0, 100, 200))
    exif = Image.Exif()
    exif[0x0112] = 6
    exif[0x010F] = "Camera maker"
    exif[0x8825] = {2: (51.0, 30.0, 0.0)}  # GPS latitude, which must not leak
    source = tmp_path / "sideways.jpg"
    pixels.save(source, "JPEG", exif=exif.tobytes(), quality=95)
    await store.put_file(key="u/r/original.jpg", path=source, content_type="image/jpeg")

    response = await _variant(store, "u/r/original.jpg", Transform(width=100, format="jpeg"))

    image = Image.open(io.BytesIO(response.content))
    assert image.size == (100, 200)
    top, bottom = image.getpixel((50, 10)), image.getpixel((50, 190))
    assert top[0] > 200 and top[2] < 60
    assert bottom[2] > 200 and bottom[0] < 60
    assert not image.getexif()
    assert "exif" not in image.info and "icc_profile" not in image.info


@pytest.mark.parametrize(
    ("transform", "size"),
    [
        (Transform(width=300, height=300), (300, 300)),
        (Transform(width=300, height=300, gravity="auto"), (300, 300)),
        (Transform(width=300, height=300, resize="contain"), (300, 200)),
        (Transform(width=300, height=100, resize="fill"), (300, 100)),
        (Transform(width=300), (300, 200)),
        (Transform(height=300), (450, 300)),
        # Never enlarged beyond the source, as Supabase (imgproxy) does.
        (Transform(width=2400), (1200, 800)),
        (Transform(width=2400, height=100), (1200, 100)),
    ],
)
async def test_resize_modes_give_the_expected_dimensions(store, tmp_path, transform, size):
    await _put(store, tmp_path)
    response = await _variant(store, KEY, transform)
    assert Image.open(io.BytesIO(response.content)).size == size


async def test_fill_stretches_while_cover_crops(store, tmp_path):
    # Left half red, right half blue: a 100x100 cover keeps the middle, fill keeps both.
    image = Image.new("RGB", (400, 100), (0, 0, 255))
    image.paste((255, 0, 0), (0, 0, 200, 100))
    source = tmp_path / "halves.png"
    image.save(source)
    await store.put_file(key="u/h/original.png", path=source, content_type="image/png")
    fill = Image.open(
        io.BytesIO(
            (
                await _variant(
                    store, "u/h/original.png", Transform(width=100, height=100, resize="fill")
                )
            ).content
        )
    )
    assert fill.getpixel((5, 50))[0] > 200 and fill.getpixel((95, 50))[2] > 200
    cover = Image.open(
        io.BytesIO(
            (await _variant(store, "u/h/original.png", Transform(width=100, height=20))).content
        )
    )
    assert cover.size == (100, 20)


async def test_smart_crop_finds_the_interesting_part(store, tmp_path):
    # A flat grey picture with a busy, colourful patch at its right edge.
    image = Image.new("RGB", (1200, 400), (128, 128, 128))
    draw = ImageDraw.Draw(image)
    for index in range(0, 300, 12):
        draw.rectangle([900 + index, 50, 906 + index, 350], fill=(255, 30 * (index % 8), 0))
    source = tmp_path / "busy.png"
    image.save(source)
    await store.put_file(key="u/s/original.png", path=source, content_type="image/png")

    def reds(response: httpx.Response) -> int:
        data = Image.open(io.BytesIO(response.content)).convert("RGB").tobytes()
        pixels = zip(data[0::3], data[1::3], data[2::3], strict=True)
        return sum(1 for r, _, b in pixels if r > 200 and b < 80)

    centre = await _variant(store, "u/s/original.png", Transform(width=400, height=400))
    smart = await _variant(
        store, "u/s/original.png", Transform(width=400, height=400, gravity="auto")
    )
    assert reds(centre) == 0
    assert reds(smart) > 1000


@pytest.mark.parametrize(
    ("output", "content_type", "magic"),
    [
        ("webp", "image/webp", lambda data: data[:4] == b"RIFF" and data[8:12] == b"WEBP"),
        ("avif", "image/avif", lambda data: data[4:8] == b"ftyp" and b"avif" in data[8:24]),
        ("jpeg", "image/jpeg", lambda data: data[:3] == b"\xff\xd8\xff"),
        ("png", "image/png", lambda data: data[:8] == b"\x89PNG\r\n\x1a\n"),
        ("origin", "image/jpeg", lambda data: data[:3] == b"\xff\xd8\xff"),
    ],
)
async def test_output_formats(store, tmp_path, output, content_type, magic):
    await _put(store, tmp_path)
    response = await _variant(store, KEY, Transform(width=200, format=output))
    assert response.headers["content-type"] == content_type
    assert magic(response.content)
    assert response.headers["content-disposition"] == "inline"
    assert response.headers["x-content-type-options"] == "nosniff"


async def test_quality_changes_lossy_output(store, tmp_path):
    await _put(store, tmp_path)
    low = await _variant(store, KEY, Transform(width=600, format="webp", quality=20))
    high = await _variant(store, KEY, Transform(width=600, format="webp", quality=100))
    assert len(low.content) < len(high.content)


def _pdf(path: Path) -> Path:
    first = Image.new("RGB", (612, 792), (255, 0, 0))
    second = Image.new("RGB", (612, 792), (0, 0, 255))
    first.save(path, "PDF", save_all=True, append_images=[second])
    return path


async def test_a_pdf_gets_a_first_page_thumbnail(store, tmp_path):
    pdf = _pdf(tmp_path / "doc.pdf")
    await store.put_file(key="u/d/original.pdf", path=pdf, content_type="application/pdf")
    response = await _variant(store, "u/d/original.pdf", Transform(width=200))
    assert response.headers["content-type"] == "image/png"
    image = Image.open(io.BytesIO(response.content)).convert("RGB")
    assert image.width == 200
    assert abs(image.height - 259) <= 1
    red, green, blue = image.getpixel((100, 130))
    assert red > 200 and blue < 60

    webp = await _variant(
        store, "u/d/original.pdf", Transform(width=120, height=120, format="webp")
    )
    assert Image.open(io.BytesIO(webp.content)).size == (120, 120)


async def test_files_that_are_not_images_cannot_be_transformed(store, tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    await store.put_file(key="u/t/original.txt", path=text, content_type="text/plain")
    response = await _request(
        await store.signed_url(key="u/t/original.txt", expires_in=60, transform=Transform(width=10))
    )
    assert response.status_code == 415
    # A file that only claims to be an image is refused by the decoder check.
    await store.put_file(key="u/t/fake.png", path=text, content_type="image/png")
    response = await _request(
        await store.signed_url(key="u/t/fake.png", expires_in=60, transform=Transform(width=10))
    )
    assert response.status_code == 415


async def test_oversized_images_are_refused(tmp_path):
    small_limit = LocalStore(tmp_path / "store", secret=b"s" * 32, max_image_pixels=1_000_000)
    await small_limit.put_file(
        key="u/big/original.jpg",
        path=_photo(tmp_path / "big.jpg", size=(1500, 1000)),
        content_type="image/jpeg",
    )
    with pytest.raises(NotRenderable, match="megapixels"):
        await small_limit.variant(key="u/big/original.jpg", transform=Transform(width=10))


async def test_the_second_request_is_served_from_the_cache(store, tmp_path, monkeypatch):
    await _put(store, tmp_path)
    renders = []
    real = local_module.render_variant

    def counting(**kwargs):
        renders.append(kwargs["transform"])
        return real(**kwargs)

    monkeypatch.setattr(local_module, "render_variant", counting)
    transform = Transform(width=320, format="webp")
    url = await store.signed_url(key=KEY, expires_in=60, transform=transform)

    first = await _request(url)
    cached = store.root / ".variants" / KEY / f"{transform.cache_key()}.webp"
    assert cached.is_file()
    second = await _request(url)

    assert len(renders) == 1
    assert first.content == second.content == cached.read_bytes()
    assert second.headers["content-type"] == "image/webp"


async def test_concurrent_misses_render_once_and_leave_no_partial_files(
    store, tmp_path, monkeypatch
):
    await _put(store, tmp_path)
    renders = []
    real = local_module.render_variant

    def counting(**kwargs):
        renders.append(kwargs["dest"])
        return real(**kwargs)

    monkeypatch.setattr(local_module, "render_variant", counting)
    url = await store.signed_url(key=KEY, expires_in=60, transform=Transform(width=500))

    responses = await asyncio.gather(*(_request(url) for _ in range(6)))

    assert {response.status_code for response in responses} == {200}
    assert len({response.content for response in responses}) == 1
    assert len(renders) == 1
    variants = list((store.root / ".variants" / KEY).iterdir())
    assert [path.suffix for path in variants] == [".jpg"]


async def test_renders_in_other_processes_replace_the_variant_whole(store, tmp_path):
    # Without the in-process lock (as between processes), each render still lands
    # complete: written under a temporary name and renamed into place.
    await _put(store, tmp_path)
    original = await store.stat(key=KEY)
    transform = Transform(width=400, format="png")
    path = store.variant_path(key=KEY, transform=transform, content_type="image/jpeg")
    await asyncio.gather(
        *(asyncio.to_thread(store._render_sync, original, transform, path) for _ in range(4))
    )
    with Image.open(path) as image:
        assert image.size == (400, 267)
    assert [p.name for p in path.parent.iterdir()] == [path.name]


async def test_heic_photos_become_jpeg(store, tmp_path):
    pillow_heif = pytest.importorskip("pillow_heif")
    source = tmp_path / "photo.heic"
    pillow_heif.from_pillow(Image.new("RGB", (640, 480), (200, 30, 30))).save(source)
    await store.put_file(key="u/i/original.heic", path=source, content_type="image/heic")
    response = await _variant(store, "u/i/original.heic", Transform(width=160))
    assert response.headers["content-type"] == "image/jpeg"
    image = Image.open(io.BytesIO(response.content))
    assert image.size == (160, 120)
    red, green, blue = image.convert("RGB").getpixel((80, 60))
    assert red > 170 and green < 70 and blue < 70


async def test_the_first_frame_of_a_gif_becomes_png(store, tmp_path):
    frames = [Image.new("RGB", (120, 80), colour) for colour in ("red", "green", "blue")]
    source = tmp_path / "moving.gif"
    frames[0].save(source, save_all=True, append_images=frames[1:], duration=100, loop=0)
    await store.put_file(key="u/m/original.gif", path=source, content_type="image/gif")
    response = await _variant(store, "u/m/original.gif", Transform(width=60))
    assert response.headers["content-type"] == "image/png"
    image = Image.open(io.BytesIO(response.content)).convert("RGB")
    assert image.size == (60, 40)
    assert image.getpixel((30, 20))[0] > 200


async def test_a_malformed_content_type_is_served_as_plain_bytes(store, tmp_path):
    await _put(store, tmp_path, content_type="text/html\r\nX-Injected: 1")
    response = await _request(await store.signed_url(key=KEY, expires_in=60))
    assert response.headers["content-type"] == "application/octet-stream"
    assert "x-injected" not in response.headers
    assert response.headers["content-disposition"].startswith("attachment;")
