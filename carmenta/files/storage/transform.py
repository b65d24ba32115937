"""Image variants: resize, crop, re-encode and strip metadata with libvips.

`render_variant` is synchronous and CPU-bound: async callers run it in a worker
thread. It follows the semantics of Supabase's render endpoint (imgproxy):

- cover (default): scale to fill the box, then crop (centre, or the most
  interesting region with `gravity=auto`); contain: fit inside the box;
  fill: stretch to the box, ignoring the aspect ratio.
- Only a width or only a height: scale to it, keeping the aspect ratio.
- Images are never enlarged beyond their own size, as imgproxy does by default.
- EXIF orientation is applied and every piece of metadata is dropped; images
  with an embedded colour profile are converted to sRGB first so that dropping
  the profile does not shift their colours.

`format=origin` keeps the source format where browsers can show it: HEIC/HEIF
becomes JPEG (only Safari displays HEIC), GIF and TIFF become PNG (first frame,
lossless), and a PDF's first page becomes PNG (sharp text). `quality` applies to
JPEG, WebP and AVIF; PNG is always lossless.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pyvips

from carmenta.files.storage.base import MAX_DIMENSION, NotRenderable, Transform

DEFAULT_MAX_PIXELS = 60_000_000
# libvips' own largest coordinate: "no limit" for the free side of a one-sided resize.
_UNBOUNDED = 10_000_000

FORMAT_CONTENT_TYPES: dict[str, str] = {
    "jpeg": "image/jpeg",
    "png": "image/png",
    "webp": "image/webp",
    "avif": "image/avif",
}
FORMAT_EXTENSIONS: dict[str, str] = {"jpeg": "jpg", "png": "png", "webp": "webp", "avif": "avif"}
CONTENT_TYPE_FORMATS: dict[str, str] = {
    content_type: name for name, content_type in FORMAT_CONTENT_TYPES.items()
}

# What `format=origin` produces for each source type we can render.
_ORIGIN_FORMATS: dict[str, str] = {
    "image/jpeg": "jpeg",
    "image/png": "png",
    "image/webp": "webp",
    "image/avif": "avif",
    "image/gif": "png",
    "image/heic": "jpeg",
    "image/heif": "jpeg",
    "image/tiff": "png",
    "application/pdf": "png",
}
_ALIASES = {"image/jpg": "image/jpeg", "image/pjpeg": "image/jpeg", "image/x-png": "image/png"}
# The decoders a source may use, whatever content type it claimed: this keeps
# SVG, matrix, raw and other loaders away from uploaded bytes.
_ALLOWED_LOADERS = frozenset({"jpegload", "pngload", "webpload", "heifload", "gifload", "tiffload"})
# Without dimensions a PDF page is drawn at 144 dpi (twice its size in points).
_PDF_DEFAULT_SCALE = 2.0

# PDFium is not thread-safe: every use of it in the process takes this lock.
PDFIUM_LOCK = threading.Lock()
_vips_ready = False
_vips_lock = threading.Lock()


def _prepare_vips() -> None:
    global _vips_ready
    with _vips_lock:
        if not _vips_ready:
            # libvips' operation cache is keyed by file name: a replaced object at
            # the same path could otherwise come back from the cache.
            pyvips.cache_set_max(0)
            _vips_ready = True


def normalized_content_type(content_type: str) -> str:
    base = content_type.split(";", 1)[0].strip().lower()
    return _ALIASES.get(base, base)


def is_renderable(content_type: str) -> bool:
    return normalized_content_type(content_type) in _ORIGIN_FORMATS


def output_format(*, content_type: str, transform: Transform) -> str:
    """The concrete format a variant is written in (jpeg, png, webp or avif)."""
    source = normalized_content_type(content_type)
    if source not in _ORIGIN_FORMATS:
        raise NotRenderable("only images and PDFs can be transformed")
    if transform.format == "origin":
        return _ORIGIN_FORMATS[source]
    return transform.format


def variant_content_type(*, content_type: str, transform: Transform) -> str:
    return FORMAT_CONTENT_TYPES[output_format(content_type=content_type, transform=transform)]


def render_variant(
    *,
    source: Path,
    content_type: str,
    transform: Transform,
    dest: Path,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> str:
    """Write `source` transformed to `dest`; returns the variant's content type.

    Raises NotRenderable for anything that is not a decodable image or PDF, or an
    image with more than `max_pixels` pixels.
    """
    _prepare_vips()
    target = output_format(content_type=content_type, transform=transform)
    try:
        if normalized_content_type(content_type) == "application/pdf":
            page = _first_pdf_page(source, transform)
            box_width, options = _thumbnail_box(transform, page.width, page.height)
            image = page.thumbnail_image(box_width, **options)
        else:
            image = _thumbnail_file(source, transform, max_pixels)
        image = _for_format(image, target)
        _save(image, dest, target, transform.quality)
    except pyvips.Error as error:
        raise NotRenderable("the file could not be decoded as an image") from error
    return FORMAT_CONTENT_TYPES[target]


def _thumbnail_file(source: Path, transform: Transform, max_pixels: int) -> pyvips.Image:
    header = pyvips.Image.new_from_file(str(source))
    loader = str(_field(header, "vips-loader") or "")
    if loader.removesuffix("_source") not in _ALLOWED_LOADERS:
        raise NotRenderable("only JPEG, PNG, WebP, AVIF, HEIC, GIF and TIFF images can be shown")
    if header.width * header.height > max_pixels:
        raise NotRenderable(
            f"the image has more than {max_pixels // 1_000_000} megapixels and is not shown"
        )
    width, height = header.width, header.height
    orientation = _field(header, "orientation") or 1
    if orientation in (5, 6, 7, 8):
        width, height = height, width
    box_width, options = _thumbnail_box(transform, width, height)
    if loader.startswith("heifload") and _field(header, "heif-compression") == "hevc":
        # libvips' wheels carry no HEVC decoder (patents); HEIC photos take a detour.
        return _hevc_image(source).thumbnail_image(box_width, **options)
    if header.get_typeof("icc-profile-data"):
        # Only images with their own profile pay for the conversion.
        options["output_profile"] = "srgb"
    return pyvips.Image.thumbnail(str(source), box_width, **options)


def _field(image: pyvips.Image, name: str) -> object:
    return image.get(name) if image.get_typeof(name) else None


def _hevc_image(source: Path) -> pyvips.Image:
    """A HEIC (HEVC) photo decoded by pillow-heif, upright and in sRGB."""
    try:
        import pillow_heif
    except ImportError:
        raise NotRenderable("HEIC photos can be shown once pillow-heif is installed") from None
    try:
        # libheif applies the photo's rotation and mirroring while decoding.
        heif = pillow_heif.open_heif(str(source), convert_hdr_to_8bit=True)
        picture = heif.to_pillow()
    except (ValueError, RuntimeError, OSError) as error:
        raise NotRenderable("the file could not be decoded as an image") from error
    if picture.mode not in ("RGB", "RGBA"):
        picture = picture.convert("RGBA" if "A" in picture.getbands() else "RGB")
    image = pyvips.Image.new_from_memory(
        picture.tobytes(), picture.width, picture.height, len(picture.getbands()), "uchar"
    ).copy(interpretation="srgb")
    profile = heif.info.get("icc_profile")
    if profile:
        image = image.copy()
        image.set_type(pyvips.GValue.blob_type, "icc-profile-data", profile)
        image = image.icc_transform("srgb", embedded=True)
    return image


def _thumbnail_box(transform: Transform, width: int, height: int) -> tuple[int, dict]:
    """Arguments for libvips' thumbnail: the box width and the keyword options."""
    if transform.width is None and transform.height is None:
        return _UNBOUNDED, {"height": _UNBOUNDED, "size": "down"}
    if transform.height is None:
        return transform.width, {"height": _UNBOUNDED, "size": "down"}
    if transform.width is None:
        return _UNBOUNDED, {"height": transform.height, "size": "down"}
    if transform.resize == "contain":
        return transform.width, {"height": transform.height, "size": "down"}
    if transform.resize == "fill":
        # Stretched, but never past the source's own size on either side.
        return min(transform.width, width), {
            "height": min(transform.height, height),
            "size": "force",
        }
    crop = "attention" if transform.gravity == "auto" else "centre"
    return transform.width, {"height": transform.height, "size": "down", "crop": crop}


def _first_pdf_page(source: Path, transform: Transform) -> pyvips.Image:
    # Imported here: PDFium is only loaded once a PDF needs drawing.
    import pypdfium2

    with PDFIUM_LOCK:
        try:
            document = pypdfium2.PdfDocument(str(source))
        except pypdfium2.PdfiumError as error:
            raise NotRenderable("the PDF could not be opened") from error
        try:
            if len(document) == 0:
                raise NotRenderable("the PDF has no pages")
            page = document[0]
            try:
                page_width, page_height = page.get_size()
                if page_width <= 0 or page_height <= 0:
                    raise NotRenderable("the PDF's first page has no size")
                scale = _pdf_scale(transform, page_width, page_height)
                # Four bytes a pixel (RGBx) keep rows unpadded, ready for libvips.
                bitmap = page.render(
                    scale=scale,
                    fill_color=(255, 255, 255, 255),
                    rev_byteorder=True,
                    prefer_bgrx=True,
                )
                data = bytes(bitmap.buffer)
                width, height, row_pixels = bitmap.width, bitmap.height, bitmap.stride // 4
                bitmap.close()
            finally:
                page.close()
        except pypdfium2.PdfiumError as error:
            raise NotRenderable("the PDF's first page could not be drawn") from error
        finally:
            document.close()
    image = pyvips.Image.new_from_memory(data, row_pixels, height, 4, "uchar")
    if row_pixels != width:
        image = image.crop(0, 0, width, height)
    return image.extract_band(0, n=3).copy(interpretation="srgb")


def _pdf_scale(transform: Transform, page_width: float, page_height: float) -> float:
    """Draw the page just large enough for the requested box (one spare pixel)."""
    wanted = []
    if transform.width is not None:
        wanted.append((transform.width + 1) / page_width)
    if transform.height is not None:
        wanted.append((transform.height + 1) / page_height)
    if not wanted:
        scale = _PDF_DEFAULT_SCALE
    elif transform.resize == "contain" and len(wanted) == 2:
        scale = min(wanted)
    else:
        scale = max(wanted)
    # Bounded so an enormous page size cannot exhaust memory.
    largest = MAX_DIMENSION / max(page_width, page_height)
    return max(min(scale, largest), 1 / max(page_width, page_height))


def _for_format(image: pyvips.Image, target: str) -> pyvips.Image:
    if image.interpretation not in ("srgb", "b-w"):
        # 16-bit, CMYK and other spaces: web formats want 8-bit sRGB or grey.
        grey = image.bands - (1 if image.hasalpha() else 0) == 1
        image = image.colourspace("b-w" if grey else "srgb")
    if image.format != "uchar":
        image = image.cast("uchar")
    if target == "jpeg" and image.hasalpha():
        image = image.flatten(background=[255] * (image.bands - 1))
    return image


def _save(image: pyvips.Image, dest: Path, target: str, quality: int) -> None:
    path = str(dest)
    if target == "jpeg":
        image.jpegsave(path, Q=quality, optimize_coding=True, keep="none")
    elif target == "webp":
        image.webpsave(path, Q=quality, keep="none")
    elif target == "avif":
        image.heifsave(path, Q=quality, compression="av1", keep="none")
    elif target == "png":
        image.pngsave(path, keep="none")
    else:  # pragma: no cover - output_format only returns the four above
        raise NotRenderable(f"cannot write {target}")
