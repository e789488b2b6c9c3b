"""Where data lives: a local directory, or a directory of an object store or HDFS given as a
URI (`s3a://bucket/prefix`, `gs://...`, `abfss://...`, `hdfs://...`).

A local one is a `pathlib.Path`; a URI is a `upath.UPath` (fsspec), which offers the same
methods (`/`, `glob`, `stat`, `open`), so the code that lists the landing or checks a table
does not care which. Spark gets a URI for either, `deltalake` too.
"""

from __future__ import annotations

import os
import posixpath
from pathlib import Path

from upath import UPath


def location(text: str) -> Path:
    """`text` as a path: a `UPath` if it has a scheme, else a local absolute `Path`."""
    if "://" in text:
        return UPath(text)
    return Path(text).absolute()


def is_local(path: Path) -> bool:
    return not isinstance(path, UPath) or path.protocol in ("", "file", "local")


def uri(path: Path) -> str:
    """What Spark and `deltalake` get: a local path as `file://` (a bare path would resolve
    against Hadoop's default file system, HDFS on YARN; not `Path.as_uri()`, as Hadoop does not
    decode its %-escapes), a remote one as its URI."""
    if is_local(path):
        return f"file://{Path(path).absolute()}"
    return str(path)


def delta_path(path: Path) -> str:
    """What `deltalake` gets: a local path as is, a remote one as its URI."""
    return str(Path(path).absolute()) if is_local(path) else str(path)


def join(root: Path, relative: str) -> Path:
    """`relative` under `root`; refuses anything that would escape it."""
    if is_local(root):
        base = Path(root).resolve()
        target = (base / relative).resolve()
        if not target.is_relative_to(base):
            raise ValueError(f"{relative!r} escapes the data directory {base}")
        return target
    normal = posixpath.normpath(relative)
    if normal.startswith("..") or os.path.isabs(normal):
        raise ValueError(f"{relative!r} escapes the data directory {root}")
    return root / normal
