"""Media work, one module per kind of file: what the process pool runs on uploaded bytes.

Decoding is synchronous, CPU-bound work on untrusted bytes, so the functions in
``images``, ``exif``, ``video``, ``audio``, ``pdf`` and ``placeholders`` run only in the
pool's worker processes (``tasks/pool.py``, set up by ``worker.configure_worker``, each
call under ``worker.limited``), never in the server process: a decode then cannot block
the event loop, and a hostile file can at worst take down one worker. Their libraries
(PyAV, mutagen, pypdfium2) are imported inside the functions, so the server, which imports
these modules for their errors, never loads them. A new kind adds a module beside these.

Two modules are plain data, safe to import anywhere: ``formats`` (which sniffed types
reach a decoder) and ``outputs`` (thumbnail formats, their file extensions and the
``Thumbnail`` record; it imports nothing else from uploads_api, so db/ and api/ may use
it). This package's ``__init__`` imports nothing, so importing those pulls in no decoder.

Errors::

    ImageError          (images) the file cannot be decoded as an accepted image
    VideoError          (video)  not a readable video in an accepted container
    AudioError          (audio)  not readable audio; its tags or cover are unusable
    └── NoCover                  no embedded cover art: nothing to make thumbnails of
    DocumentError       (pdf)    the file cannot be read as a PDF
    └── EncryptedDocument        a password is needed to render it

All are permanent: the same file fails the same way again.

Anything else (a missing source file, a full disk) is a problem of the machine, not of
the file, and propagates unchanged so that the task can be retried.
"""
