"""Setting up a pool worker process: the pixel limit, the HEIF and AVIF decoders, and a
lower CPU priority. ``configure_worker`` is the pool's initializer."""

from __future__ import annotations

import importlib
import multiprocessing
import os
import warnings

from PIL import Image, ImageFile, features

# Pool workers run at this niceness (0 is normal, 19 the lowest priority).
WORKER_NICENESS = 10


def configure_worker(max_pixels: int) -> None:
    """Pool initializer: set the pixel limit and register the HEIF and AVIF decoders.
    In a pool worker process, also lower its CPU priority.

    Safe to call more than once.
    """
    # Imported here, not at the top: the server process imports this module but never
    # decodes, and the HEIF plugin and pypdf (imported likewise, in pdf.py) would add
    # some 20 MiB to it.
    import pillow_heif

    Image.MAX_IMAGE_PIXELS = max_pixels
    # A truncated file must fail rather than give a half-grey thumbnail.
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    warnings.simplefilter("error", Image.DecompressionBombWarning)
    pillow_heif.register_heif_opener()
    if features.check_module("avif"):
        importlib.import_module("PIL.AvifImagePlugin")  # registers itself on import
    else:
        register_avif = getattr(pillow_heif, "register_avif_opener", None)
        if register_avif is not None:
            register_avif()
    if multiprocessing.parent_process() is not None:
        _lower_priority()


def _lower_priority() -> None:
    """Decoding is batch work: when the cores are busy, the server's event loop should run
    first, or every request waits behind a decode (S7 in bench/README.md)."""
    try:
        current = os.getpriority(os.PRIO_PROCESS, 0)
        if current < WORKER_NICENESS:
            os.setpriority(os.PRIO_PROCESS, 0, WORKER_NICENESS)
    except OSError:
        pass  # not allowed here: run at the same priority
