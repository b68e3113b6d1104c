"""Per-frame stage timers of the video pipeline, with an injectable clock (pyperf's habit).

A frame goes through :data:`STAGES` in order: ``decode`` (the next picture out of the
container, as gray), ``detect`` (the face detector, on the frames that run it), ``crop``
(choosing the crop and cutting it), ``infer`` (the keypoint model and the mapping back),
``draw`` (the overlay) and ``encode`` (the overlay into the output video). Every frame
gets one sample per stage, 0.0 where the stage did not run (``detect`` on tracked
frames, ``draw`` and ``encode`` without an output video), so the lists stay aligned.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator

STAGES = ("decode", "detect", "crop", "infer", "draw", "encode")
# The stages from a decoded frame to a drawn overlay: FPS counts these (encode apart,
# since what a camera application does with its overlay is its own business).
PIPELINE_STAGES = ("decode", "detect", "crop", "infer", "draw")

Clock = Callable[[], float]


class StageClock:
    """Seconds spent in each stage, frame by frame."""

    def __init__(self, clock: Clock = time.perf_counter) -> None:
        self._clock = clock
        self._current = dict.fromkeys(STAGES, 0.0)
        self.samples: dict[str, list[float]] = {stage: [] for stage in STAGES}

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Time a block as (part of) stage ``name`` of the current frame."""
        if name not in self._current:
            raise ValueError(f"unknown stage {name!r}; known: {', '.join(STAGES)}")
        started = self._clock()
        try:
            yield
        finally:
            self._current[name] += self._clock() - started

    def end_frame(self) -> None:
        """Close the current frame: one sample per stage."""
        for name, seconds in self._current.items():
            self.samples[name].append(seconds)
        self._current = dict.fromkeys(STAGES, 0.0)

    def discard_frame(self) -> None:
        """Forget what the current frame has so far (the end of the stream: a decode
        that found no frame is no frame)."""
        self._current = dict.fromkeys(STAGES, 0.0)


def pipeline_seconds(samples: dict[str, list[float]]) -> list[float]:
    """Per frame: seconds from decode to drawn overlay (the stages FPS counts)."""
    columns = [samples[stage] for stage in PIPELINE_STAGES]
    return [sum(values) for values in zip(*columns, strict=True)]
