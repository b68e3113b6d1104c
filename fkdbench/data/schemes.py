"""Keypoint schemes: the one place that names keypoints, their order and their symmetry.

Coordinates everywhere in fkdbench are pixels of the image, x to the right and y down,
with the centre of pixel column ``i`` at ``x = i`` (the Kaggle convention). A horizontal
flip of an image ``W`` pixels wide therefore maps ``x`` to ``W - 1 - x``.

Kaggle's names follow the *subject's* side: ``left_eye_center`` is the subject's left
eye, which appears on the image's right (larger x). A flip must swap every left/right
pair, otherwise the flipped label says "left" for a point that now lies on the left of
the image but belongs to the subject's right.

The 68- and 98-point schemes (``ibug68``, ``wflw98``) name their points the same way:
``right_eye_0`` is on the subject's right eye, the one on the image's left. Their flip
pairs are listed by index, as the datasets publish them: names such as ``right_brow_0``
and ``left_brow_0`` are not mirror images of each other (both brows are numbered from
the image's left), so pairing by name would be wrong there.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class KeypointScheme:
    """A named, ordered set of keypoints and the facts needed to use them."""

    # Short identifier used on the command line and in manifests.
    name: str
    # Keypoint names in output order; the model predicts x, y for each, interleaved.
    keypoints: tuple[str, ...]
    # Index pairs (a, b) that exchange places under a horizontal flip.
    flip_pairs: tuple[tuple[int, int], ...]
    # The two keypoints whose distance normalises errors (NME).
    normalising_pair: tuple[int, int]
    # Named groups, for drawing and per-region errors.
    groups: dict[str, tuple[int, ...]] = field(default_factory=dict)
    # Index runs to join with lines when drawing a face; a closed outline (an eye, the
    # lips) repeats its first index at the end, so drawing only joins neighbours.
    polylines: tuple[tuple[int, ...], ...] = ()

    @property
    def num_keypoints(self) -> int:
        return len(self.keypoints)

    @property
    def num_outputs(self) -> int:
        return 2 * len(self.keypoints)

    def coordinate_columns(self) -> list[str]:
        """Column names in file order: ``<name>_x, <name>_y`` for each keypoint."""
        return [f"{name}_{axis}" for name in self.keypoints for axis in ("x", "y")]

    def flip_permutation(self) -> np.ndarray:
        """Index array ``p`` such that ``flipped[i] = original[p[i]]`` after a mirror."""
        permutation = np.arange(self.num_keypoints)
        for a, b in self.flip_pairs:
            permutation[a], permutation[b] = b, a
        return permutation

    def index(self, name: str) -> int:
        return self.keypoints.index(name)

    def validate(self) -> None:
        """Raise ``ValueError`` listing every inconsistency: duplicate names, indices out
        of range, a keypoint in two flip pairs or paired with itself, a degenerate
        normalising pair. It cannot see a pair of points on the same side of the face;
        the tests check that against a drawn symmetric face.
        """
        problems = []
        k = self.num_keypoints
        twice = sorted(name for name, n in Counter(self.keypoints).items() if n > 1)
        if twice:
            problems.append(f"duplicate keypoint names {twice}")
        paired = [i for pair in self.flip_pairs for i in pair]
        if any(not 0 <= i < k for i in paired):
            problems.append(f"flip pair index out of range 0..{k - 1}")
        if any(a == b for a, b in self.flip_pairs):
            problems.append("a keypoint is flip-paired with itself")
        if len(set(paired)) != len(paired):
            twice = sorted(i for i, n in Counter(paired).items() if n > 1)
            problems.append(f"keypoints {twice} are in more than one flip pair")
        a, b = self.normalising_pair
        if a == b or not (0 <= a < k and 0 <= b < k):
            problems.append(f"normalising pair {self.normalising_pair} is not two keypoints")
        for group, indices in self.groups.items():
            if any(not 0 <= i < k for i in indices):
                problems.append(f"group {group!r} has an index out of range")
        for line in self.polylines:
            if len(line) < 2 or any(not 0 <= i < k for i in line):
                problems.append(f"polyline {line} is too short or out of range")
        if problems:
            raise ValueError(f"keypoint scheme {self.name!r}: " + "; ".join(problems))


def _pairs_by_name(keypoints: tuple[str, ...]) -> tuple[tuple[int, int], ...]:
    """Pair every ``left_*`` keypoint with its ``right_*`` twin."""
    pairs = []
    for i, name in enumerate(keypoints):
        if name.startswith("left_"):
            twin = "right_" + name[len("left_") :]
            pairs.append((i, keypoints.index(twin)))
        elif "_left_" in name:
            pairs.append((i, keypoints.index(name.replace("_left_", "_right_"))))
    return tuple(pairs)


def _numbered(prefix: str, count: int) -> tuple[str, ...]:
    """``prefix_0 … prefix_<count-1>``, zero-padded so that names sort in index order."""
    width = len(str(count - 1))
    return tuple(f"{prefix}_{i:0{width}d}" for i in range(count))


def _run(first: int, last: int, closed: bool = False) -> tuple[int, ...]:
    """The indices ``first..last`` inclusive; a closed run ends where it began."""
    indices = tuple(range(first, last + 1))
    return indices + (first,) if closed else indices


# The Kaggle Facial Keypoints Detection order, exactly as the columns of training.csv.
_KAGGLE15_NAMES = (
    "left_eye_center",
    "right_eye_center",
    "left_eye_inner_corner",
    "left_eye_outer_corner",
    "right_eye_inner_corner",
    "right_eye_outer_corner",
    "left_eyebrow_inner_end",
    "left_eyebrow_outer_end",
    "right_eyebrow_inner_end",
    "right_eyebrow_outer_end",
    "nose_tip",
    "mouth_left_corner",
    "mouth_right_corner",
    "mouth_center_top_lip",
    "mouth_center_bottom_lip",
)

KAGGLE15 = KeypointScheme(
    name="kaggle15",
    keypoints=_KAGGLE15_NAMES,
    flip_pairs=_pairs_by_name(_KAGGLE15_NAMES),
    normalising_pair=(0, 1),  # eye centres: inter-pupil distance
    groups={
        "eyes": (0, 1, 2, 3, 4, 5),
        "brows": (6, 7, 8, 9),
        "nose": (10,),
        "mouth": (11, 12, 13, 14),
    },
)

# In the real Kaggle data about 70% of rows keep only these four keypoints.
KAGGLE15_SPARSE_KEYPOINTS = (
    "left_eye_center",
    "right_eye_center",
    "nose_tip",
    "mouth_center_bottom_lip",
)


# The 300-W / iBUG 68-point markup, 0-based. Image-left to image-right, "right" and
# "left" being the subject's sides (see the module docstring):
#   0-16  jaw, from the ear on the image's left down the chin to the other ear
#   17-21 right brow, outer end to inner end;  22-26 left brow, inner end to outer end
#   27-30 nose bridge, top to tip;  31-35 lower nose, image-left to image-right
#   36-41 right eye, 36 the outer corner, then clockwise on screen (37-38 upper lid,
#         39 inner corner, 40-41 lower lid);  42-47 left eye, 42 the inner corner,
#         45 the outer corner, also clockwise
#   48-59 outer lips, clockwise from the corner on the image's left (48; 54 the other
#         corner);  60-67 inner lips, clockwise from 60 (64 the other corner)
_IBUG68_NAMES = (
    _numbered("jaw", 17)
    + _numbered("right_brow", 5)
    + _numbered("left_brow", 5)
    + _numbered("nose_bridge", 4)
    + _numbered("nose_lower", 5)
    + _numbered("right_eye", 6)
    + _numbered("left_eye", 6)
    + _numbered("mouth_outer", 12)
    + _numbered("mouth_inner", 8)
)

# The mirror mapping published with the data's users, e.g. HRNet's facial landmark code
# (MATCHED_PARTS["300W"], 1-based there) and mmpose's 300w dataset ``swap`` entries.
# Points on the face's midline (chin 8, nose 27-30 and 33, lips 51, 57, 62, 66) map to
# themselves and are not listed.
_IBUG68_FLIP_PAIRS = (
    # jaw
    *((i, 16 - i) for i in range(8)),
    # brows: outer ends 17, 26 ... inner ends 21, 22
    *((17 + i, 26 - i) for i in range(5)),
    # lower nose
    *((31, 35), (32, 34)),
    # eyes: outer corners 36, 45; inner corners 39, 42
    *((36, 45), (37, 44), (38, 43), (39, 42), (40, 47), (41, 46)),
    # outer lips, then inner lips
    *((48, 54), (49, 53), (50, 52), (55, 59), (56, 58)),
    *((60, 64), (61, 63), (65, 67)),
)

IBUG68 = KeypointScheme(
    name="ibug68",
    keypoints=_IBUG68_NAMES,
    flip_pairs=_IBUG68_FLIP_PAIRS,
    normalising_pair=(36, 45),  # outer eye corners: 300-W's inter-ocular distance
    groups={
        "jaw": _run(0, 16),
        "brows": _run(17, 26),
        "nose": _run(27, 35),
        "eyes": _run(36, 47),
        "mouth": _run(48, 67),
    },
    polylines=(
        _run(0, 16),  # jaw
        _run(17, 21),  # right brow
        _run(22, 26),  # left brow
        _run(27, 30),  # nose bridge
        _run(31, 35),  # lower nose
        _run(36, 41, closed=True),  # right eye
        _run(42, 47, closed=True),  # left eye
        _run(48, 59, closed=True),  # outer lips
        _run(60, 67, closed=True),  # inner lips
    ),
)

# WFLW's 98 points, 0-based, sides as above:
#   0-32  face contour, from the image's left round the chin to the image's right
#   33-41 right brow: 33-37 upper edge outer to inner, 38-41 lower edge inner to outer
#   42-50 left brow: 42-46 upper edge inner to outer, 47-50 lower edge outer to inner
#         (each brow is a closed outline, clockwise on screen)
#   51-54 nose bridge, top to tip;  55-59 lower nose, image-left to image-right
#   60-67 right eye, 60 the outer corner, 64 the inner, clockwise on screen;
#   68-75 left eye, 68 the inner corner, 72 the outer, clockwise
#   76-87 outer lips, clockwise from the corner on the image's left (76; 82 the other)
#   88-95 inner lips, clockwise from 88 (92 the other corner);  96, 97 the pupils
_WFLW98_NAMES = (
    _numbered("contour", 33)
    + _numbered("right_brow", 9)
    + _numbered("left_brow", 9)
    + _numbered("nose_bridge", 4)
    + _numbered("nose_lower", 5)
    + _numbered("right_eye", 8)
    + _numbered("left_eye", 8)
    + _numbered("mouth_outer", 12)
    + _numbered("mouth_inner", 8)
    + ("right_pupil", "left_pupil")
)

# As published in HRNet's facial landmark code (MATCHED_PARTS["WFLW"], 0-based) and in
# mmpose's wflw dataset ``swap`` entries. Midline points (chin 16, nose 51-54 and 57,
# lips 79, 85, 90, 94) map to themselves and are not listed.
_WFLW98_FLIP_PAIRS = (
    # contour
    *((i, 32 - i) for i in range(16)),
    # brows: upper edges (outer ends 33, 46), then lower edges (inner ends 38, 50)
    *((33, 46), (34, 45), (35, 44), (36, 43), (37, 42)),
    *((38, 50), (39, 49), (40, 48), (41, 47)),
    # lower nose
    *((55, 59), (56, 58)),
    # eyes: outer corners 60, 72; inner corners 64, 68
    *((60, 72), (61, 71), (62, 70), (63, 69), (64, 68), (65, 75), (66, 74), (67, 73)),
    # outer lips, inner lips, pupils
    *((76, 82), (77, 81), (78, 80), (87, 83), (86, 84)),
    *((88, 92), (89, 91), (95, 93)),
    (96, 97),
)

WFLW98 = KeypointScheme(
    name="wflw98",
    keypoints=_WFLW98_NAMES,
    flip_pairs=_WFLW98_FLIP_PAIRS,
    normalising_pair=(60, 72),  # outer eye corners: WFLW's inter-ocular distance
    groups={
        "contour": _run(0, 32),
        "brows": _run(33, 50),
        "nose": _run(51, 59),
        "eyes": _run(60, 75),
        "mouth": _run(76, 95),
        "pupils": (96, 97),
    },
    polylines=(
        _run(0, 32),  # contour
        _run(33, 41, closed=True),  # right brow
        _run(42, 50, closed=True),  # left brow
        _run(51, 54),  # nose bridge
        _run(55, 59),  # lower nose
        _run(60, 67, closed=True),  # right eye
        _run(68, 75, closed=True),  # left eye
        _run(76, 87, closed=True),  # outer lips
        _run(88, 95, closed=True),  # inner lips
    ),
)

# WFLW's six attribute flags, in the order of its annotation files (after the box);
# each names a test subset on which papers report NME.
WFLW_ATTRIBUTES = ("pose", "expression", "illumination", "make-up", "occlusion", "blur")

SCHEMES: dict[str, KeypointScheme] = {scheme.name: scheme for scheme in (KAGGLE15, IBUG68, WFLW98)}


def get_scheme(name: str) -> KeypointScheme:
    """Look a scheme up by name; unknown names fail with the list of known ones."""
    try:
        return SCHEMES[name]
    except KeyError:
        known = ", ".join(sorted(SCHEMES))
        raise ValueError(f"unknown keypoint scheme {name!r}; known: {known}") from None
