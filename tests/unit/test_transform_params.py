"""Transformation parameters: parsing, the allowed ranges, and the canonical cache key."""

from __future__ import annotations

import pytest

from carmenta.files.storage.base import Transform, TransformError
from carmenta.files.storage.local import validate_key
from carmenta.files.storage.supabase import supabase_transform
from carmenta.files.storage.transform import output_format


def test_no_transformation_parameters_means_no_transform():
    assert Transform.from_query({}) is None
    assert Transform.from_query({"exp": "1", "sig": "ab", "download": "a.pdf"}) is None


def test_defaults_match_supabase():
    transform = Transform.from_query({"width": "300"})
    assert transform == Transform(width=300, resize="cover", format="origin", quality=80)


def test_every_parameter_is_parsed():
    transform = Transform.from_query(
        {
            "width": "2500",
            "height": "1",
            "resize": "fill",
            "format": "avif",
            "quality": "20",
            "gravity": "auto",
        }
    )
    assert transform == Transform(
        width=2500, height=1, resize="fill", format="avif", quality=20, gravity="auto"
    )


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"width": "0"}, "width must be between 1 and 2500"),
        ({"width": "2501"}, "width must be between 1 and 2500"),
        ({"width": "-5"}, "width must be between 1 and 2500"),
        ({"height": "0"}, "height must be between 1 and 2500"),
        ({"height": "99999"}, "height must be between 1 and 2500"),
        ({"quality": "19"}, "quality must be between 20 and 100"),
        ({"quality": "101"}, "quality must be between 20 and 100"),
        ({"width": "wide"}, "width must be a whole number"),
        ({"width": "12.5"}, "width must be a whole number"),
        ({"quality": ""}, "quality must be a whole number"),
        ({"resize": "stretch"}, "resize must be one of cover, contain, fill"),
        ({"format": "gif"}, "format must be one of origin, webp, avif, jpeg, png"),
        ({"gravity": "north"}, "gravity must be auto"),
    ],
)
def test_out_of_range_values_name_the_allowed_range(params, message):
    with pytest.raises(TransformError) as raised:
        Transform.from_query(params)
    assert str(raised.value) == message


def test_a_transform_error_is_a_value_error():
    # Callers that only know ValueError still refuse bad input.
    assert issubclass(TransformError, ValueError)


def test_cache_key_is_canonical():
    first = Transform.from_query({"width": "300", "format": "webp", "quality": "80"})
    second = Transform.from_query({"quality": "80", "format": "webp", "width": "300"})
    # Defaults spelled out or left implicit name the same variant.
    third = Transform.from_query({"width": "300", "format": "webp", "resize": "cover"})
    assert first.cache_key() == second.cache_key() == third.cache_key()


def test_cache_key_is_stable_across_runs():
    # Pinned: a changed canonical form would orphan every cached variant.
    transform = Transform(width=800, format="webp")
    assert transform.cache_key() == Transform(width=800, format="webp").cache_key()
    assert transform.cache_key() == "1b59e23606e5476cdcd99a3f9269e65b"
    assert len(transform.cache_key()) == 32


def test_every_parameter_changes_the_cache_key():
    base = Transform(width=300, height=200)
    variants = [
        Transform(width=301, height=200),
        Transform(width=300, height=201),
        Transform(width=300, height=200, resize="contain"),
        Transform(width=300, height=200, format="png"),
        Transform(width=300, height=200, quality=81),
        Transform(width=300, height=200, gravity="auto"),
        Transform(width=300),
    ]
    keys = {transform.cache_key() for transform in variants}
    assert base.cache_key() not in keys
    assert len(keys) == len(variants)


def test_to_query_round_trips():
    transform = Transform(width=10, height=20, resize="fill", format="png", quality=55)
    assert Transform.from_query(transform.to_query()) == transform


@pytest.mark.parametrize(
    ("content_type", "expected"),
    [
        ("image/jpeg", "jpeg"),
        ("image/jpg", "jpeg"),
        ("image/png", "png"),
        ("image/webp", "webp"),
        ("image/avif", "avif"),
        ("image/heic", "jpeg"),
        ("image/gif", "png"),
        ("application/pdf", "png"),
        ("IMAGE/JPEG; charset=binary", "jpeg"),
    ],
)
def test_origin_format_keeps_web_formats_and_maps_the_others(content_type, expected):
    assert output_format(content_type=content_type, transform=Transform()) == expected
    assert output_format(content_type=content_type, transform=Transform(format="avif")) == "avif"


def test_supabase_gets_its_own_names_for_the_same_transformation():
    assert supabase_transform(Transform(width=300, format="webp", gravity="auto")) == {
        "width": 300,
        "resize": "cover",
        "quality": 80,
        "format": "webp",
        "gravity": "sm",
    }
    # Supabase's renderer has no jpeg or png output: the source format is kept.
    assert supabase_transform(Transform(height=50, format="png"))["format"] == "origin"


@pytest.mark.parametrize(
    "key",
    ["", "/abs/path", "a/../b", "..", "a//b", "a/", "./a", ".variants/a", "a/.meta", "a b", "a\\b"],
)
def test_unsafe_keys_are_refused(key):
    with pytest.raises(ValueError):
        validate_key(key)


def test_generated_keys_are_accepted():
    key = "0b8e6a52-3c1d-4a57-9d3e-2b6f0e1c9a11/7d9f/original.photo_1-2.jpg"
    assert validate_key(key) == key
