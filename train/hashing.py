"""Image fingerprints for leakage checks: exact pixel hashes and rotation/flip-tolerant near-duplicate search.

Two stages find near-duplicates (calibrated on FracAtlas, see data_check.py):
1. candidates: 256-bit dHash (16x16 horizontal gradients of a 64 px thumbnail) of the image against the
   hashes of the other image under the 8 dihedral transforms (90° rotations, flips) x small rotations
   (0, ±4 degrees); Hamming distance <= near_threshold;
2. confirmation: best normalised correlation of high-passed 48 px thumbnails over the 8 dihedral transforms
   x rotations of -7..7 degrees in 1 degree steps; similarity >= min_similarity.
X-rays of different patients in the same pose often share a dHash within 16 bits; stage 2 tells them apart.
Defaults (NEAR_THRESHOLD 32, MIN_SIMILARITY 0.94), measured on FracAtlas (3,808 images, 7.2 M pairs, cleaned):
1 pair flagged (the same radiograph re-exported, both in test), 0 train/val/test leaks; on 100 of its images
copied with a change: JPEG q75, 90° turns and flips 100 % found; rotations of 3-5° (same canvas) 75-90 %
found; rotations that enlarge the canvas are mostly missed.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
from PIL import Image

DHASH_SIDE = 16                      # 16 x 16 = 256 bits
DHASH_THUMB = 64
DHASH_ANGLES = (0.0, -4.0, 4.0)
MATCH_THUMB = 48
MATCH_BORDER = 6                     # pixels dropped on each side after rotation (fill, corners)
MATCH_ANGLES = tuple(float(a) for a in range(-7, 8))
SEARCH_CHUNK = 32
NEAR_THRESHOLD = 32                   # max dHash Hamming distance (of 256 bits) for a candidate
MIN_SIMILARITY = 0.94                # min aligned high-pass correlation to confirm a candidate


@dataclass(frozen=True)
class ImageFingerprint:
    """What the checks need of one decoded image."""

    exact: str                 # sha256 of the uint8 pixels and the shape
    dhash: np.ndarray          # (V, 4) uint64: row 0 is the image as it is, then its transformed variants
    match: np.ndarray          # (D,) float32 unit vector: high-passed thumbnail, for confirmation
    thumb: np.ndarray          # (MATCH_THUMB, MATCH_THUMB) float32 thumbnail (match variants built from it)
    shape: tuple[int, int]


def fingerprint(gray: np.ndarray) -> ImageFingerprint:
    """Fingerprint a decoded (H, W) grayscale image in 0..255."""
    pixels = np.clip(np.rint(gray), 0, 255).astype(np.uint8)
    digest = hashlib.sha256(repr(pixels.shape).encode() + pixels.tobytes()).hexdigest()
    image = Image.fromarray(pixels.astype(np.float32), mode="F")
    thumb = np.asarray(image.resize((MATCH_THUMB, MATCH_THUMB), Image.BOX), dtype=np.float32)
    return ImageFingerprint(digest, dhash_variants(image.resize((DHASH_THUMB, DHASH_THUMB), Image.BOX)),
                            _unit(_crop(high_pass(thumb))), thumb, pixels.shape)


def dhash_variants(thumb: Image.Image) -> np.ndarray:
    """Packed dHash of each dihedral transform of each small rotation of `thumb`: (8 * angles, 4) uint64."""
    codes = []
    for angle in DHASH_ANGLES:
        rotated = thumb if angle == 0 else thumb.rotate(angle, resample=Image.BILINEAR, fillcolor=0)
        for variant in dihedral(np.asarray(rotated, dtype=np.float32)):
            codes.append(dhash(variant))
    return np.stack(codes)


def dhash(square: np.ndarray) -> np.ndarray:
    """256-bit difference hash of a square float32 array, packed into 4 uint64 words."""
    small = Image.fromarray(np.ascontiguousarray(square), mode="F").resize((DHASH_SIDE + 1, DHASH_SIDE), Image.BOX)
    grid = np.asarray(small, dtype=np.float32)
    return np.packbits((grid[:, 1:] > grid[:, :-1]).ravel()).view(np.uint64)


def dihedral(square: np.ndarray) -> list[np.ndarray]:
    """The 8 rotations-by-90° and mirror images of a square array; the first is the array itself."""
    out = []
    for turns in range(4):
        rotated = np.rot90(square, turns)
        out.extend((rotated, rotated[:, ::-1]))
    return out


def high_pass(thumb: np.ndarray) -> np.ndarray:
    """Thumbnail minus its blurred self: keeps bone edges, drops exposure and the large dark/bright layout."""
    side = thumb.shape[0]
    image = Image.fromarray(thumb, mode="F")
    blurred = image.resize((side // 4, side // 4), Image.BOX).resize((side, side), Image.BILINEAR)
    return thumb - np.asarray(blurred, dtype=np.float32)


def match_variants(thumb: np.ndarray) -> np.ndarray:
    """Unit high-pass vectors of every dihedral transform x small rotation of a thumbnail: (V, D)."""
    image = Image.fromarray(thumb, mode="F")
    rows = []
    for angle in MATCH_ANGLES:
        rotated = image if angle == 0 else image.rotate(angle, resample=Image.BILINEAR, fillcolor=0)
        rows.extend(_crop(v) for v in dihedral(high_pass(np.asarray(rotated, dtype=np.float32))))
    stacked = np.stack([v.ravel() for v in rows])
    stacked -= stacked.mean(axis=1, keepdims=True)
    return stacked / (np.linalg.norm(stacked, axis=1, keepdims=True) + 1e-6)


def _crop(square: np.ndarray) -> np.ndarray:
    return square[MATCH_BORDER:-MATCH_BORDER, MATCH_BORDER:-MATCH_BORDER]


def _unit(square: np.ndarray) -> np.ndarray:
    flat = square.ravel() - square.mean()
    return (flat / (np.linalg.norm(flat) + 1e-6)).astype(np.float32)


def popcount(words: np.ndarray) -> np.ndarray:
    """Number of set bits per element (uint64 in, uint8-ish counts out); works on numpy 1.x and 2.x."""
    if hasattr(np, "bitwise_count"):
        return np.bitwise_count(words)
    as_bytes = words.view(np.uint8).reshape(*words.shape, 8)
    return _BYTE_BITS[as_bytes].sum(axis=-1)


_BYTE_BITS = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


def candidate_pairs(codes: np.ndarray, threshold: int) -> dict[tuple[int, int], int]:
    """{(i, j): distance} with i < j for every pair whose best dHash distance is <= threshold.

    codes: (N, V, 4) uint64. The distance of (i, j) is min over the variants of j against i as it is
    (and the other way round), so rotated and mirrored copies score low. Chunked, vectorised numpy.
    """
    queries = codes[:, 0, :]
    found: dict[tuple[int, int], int] = {}
    for start in range(0, len(codes), SEARCH_CHUNK):
        block = queries[start:start + SEARCH_CHUNK]
        dist = popcount(block[:, None, None, :] ^ codes[None]).sum(axis=-1, dtype=np.int32).min(axis=-1)
        for row, col in zip(*np.nonzero(dist <= threshold)):
            i, j = start + int(row), int(col)
            if i == j:
                continue
            key = (min(i, j), max(i, j))
            found[key] = min(found.get(key, 10 ** 6), int(dist[row, col]))
    return found


def confirm_similarity(prints: list[ImageFingerprint], pairs: list[tuple[int, int]]) -> dict[tuple[int, int], float]:
    """Best aligned correlation (over dihedral x small rotations) of each candidate pair's thumbnails."""
    by_second: dict[int, list[int]] = {}
    for i, j in pairs:
        by_second.setdefault(j, []).append(i)
    scores: dict[tuple[int, int], float] = {}
    for j, firsts in by_second.items():
        variants = match_variants(prints[j].thumb)
        anchors = np.stack([prints[i].match for i in firsts])
        best = (anchors @ variants.T).max(axis=1)
        for i, score in zip(firsts, best):
            scores[(i, j)] = float(score)
    return scores
