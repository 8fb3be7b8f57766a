"""Walk a raw ECG archive (directory, .zip, .tar, .tar.gz) and hand out WFDB record units.

A unit is a header plus the signal files it names, read as bytes, so that the content hash and
the decoder see exactly the same input. Archives are read in place: nothing is unpacked to disk.
Members that try to leave the archive (`..`, absolute paths, links pointing outside) are not
read; they come out as `ArchiveProblem`s for the quarantine.
"""

from __future__ import annotations

import os
import posixpath
import tarfile
import zipfile
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from tasks.wfdb_header import HeaderError, header_text, parse_header

SIGNAL_SUFFIXES = (".dat", ".mat")
_SKIP_MEMORY = 4096


@dataclass(frozen=True)
class RecordUnit:
    """One WFDB record as found in the archive: header path (relative to the archive root)
    and the bytes of the header and each signal file it names."""

    header_path: str
    files: dict[str, bytes]
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def source_path(self) -> str:
        return self.header_path


@dataclass(frozen=True)
class ArchiveProblem:
    """An input that could not be turned into a record unit, with a stable reason code."""

    source_path: str
    reason: str
    detail: str


Item = RecordUnit | ArchiveProblem
# Called with a header path; None skips the header, a dict is attached to the unit as `extra`.
HeaderFilter = Callable[[str], dict[str, Any] | None]


def _unsafe(name: str) -> str | None:
    """Why a member name may not be read, or None when it stays inside the archive."""
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        return "absolute path"
    if ".." in PurePosixPath(name.replace("\\", "/")).parts:
        return "path climbs out with '..'"
    return None


def _sibling(header_path: str, name: str) -> str:
    return posixpath.normpath(posixpath.join(posixpath.dirname(header_path), name))


class _RandomAccess:
    """Grouping for archives that can read any member at any time (directories, zip)."""

    def __init__(self, names: list[str], read: Callable[[str], bytes], problems: list[ArchiveProblem]):
        self._names = names
        self._known = set(names)
        self._read = read
        self._problems = problems

    def read_member(self, name: str) -> bytes | None:
        return self._read(name) if name in self._known else None

    def names(self) -> list[str]:
        return list(self._names)

    def units(self, keep: HeaderFilter) -> Iterator[Item]:
        yield from self._problems
        for name in self._names:
            if not name.endswith(".hea"):
                continue
            extra = keep(name)
            if extra is None:
                continue
            try:
                raw = self._read(name)
                files = {posixpath.basename(name): raw}
                for sig in parse_header(header_text(raw)).file_names:
                    path = _sibling(name, sig)
                    if path not in self._known:
                        raise HeaderError("missing_signal_file", f"signal file {sig!r} not found")
                    files[sig] = self._read(path)
            except HeaderError as exc:
                yield ArchiveProblem(name, exc.reason, str(exc))
                continue
            except OSError as exc:
                yield ArchiveProblem(name, "unreadable_file", str(exc))
                continue
            yield RecordUnit(name, files, extra)


class DirectoryArchive(_RandomAccess):
    """A directory tree. Symbolic links are followed only while they stay inside the root."""

    def __init__(self, root: Path):
        self.root = root.resolve()
        names: list[str] = []
        problems: list[ArchiveProblem] = []
        for dirpath, dirnames, filenames in os.walk(self.root):
            dirnames.sort()
            for fn in sorted(filenames):
                full = Path(dirpath) / fn
                rel = full.relative_to(self.root).as_posix()
                if full.is_symlink() and not full.resolve().is_relative_to(self.root):
                    problems.append(
                        ArchiveProblem(rel, "link_outside_archive", f"link points to {full.readlink()}")
                    )
                    continue
                names.append(rel)
        super().__init__(names, lambda n: (self.root / n).read_bytes(), problems)


class ZipArchive(_RandomAccess):
    """A zip file, read member by member without extracting it."""

    def __init__(self, path: Path):
        self._zf = zipfile.ZipFile(path)
        names: list[str] = []
        problems: list[ArchiveProblem] = []
        for info in self._zf.infolist():
            if info.is_dir():
                continue
            why = _unsafe(info.filename)
            if why:
                problems.append(ArchiveProblem(info.filename, "unsafe_member_path", why))
            elif (info.external_attr >> 16) & 0o170000 == 0o120000:  # a symlink stored in the zip
                problems.append(ArchiveProblem(info.filename, "link_member", "symbolic link not followed"))
            else:
                names.append(info.filename)
        super().__init__(names, self._zf.read, problems)


class TarArchive:
    """A tar archive, plain or compressed, read strictly front to back (a .tar.gz cannot seek
    backwards cheaply). Files wait in a buffer until their header has all it names, so memory
    stays bounded by how far apart a record's members lie, not by the archive size."""

    def __init__(self, path: Path):
        self.path = path

    def read_member(self, wanted: str) -> bytes | None:
        """One member by name (a pass over the archive); used for small metadata files."""
        with tarfile.open(self.path, "r:*") as tf:
            for info in tf:
                if info.isfile() and info.name == wanted:
                    fh = tf.extractfile(info)
                    return fh.read() if fh else None
        return None

    def names(self) -> list[str]:
        with tarfile.open(self.path, "r:*") as tf:
            return [i.name for i in tf if i.isfile()]

    def units(self, keep: HeaderFilter) -> Iterator[Item]:
        pending: dict[str, tuple[dict[str, Any], list[str], dict[str, bytes]]] = {}
        spare: dict[str, bytes] = {}
        skipped: OrderedDict[str, None] = OrderedDict()  # recent files of skipped headers
        with tarfile.open(self.path, "r:*") as tf:
            for info in tf:
                name = info.name
                if info.isdir():
                    continue
                why = _unsafe(name)
                if why:
                    yield ArchiveProblem(name, "unsafe_member_path", why)
                    continue
                if info.issym() or info.islnk():
                    # symlink targets are relative to the member, hard links to the archive root
                    target = _sibling(name, info.linkname) if info.issym() else info.linkname
                    if _unsafe(info.linkname) or _unsafe(target):
                        yield ArchiveProblem(name, "link_outside_archive", f"link points to {info.linkname}")
                    else:
                        yield ArchiveProblem(name, "link_member", f"link to {info.linkname} not followed")
                    continue
                if not info.isfile():
                    continue
                if name.endswith(".hea"):
                    raw = _read_tar(tf, info)
                    extra = keep(name)
                    try:
                        needed = [_sibling(name, s) for s in parse_header(header_text(raw)).file_names]
                    except HeaderError as exc:
                        if extra is not None:
                            yield ArchiveProblem(name, exc.reason, str(exc))
                        continue
                    if extra is None:  # a header we skip: its files need no buffering
                        for p in needed:
                            spare.pop(p, None)
                            skipped[p] = None
                        while len(skipped) > _SKIP_MEMORY:
                            skipped.popitem(last=False)
                        continue
                    pending[name] = (extra, needed, {posixpath.basename(name): raw})
                elif name.endswith(SIGNAL_SUFFIXES) and name not in skipped:
                    spare[name] = _read_tar(tf, info)
                yield from self._complete(pending, spare)
        for name in pending:
            yield ArchiveProblem(name, "missing_signal_file", "signal file not found in the archive")

    @staticmethod
    def _complete(pending: dict, spare: dict[str, bytes]) -> Iterator[RecordUnit]:
        done = []
        for name, (extra, needed, got) in pending.items():
            if all(p in spare for p in needed):
                for p in needed:
                    got[posixpath.basename(p)] = spare[p]
                done.append(name)
                yield RecordUnit(name, got, extra)
        for name in done:
            for p in pending.pop(name)[1]:
                spare.pop(p, None)


def _read_tar(tf: tarfile.TarFile, info: tarfile.TarInfo) -> bytes:
    fh = tf.extractfile(info)
    return fh.read() if fh is not None else b""


def open_archive(path: Path) -> DirectoryArchive | ZipArchive | TarArchive:
    """The reader for an archive path: a directory, a zip file or a (compressed) tar file."""
    if path.is_dir():
        return DirectoryArchive(path)
    if zipfile.is_zipfile(path):
        return ZipArchive(path)
    if tarfile.is_tarfile(path):
        return TarArchive(path)
    raise ValueError(f"{path} is not a directory, zip or tar archive")
