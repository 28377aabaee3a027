"""android_demo: resources link, the Kotlin app compiles against the API-29 stubs, and the Kotlin core
reproduces the Python preprocessing byte-for-byte (android_demo/check.sh; installs its tools when missing)."""
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from fracture_edge.edge_runtime.preprocessing import resize_gray, resize_weights

ROOT = Path(__file__).resolve().parents[1]
CHECK = ROOT / "android_demo" / "check.sh"
SHARED = Path(os.environ.get("FRACTURE_EDGE_SHARED", ROOT.parent / "shared"))
EXIT_UNAVAILABLE = 3   # check.sh: prerequisites cannot be installed here


def unavailable_reason() -> str | None:
    """Why check.sh cannot run on this machine, or None when it can (tools present or installable)."""
    if shutil.which("bash") is None or shutil.which("java") is None:
        return "needs bash and a Java runtime"
    if not (SHARED / "android" / "android-29-stubs.jar").is_file():
        return f"{SHARED / 'android' / 'android-29-stubs.jar'} not found (../shared absent)"
    have_tools = shutil.which("aapt2") and Path("/usr/share/java/junit-platform-console-standalone.jar").is_file()
    can_install = shutil.which("apt-get") and hasattr(os, "geteuid") and os.geteuid() == 0
    if not (have_tools or can_install):
        return "aapt2/junit5 missing and cannot be installed (no apt-get or not root)"
    if shutil.which("npm") is None and not (ROOT / "android_demo/build/tools/node_modules/kotlin-compiler").is_dir():
        return "kotlin-compiler missing and npm not found"
    return None


@pytest.mark.android
def test_android_demo_check_passes():
    reason = unavailable_reason()
    if reason:
        pytest.skip(f"android_demo/check.sh cannot run here: {reason}")
    proc = subprocess.run(["bash", str(CHECK)], cwd=ROOT, capture_output=True, text=True, timeout=1200)
    output = proc.stdout + proc.stderr
    if proc.returncode == EXIT_UNAVAILABLE:
        pytest.skip(output.strip().splitlines()[-1])
    assert proc.returncode == 0, output[-6000:]
    assert "android_demo check passed" in proc.stdout


def sequential_resize(gray: np.ndarray, size: int) -> np.ndarray:
    """Plain loops in the order the Kotlin core uses: rows then columns, taps in increasing index."""
    rows, cols = resize_weights(gray.shape[0], size), resize_weights(gray.shape[1], size)
    vertical = np.zeros((size, gray.shape[1]))
    for i in range(size):
        for k in np.flatnonzero(rows[i]):
            vertical[i] = vertical[i] + rows[i, k] * gray[k].astype(np.float64)
    out = np.zeros((size, size))
    for j in range(size):
        for k in np.flatnonzero(cols[j]):
            out[:, j] = out[:, j] + cols[j, k] * vertical[:, k]
    return out


@pytest.mark.parametrize("shape,size", [((48, 64), 224), ((53, 37), 17), ((200, 300), 64), ((16, 16), 16)])
def test_resize_is_bit_identical_to_the_kotlin_summation_order(shape, size):
    rng = np.random.default_rng(sum(shape) + size)
    gray = (rng.random(shape) * 255).astype(np.float32)
    gray[: shape[0] // 2] = np.floor(gray[: shape[0] // 2])   # integer rows: exact .5 ties after resizing
    assert np.array_equal(resize_gray(gray, size), sequential_resize(gray, size))
