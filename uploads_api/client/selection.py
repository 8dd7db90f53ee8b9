"""Which files a batch uploads: paths given, folders walked, globs applied."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path


@dataclass
class Selection:
    files: list[Path] = field(default_factory=list)
    # Not entered without ``recursive``; not regular files (sockets, broken links, ...).
    skipped_dirs: list[Path] = field(default_factory=list)
    not_files: list[Path] = field(default_factory=list)


def _matches(relative: str, patterns: Sequence[str]) -> bool:
    """A pattern with a ``/`` is matched against the path below the folder given, one
    without against the name alone, as in .gitignore. ``*`` also matches ``/``."""
    name = relative.rsplit("/", 1)[-1]
    return any(fnmatchcase(relative if "/" in p else name, p) for p in patterns)


def select(
    paths: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
    *,
    recursive: bool = False,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
) -> Selection:
    """Files under ``paths``, in order, each once. A folder gives its files (and, with
    ``recursive``, its sub-folders' files; symbolic links to folders are not followed).
    A file is kept when it matches an ``include`` pattern (or there are none) and no
    ``exclude`` pattern; an excluded folder is not entered. ``FileNotFoundError`` for a
    path that does not exist."""
    if isinstance(paths, str | os.PathLike):
        paths = [paths]
    roots = [Path(p) for p in paths]
    for root in roots:
        if not root.exists() and not root.is_symlink():
            raise FileNotFoundError(f"{root}: no such file or folder")
    selection = Selection()
    seen: set[str] = set()

    def consider(path: Path, relative: str, real_folder: str | None = None) -> None:
        """``real_folder``: the resolved folder ``path`` is a name in, when known."""
        if not path.is_file():
            selection.not_files.append(path)
            return
        if include and not _matches(relative, include):
            return
        if _matches(relative, exclude):
            return
        # Resolving each file costs a system call per path component; within a resolved
        # folder, only a link needs it.
        if real_folder is None or path.is_symlink():
            key = os.path.realpath(path)
        else:
            key = os.path.join(real_folder, path.name)
        if key not in seen:
            seen.add(key)
            selection.files.append(path)

    for root in roots:
        if not root.is_dir():
            consider(root, root.name)
            continue
        for folder, dirs, names in os.walk(root):
            here = Path(folder)
            real_here = os.path.realpath(folder)
            below = here.relative_to(root).as_posix()
            prefix = "" if below == "." else below + "/"
            if not recursive:
                selection.skipped_dirs += [here / d for d in sorted(dirs)]
                dirs.clear()
            else:
                dirs[:] = sorted(d for d in dirs if not _matches(prefix + d, exclude))
            for name in sorted(names):
                consider(here / name, prefix + name, real_here)
    return selection


def collect_files(
    paths: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
    *,
    recursive: bool = False,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
) -> list[Path]:
    """The files ``select`` finds, as a list ready for ``upload_many``."""
    return select(paths, recursive=recursive, include=include, exclude=exclude).files
