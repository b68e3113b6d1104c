"""The C allocator of the process: keep freed memory for the next batch.

glibc's malloc serves every block above its mmap threshold (128 KiB, raised at run time
to at most 32 MiB) with a fresh ``mmap`` and hands it back with ``munmap`` when freed, and
it trims the top of its heap once 128 KiB there are free. A training step frees its
activations and gradients and allocates the same sizes again at the next batch, so every
step page-faults them back in, zero-filled by the kernel. Measured on cnn-manual (batch
64, 2 threads, channels-last, 40 steps): 1.4 million minor page faults and about a third
of the CPU time in the kernel. With mmap off and the trim threshold at 1 GiB the faults
drop to ~13 thousand, the kernel time to ~0, and the images/s rise (numbers in
:mod:`fkdbench.train.loop`).

What it costs: memory a run freed stays in its process (up to the 1 GiB above the peak
that the trim threshold allows), which a training process reuses at the next batch
anyway; torch's aligned blocks settle there after a few batches. Peak resident memory
was 10-20% higher in those runs (cnn-manual 1.46-1.71 GB against 1.36-1.43 GB). The
numbers a run computes are the same bytes: an allocator hands out memory, it does not
change arithmetic.

It is process-wide and cannot be undone exactly (glibc stops adapting its mmap threshold
once one is set). So the bench and export set it too: timed alone or after a training in
the same process (``reproduce``), a backend runs under the same allocator, and every
record's environment says which one (:func:`allocator_description`). In one bench of
cnn-manual and mobilenetv2 it made PyTorch eager 1.71x and 1.88x faster at batch 32
(p=0.008 each) and left ONNX Runtime, OpenVINO and ExecuTorch within noise.

A process whose user tunes malloc already (``GLIBC_TUNABLES``, ``MALLOC_MMAP_MAX_``,
``MALLOC_TRIM_THRESHOLD_``) is left alone, and so is any C library other than glibc.
"""

from __future__ import annotations

import ctypes
import os
import platform

# mallopt(3) parameter numbers, from glibc's <malloc.h>.
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
TRIM_THRESHOLD_BYTES = 1 << 30
USER_TUNING_VARIABLES = ("GLIBC_TUNABLES", "MALLOC_MMAP_MAX_", "MALLOC_TRIM_THRESHOLD_")
KEPT = f"glibc malloc: no mmap blocks, heap trimmed past {TRIM_THRESHOLD_BYTES >> 30} GiB free"

DEFAULT = "the C library's default"

_described: str | None = None  # what keep_freed_memory did in this process


def keep_freed_memory() -> str:
    """Make this process's malloc keep freed memory (once; later calls only report), and
    say what the allocator now is. Training, pretraining and the bench call it before
    their first tensor, so a bench times the same way alone or after a training in the
    same process (``reproduce``)."""
    global _described
    if _described is None:
        _described = _configure()
    return _described


def allocator_description() -> str:
    """What this process's allocator is, for every record's environment block."""
    return _described or DEFAULT


def glibc_malloc() -> bool:
    """Whether this process's malloc is glibc's, the one whose settings this module sets."""
    return platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"


def _configure() -> str:
    tuned_by_user = [name for name in USER_TUNING_VARIABLES if name in os.environ]
    if tuned_by_user:
        return f"left as the user set it ({', '.join(tuned_by_user)})"
    if not glibc_malloc():
        return f"{DEFAULT} (not glibc)"
    libc = ctypes.CDLL(None)  # the process's own symbols: glibc's mallopt is among them
    refused = [
        name
        for name, parameter, value in (
            ("M_TRIM_THRESHOLD", _M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES),
            ("M_MMAP_MAX", _M_MMAP_MAX, 0),
        )
        if libc.mallopt(parameter, value) != 1  # mallopt returns 1 on success
    ]
    if refused:
        return f"glibc malloc, mallopt refused {' and '.join(refused)}"
    return KEPT
