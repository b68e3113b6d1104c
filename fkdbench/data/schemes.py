"""Keypoint schemes: the one place that names keypoints, their order and their symmetry.

Coordinates everywhere in fkdbench are pixels of the image, x to the right and y down,
with the centre of pixel column ``i`` at ``x = i`` (the Kaggle convention). A horizontal
flip of an image ``W`` pixels wide therefore maps ``x`` to ``W - 1 - x``.

Kaggle's names follow the *subject's* side: ``left_eye_center`` is the subject's left
eye, which appears on the image's right (larger x). A flip must swap every left/right
pair, otherwise the flipped label says "left" for a point that now lies on the left of
the image but belongs to the subject's right.
"""

from __future__ import annotations

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

SCHEMES: dict[str, KeypointScheme] = {KAGGLE15.name: KAGGLE15}


def get_scheme(name: str) -> KeypointScheme:
    """Look a scheme up by name; unknown names fail with the list of known ones."""
    try:
        return SCHEMES[name]
    except KeyError:
        known = ", ".join(sorted(SCHEMES))
        raise ValueError(f"unknown keypoint scheme {name!r}; known: {known}") from None
