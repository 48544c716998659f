"""The one file layout of the compile cache, read so that no file can hang,
exhaust memory or crash graphc.

Every file graphc keeps in its cache directory — a compiled graph
``<key>.gcc`` (``cache.py``) and a runtime-library object ``rt-<key>.o``
(``backend/llvm/rtlib.py``) — is::

    magic (8 bytes) | header length n (8 bytes, little-endian) | SHA-256 of the header (32)
    | header (n bytes of JSON: a dict whose "blobs" lists [size, SHA-256] per blob) | blobs

:func:`read` opens only a regular file (``O_NOFOLLOW | O_NONBLOCK``, then
``fstat``: a symlink, FIFO, device or directory is refused without reading
from it), bounds the header length by the file's size and
:data:`MAX_HEADER`, checks that the blob sizes account for the file's size
exactly before reading them, reads exactly those bytes and checks every
digest. Anything else raises :class:`BadEntry`, whose message says what was
wrong; the caller discards the file (:func:`discard`) and rebuilds it.
:func:`write` writes a temporary file and renames it into place (atomic).

This module imports nothing from graphc, so both the compile cache and the
runtime library use it without adding an import between them.
"""
from __future__ import annotations

import errno
import hashlib
import json
import os
import stat
import tempfile

PREFIX = 48                      # magic, header length, header digest
MAX_HEADER = 16 << 20            # a header is JSON metadata: kilobytes; refuse more than this
MAX_FILE = 4 << 30               # refuse (and do not write) files larger than this
_FLAGS = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | \
    getattr(os, "O_CLOEXEC", 0)


def cache_dir() -> str | None:
    """The on-disk cache directory (``GRAPHC_CACHE_DIR``; default
    ``$XDG_CACHE_HOME/graphc`` or ``~/.cache/graphc``), or None when disabled
    (``GRAPHC_CACHE_DIR=""`` or ``GRAPHC_CACHE=0``)."""
    if os.environ.get("GRAPHC_CACHE", "1") == "0":
        return None
    d = os.environ.get("GRAPHC_CACHE_DIR")
    if d is not None:
        return d or None
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "graphc")


class BadEntry(Exception):
    """A cache file that must not be used (the message says why)."""


def open_regular(path: str) -> tuple[int, int]:
    """(fd, size) of ``path`` opened for reading if it is a regular file.
    Raises FileNotFoundError when there is nothing there, BadEntry for a
    symlink, FIFO, device or directory (never blocking on one), OSError
    when it cannot be opened (a socket, no permission)."""
    try:
        fd = os.open(path, _FLAGS)
    except OSError as e:            # ELOOP: a symlink (O_NOFOLLOW); others (ENXIO, EACCES) go up
        if e.errno == errno.ELOOP or (not isinstance(e, FileNotFoundError)
                                      and os.path.islink(path)):
            raise BadEntry("a symbolic link, not a regular file") from None
        raise
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise BadEntry(f"{_kind(st.st_mode)}, not a regular file")
        if st.st_size > MAX_FILE:
            raise BadEntry(f"{st.st_size} bytes, more than the {MAX_FILE} a cache file may have")
    except BaseException:
        os.close(fd)
        raise
    return fd, st.st_size


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket"), (stat.S_ISLNK, "a symbolic link")):
        if test(mode):
            return name
    return f"mode {oct(mode)}"


def read_exact(fd: int, n: int) -> bytes:
    """Exactly ``n`` bytes from ``fd`` (BadEntry if the file ends first)."""
    chunks, left = [], n
    while left > 0:
        b = os.read(fd, min(left, 1 << 24))
        if not b:
            raise BadEntry(f"truncated ({n - left} of {n} bytes)")
        chunks.append(b)
        left -= len(b)
    return b"".join(chunks)


def _header(fd: int, size: int, magic: bytes) -> tuple[dict, int]:
    if size < PREFIX:
        raise BadEntry(f"truncated ({size} bytes, shorter than the {PREFIX}-byte prefix)")
    head = read_exact(fd, PREFIX)
    if head[:8] != magic:
        raise BadEntry("bad magic (not a graphc cache file of this kind)")
    n = int.from_bytes(head[8:16], "little")
    if n > MAX_HEADER or PREFIX + n > size:
        raise BadEntry(f"header length {n} is impossible (file has {size} bytes, "
                       f"a header at most {MAX_HEADER})")
    hb = read_exact(fd, n)
    if hashlib.sha256(hb).digest() != head[16:48]:
        raise BadEntry("header corrupted (digest mismatch)")
    try:
        header = json.loads(hb)
    except (ValueError, RecursionError):
        raise BadEntry("header is not JSON") from None
    if not isinstance(header, dict):
        raise BadEntry("header is not a JSON object")
    blobs = header.get("blobs")
    if not isinstance(blobs, list) or not all(
            isinstance(b, list) and len(b) == 2 and type(b[0]) is int and b[0] >= 0
            and isinstance(b[1], str) for b in blobs):
        raise BadEntry("header has no valid blob list")
    total = sum(s for s, _ in blobs)
    if PREFIX + n + total != size:
        raise BadEntry(f"blob sizes ({total} bytes) do not match the file "
                       f"({size - PREFIX - n} bytes after the header)")
    return header, PREFIX + n


def read_header(path: str, magic: bytes) -> dict:
    """The checked header of the file at ``path``, without reading its blobs."""
    fd, size = open_regular(path)
    try:
        return _header(fd, size, magic)[0]
    finally:
        os.close(fd)


def read(path: str, magic: bytes) -> tuple[dict, list]:
    """(header, blobs) of the file at ``path``, every size and digest checked."""
    fd, size = open_regular(path)
    try:
        header, _ = _header(fd, size, magic)
        blobs = []
        for s, sha in header["blobs"]:
            b = read_exact(fd, s)
            if hashlib.sha256(b).hexdigest() != sha:
                raise BadEntry("blob corrupted (digest mismatch)")
            blobs.append(b)
        return header, blobs
    finally:
        os.close(fd)


def write(directory: str, path: str, magic: bytes, header: dict, blobs: list) -> bool:
    """Write ``header`` (its "blobs" list is filled in here) and ``blobs`` to
    ``path`` atomically (a temporary ``.tmp-*`` file in ``directory``,
    renamed into place). Returns False if it could not be written."""
    header = dict(header, blobs=[[len(b), hashlib.sha256(b).hexdigest()] for b in blobs])
    hb = json.dumps(header, sort_keys=True).encode()
    if len(hb) > MAX_HEADER or PREFIX + len(hb) + sum(map(len, blobs)) > MAX_FILE:
        return False
    tmp = None
    try:
        os.makedirs(directory, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=os.path.splitext(path)[1],
                                   dir=directory)
        with os.fdopen(fd, "wb") as fh:
            fh.write(magic)
            fh.write(len(hb).to_bytes(8, "little"))
            fh.write(hashlib.sha256(hb).digest())
            fh.write(hb)
            for b in blobs:
                fh.write(b)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)            # atomic: readers see all or nothing
        return True
    except OSError:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass
        return False


def discard(path: str) -> None:
    """Remove a bad cache file (a symlink itself, not its target; an empty
    directory). Anything that cannot be removed stays: it is refused again
    on every read, and writing over it fails quietly."""
    try:
        os.unlink(path)
    except IsADirectoryError:
        try:
            os.rmdir(path)
        except OSError:
            pass
    except OSError:
        pass
