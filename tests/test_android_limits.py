"""The Android app refuses the same images as the Python runtime: core/ImageLimits.kt holds the numbers of
edge_runtime/pixels.py, and the app checks them from the header before it decodes (fast: reads the sources;
android_demo/check.sh compiles them and runs ImageLimitsTest on the JVM)."""
from __future__ import annotations

import re
from pathlib import Path

from fracture_edge.edge_runtime import pixels

KOTLIN = Path(__file__).resolve().parents[1] / "android_demo" / "app" / "src" / "main" / "kotlin" / "org" / "fractureedge"


def kotlin_constant(source: str, name: str) -> int:
    match = re.search(rf"const val {name} = ([0-9_]+)L?\b", source)
    assert match, f"{name} not found in ImageLimits.kt"
    return int(match.group(1).replace("_", ""))


def test_the_app_limits_are_the_python_limits():
    source = (KOTLIN / "core" / "ImageLimits.kt").read_text()
    assert kotlin_constant(source, "MAX_PIXELS") == pixels.MAX_PIXELS
    assert kotlin_constant(source, "MAX_SIDE") == pixels.MAX_SIDE
    assert kotlin_constant(source, "MAX_ASPECT") == pixels.MAX_ASPECT


def test_the_app_checks_the_header_before_decoding_the_pixels():
    loader = (KOTLIN / "demo" / "LoadedImage.kt").read_text()
    assert "100_000_000" not in loader                      # the old, looser limit of its own
    bounds, check = loader.index("inJustDecodeBounds = true"), loader.index("ImageLimits.check(")
    decode = loader.index("inPreferredConfig")
    assert bounds < check < decode
