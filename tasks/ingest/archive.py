"""Walk a raw ECG archive (directory, .zip, .tar, .tar.gz) and account for every file in it.

Each file ends as exactly one of three items:
- a `RecordUnit`: a WFDB header plus the signal files it names, or one single-file hospital export
  (GE MUSE, Philips, HL7 aECG, DICOM, SCP-ECG, EDF) whose format is chosen by its content, read as
  bytes so that the content hash and the decoder see the same input;
- a `Skipped` file that is no recording: documentation and indexes, a WFDB record's companion files
  (annotations), hidden system files, headers a database index leaves out; counted, not read;
- an `ArchiveProblem` for the quarantine: unknown content, a signal file without a header, a member
  over the size limits, a path that leaves the archive, a FIFO or device, a name that is not UTF-8.
Archives are read in place, nothing is unpacked to disk, and no member is read past the limits in
`ArchiveLimits` (a declared size is checked before any byte is read). An archive may also lie on
object storage (`s3://bucket/prefix`, `tasks.store.location`): a prefix is walked like a folder, a
zip is read by ranged GETs, a tar as one forward stream.
"""

from __future__ import annotations

import functools
import os
import posixpath
import stat
import tarfile
import zipfile
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from tasks.ingest import readers
from tasks.ingest.wfdb_header import HeaderError, header_text, parse_header
from tasks.settings import Settings
from tasks.store.location import Location, ObjectPath

SIGNAL_SUFFIXES = (".dat", ".mat")
_SKIP_MEMORY = 4096
_DOC_SUFFIXES = frozenset(
    {".csv", ".tsv", ".txt", ".md", ".rst", ".pdf", ".html", ".htm", ".json", ".xls", ".xlsx", ".doc"}
    | {".docx", ".rtf", ".png", ".jpg", ".jpeg", ".svg", ".parquet", ".yaml", ".yml", ".toml"}
)
_DOC_NAMES = frozenset({"records", "readme", "license", "licence", "annotators", "sha256sums", "md5sums"})


@dataclass(frozen=True)
class ArchiveLimits:
    """Bounds on what one member may cost before it is read: its size, and for a compressed zip
    member its expansion; directory depth; bytes of signal files buffered while a tar stream waits
    for their header."""

    max_member_bytes: int = 64 << 20
    max_compression_ratio: float = 200.0
    max_depth: int = 64
    max_buffered_bytes: int = 256 << 20

    @classmethod
    def from_settings(cls, settings: Settings) -> ArchiveLimits:
        return cls(
            max_member_bytes=settings.max_member_mb << 20,
            max_compression_ratio=settings.max_compression_ratio,
            max_depth=settings.max_archive_depth,
            max_buffered_bytes=settings.max_buffered_mb << 20,
        )


@dataclass(frozen=True)
class RecordUnit:
    """One recording as found in the archive: its path relative to the archive root (the WFDB
    header, or the export file itself), the bytes of every file it needs by base name (held, or
    `ArchiveFiles` read where they are needed), and its format (`wfdb` or a
    `tasks.ingest.readers.FORMATS` value)."""

    header_path: str
    files: Mapping[str, bytes]
    extra: dict[str, Any] = field(default_factory=dict)
    format: str = "wfdb"

    @property
    def source_path(self) -> str:
        return self.header_path

    @property
    def nbytes(self) -> int:
        if isinstance(self.files, ArchiveFiles):
            return self.files.nbytes
        return sum(len(b) for b in self.files.values())


class ArchiveFiles(Mapping[str, bytes]):
    """A record unit's files by base name, read from a directory or object-storage archive when
    first asked for, in the worker that decodes them: the walking process hands workers where the
    files are, not their bytes, so it neither reads, pickles nor pipes every record. Files already
    read (a WFDB header, which the walk parses) travel with it. A file read once is kept; one that
    grew past the member size limit since the walk, or can no longer be read, is a `HeaderError`
    (`too_large`, `unreadable_file`) for the quarantine."""

    def __init__(
        self,
        root: Location,
        members: dict[str, str],
        sizes: dict[str, int],
        max_bytes: int,
        loaded: dict[str, bytes],
    ) -> None:
        self._root, self._members, self._sizes, self._max = root, members, sizes, max_bytes
        self._loaded = dict(loaded)

    @property
    def nbytes(self) -> int:
        """The files' sizes as the walk saw them (nothing is read)."""
        return sum(self._sizes.values())

    def __getitem__(self, name: str) -> bytes:
        if name not in self._loaded:
            member = self._members[name]
            try:
                data = _read_member(self._root, member, self._max + 1)
            except OSError as exc:
                why = f"{member}: {type(exc).__name__}: {exc.strerror}"
                raise HeaderError("unreadable_file", why) from None
            if len(data) > self._max:
                raise HeaderError("too_large", f"{member} grew above the limit of {self._max} bytes")
            self._loaded[name] = data
        return self._loaded[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._members)

    def __len__(self) -> int:
        return len(self._members)


@dataclass(frozen=True)
class ArchiveProblem:
    """An input that could not be turned into a record unit, with a stable reason code."""

    source_path: str
    reason: str
    detail: str


@dataclass(frozen=True)
class Skipped:
    """A file that holds no recording to read: `kind` is documentation, record_companion, hidden
    or not_in_database."""

    source_path: str
    kind: str


Item = RecordUnit | ArchiveProblem | Skipped
# Called with a header path; None skips the header, a dict is attached to the unit as `extra`.
HeaderFilter = Callable[[str], dict[str, Any] | None]


def _unsafe(name: str) -> str | None:
    """Why a member name may not be read, or None when it stays inside the archive."""
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        return "absolute path"
    if ".." in PurePosixPath(name.replace("\\", "/")).parts:
        return "path climbs out with '..'"
    return None


def printable_name(name: str) -> str:
    """A file name as text that Parquet can hold: bytes that are not UTF-8 (kept by Python as
    surrogates) shown as escapes."""
    return os.fsencode(name).decode("utf-8", "backslashreplace")


def _sibling(header_path: str, name: str) -> str:
    return posixpath.normpath(posixpath.join(posixpath.dirname(header_path), name))


def _stem(name: str) -> str:
    base = posixpath.basename(name)
    return posixpath.join(
        posixpath.dirname(name), base.split(".", 1)[0] if not base.startswith(".") else base
    )


def _no_recording(name: str, headers: set[str]) -> str | None:
    """The `Skipped` kind of a file whose content no reader knows, or None when it should have
    been a recording (a quarantine case)."""
    base = posixpath.basename(name)
    if base.startswith(".") or name.startswith("__MACOSX/"):
        return "hidden"
    if _stem(name) + ".hea" in headers:
        return "record_companion"  # a WFDB record's annotations or unused signal files
    if posixpath.splitext(base)[1].lower() in _DOC_SUFFIXES or base.split(".")[0].lower() in _DOC_NAMES:
        return "documentation"
    return None


def _unreadable(name: str, size: int) -> ArchiveProblem:
    """The problem of a file no reader knows and that is no documentation or companion."""
    if size == 0:
        return ArchiveProblem(name, "empty_file", "file is empty")
    if name.endswith(SIGNAL_SUFFIXES):
        return ArchiveProblem(name, "missing_header", "signal file without a WFDB header naming it")
    return ArchiveProblem(
        name,
        "unknown_format",
        "content is none of the formats read (WFDB header, GE MUSE, Philips, HL7 aECG, DICOM, SCP-ECG, EDF)",
    )


def _single_file(name: str, data: bytes, headers: set[str]) -> Item:
    """A file that is not a WFDB header: a sniffed export, a skipped file, or a problem."""
    fmt = readers.sniff(data[: readers.SNIFF_BYTES])
    if fmt is not None:
        return RecordUnit(name, {posixpath.basename(name): data}, {}, fmt)
    kind = _no_recording(name, headers)
    return Skipped(name, kind) if kind else _unreadable(name, len(data))


class _RandomAccess:
    """Grouping for archives that can read any member at any time (directories, zip): the WFDB
    headers first, each with its signal files, then every other file on its own."""

    def __init__(
        self,
        names: dict[str, int],
        read: Callable[[str, int | None], bytes],
        problems: list[ArchiveProblem],
        limits: ArchiveLimits,
    ):
        self._sizes = names  # member → size in bytes
        self._read = read  # (member, at most n bytes or None for all) → bytes
        self._problems = problems
        self.limits = limits

    def read_member(self, name: str) -> bytes | None:
        return self._read(name, None) if name in self._sizes else None

    def names(self) -> list[str]:
        return list(self._sizes)

    def _check_size(self, name: str) -> None:
        size, limit = self._sizes[name], self.limits.max_member_bytes
        if size > limit:
            raise HeaderError("too_large", f"{name} holds {size} bytes, above the limit of {limit}")

    def _unit_files(self, members: dict[str, str], loaded: dict[str, bytes]) -> Mapping[str, bytes]:
        """A unit's files (base name → member), sizes already checked: read now, with those in
        `loaded` as they are; `ArchiveFiles` in archives whose workers read for themselves."""
        return {base: loaded[base] if base in loaded else self._read(m, None) for base, m in members.items()}

    def units(self, keep: HeaderFilter) -> Iterator[Item]:
        yield from self._problems
        headers = {n for n in self._sizes if n.endswith(".hea")}
        claimed: set[str] = set()
        for name in [n for n in self._sizes if n in headers]:
            extra = keep(name)
            if extra is None:
                yield Skipped(name, "not_in_database")
                continue
            try:
                self._check_size(name)
                raw = self._read(name, None)
                members = {posixpath.basename(name): name}
                for sig in parse_header(header_text(raw)).file_names:
                    path = _sibling(name, sig)
                    if path not in self._sizes:
                        raise HeaderError("missing_signal_file", f"signal file {sig!r} not found")
                    claimed.add(path)
                    self._check_size(path)
                    members[sig] = path
                files = self._unit_files(members, {posixpath.basename(name): raw})
            except HeaderError as exc:
                yield ArchiveProblem(name, exc.reason, str(exc))
                continue
            except OSError as exc:
                yield ArchiveProblem(name, "unreadable_file", f"{type(exc).__name__}: {exc.strerror}")
                continue
            yield RecordUnit(name, files, extra)
        for name in self._sizes:
            if name in headers or name in claimed:
                continue
            try:
                yield self._other(name, headers)
            except OSError as exc:
                yield ArchiveProblem(name, "unreadable_file", f"{type(exc).__name__}: {exc.strerror}")

    def _other(self, name: str, headers: set[str]) -> Item:
        size = self._sizes[name]
        fmt = readers.sniff(self._read(name, readers.SNIFF_BYTES)) if size else None
        if fmt is None:
            kind = _no_recording(name, headers)
            return Skipped(name, kind) if kind else _unreadable(name, size)
        if size > self.limits.max_member_bytes:
            return ArchiveProblem(
                name, "too_large", f"{size} bytes, above the limit of {self.limits.max_member_bytes}"
            )
        return RecordUnit(name, self._unit_files({posixpath.basename(name): name}, {}), {}, fmt)


def _read_member(root: Location, name: str, n: int | None) -> bytes:
    """The first `n` bytes (all when None) of the file `name` under `root`, a folder or an
    object-storage prefix: what the walk, sniffing or reading, and a worker's `ArchiveFiles` read,
    so that both see a member alike. An object opens as a seekable reader because that fetches
    any read, bounded or to the end, in one GET (after the HEAD every pyarrow reader sends), where
    a stream reads to the end in 256 KiB GETs and a buffered one fetches a megabyte to sniff."""
    with (root / name).open("rb") as fh:
        return fh.read(n)


class _WorkersRead(_RandomAccess):
    """A random-access archive at `root`, a folder or an object-storage prefix, whose members are
    read by `_read_member`; its units, when `workers_read`, carry `ArchiveFiles` (the workers can
    open `root / member` themselves) instead of bytes."""

    def __init__(
        self,
        root: Location,
        names: dict[str, int],
        problems: list[ArchiveProblem],
        limits: ArchiveLimits,
        workers_read: bool,
    ):
        super().__init__(names, functools.partial(_read_member, root), problems, limits)
        self.root, self.workers_read = root, workers_read

    def _unit_files(self, members: dict[str, str], loaded: dict[str, bytes]) -> Mapping[str, bytes]:
        if not self.workers_read:
            return super()._unit_files(members, loaded)
        sizes = {base: self._sizes[m] for base, m in members.items()}
        return ArchiveFiles(self.root, members, sizes, self.limits.max_member_bytes, loaded)


def _walk(root: Path, limits: ArchiveLimits) -> Iterator[tuple[str, os.stat_result | None, str | None]]:
    """(relative name, stat of the regular file, or None and why not) for every entry under
    `root`, depth first in name order, without recursion (a tree thousands of levels deep is a
    problem row, not a crash); links are followed only while they stay inside the root."""
    stack: list[tuple[Path, int]] = [(root, 0)]
    while stack:
        folder, depth = stack.pop()
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as exc:
            yield folder.relative_to(root).as_posix(), None, f"unreadable_file:{exc.strerror}"
            continue
        subfolders: list[tuple[Path, int]] = []
        for entry in entries:
            full = Path(entry.path)
            rel = full.relative_to(root).as_posix()
            try:
                st = full.lstat()
                if stat.S_ISLNK(st.st_mode):
                    if not full.resolve().is_relative_to(root):
                        yield rel, None, f"link_outside_archive:link points to {full.readlink()}"
                        continue
                    st = full.stat()
            except OSError as exc:
                yield rel, None, f"unreadable_file:{exc.strerror}"
                continue
            if stat.S_ISDIR(st.st_mode):
                if rel.endswith(".hea"):
                    yield rel, None, "not_regular_file:a folder named like a WFDB header"
                elif depth + 1 >= limits.max_depth:
                    yield rel, None, f"too_deep:folders nest deeper than {limits.max_depth} levels"
                else:
                    subfolders.append((full, depth + 1))
            elif stat.S_ISREG(st.st_mode):
                yield rel, st, None
            else:
                yield rel, None, "not_regular_file:a FIFO, socket or device, not read"
        stack.extend(reversed(subfolders))


class DirectoryArchive(_WorkersRead):
    """A directory tree. Only regular files are read; a FIFO, device or socket, a name that is
    not UTF-8 and a tree deeper than the limit become problems."""

    def __init__(self, root: Path, limits: ArchiveLimits, workers_read: bool = False):
        root = root.resolve()
        sizes: dict[str, int] = {}
        problems: list[ArchiveProblem] = []
        for rel, st, why in _walk(root, limits):
            name = printable_name(rel)
            if name != rel:
                problems.append(ArchiveProblem(name, "bad_file_name", "file name is not valid UTF-8"))
            elif why is not None:
                reason, _, detail = why.partition(":")
                problems.append(ArchiveProblem(name, reason, detail))
            elif st is not None:
                sizes[name] = st.st_size
        super().__init__(root, sizes, problems, limits, workers_read)


class ObjectArchive(_WorkersRead):
    """The objects under a prefix on object storage, read as a directory tree is: every object
    by its key below the prefix (there are no links, FIFOs or bytes that are not UTF-8)."""

    def __init__(self, root: ObjectPath, limits: ArchiveLimits, workers_read: bool = False):
        sizes: dict[str, int] = {}
        problems: list[ArchiveProblem] = []
        for info in root.files():
            name = info.path[len(root.key) + 1 :]
            why = _unsafe(name)
            if why:
                problems.append(ArchiveProblem(name, "unsafe_member_path", why))
            elif name.count("/") >= limits.max_depth:
                problems.append(
                    ArchiveProblem(name, "too_deep", f"folders nest deeper than {limits.max_depth} levels")
                )
            else:
                sizes[name] = info.size
        super().__init__(root, sizes, problems, limits, workers_read)


class ZipArchive(_RandomAccess):
    """A zip file, read member by member without extracting it; a member's declared size and
    compression ratio are checked before it is read (zipfile never returns more than declared)."""

    def __init__(self, path: Location, limits: ArchiveLimits):
        self._zf = zipfile.ZipFile(path.open("rb") if isinstance(path, ObjectPath) else path)
        sizes: dict[str, int] = {}
        problems: list[ArchiveProblem] = []
        for info in self._zf.infolist():
            name = info.filename
            if info.is_dir():
                continue
            why = _unsafe(name)
            if why:
                problems.append(ArchiveProblem(name, "unsafe_member_path", why))
            elif name in sizes:
                problems.append(ArchiveProblem(name, "duplicate_member", "a second member of the same name"))
            elif (info.external_attr >> 16) & 0o170000 == 0o120000:  # a symlink stored in the zip
                problems.append(ArchiveProblem(name, "link_member", "symbolic link not followed"))
            elif info.file_size > max(1 << 20, limits.max_compression_ratio * info.compress_size):
                problems.append(
                    ArchiveProblem(
                        name,
                        "compression_ratio",
                        f"expands {info.compress_size} to {info.file_size} bytes, "
                        f"above {limits.max_compression_ratio:g}x",
                    )
                )
            else:
                sizes[name] = info.file_size
        super().__init__(sizes, self._read_zip, problems, limits)

    def _read_zip(self, name: str, n: int | None) -> bytes:
        with self._zf.open(name) as fh:
            return fh.read(-1 if n is None else n)


class TarArchive:
    """A tar archive, plain or compressed, read strictly front to back (a .tar.gz cannot seek
    backwards cheaply). Signal files wait in a buffer until their header has all it names, up to
    `max_buffered_bytes`; every other file is decided as it passes."""

    def __init__(self, path: Location, limits: ArchiveLimits):
        self.path = path
        self.limits = limits

    def _open(self) -> tarfile.TarFile:
        """The archive opened for one pass (on object storage: one streamed GET)."""
        if isinstance(self.path, ObjectPath):
            return tarfile.open(fileobj=self.path.stream(), mode="r|*")
        return tarfile.open(self.path, "r:*")

    def read_member(self, wanted: str) -> bytes | None:
        """One member by name (a pass over the archive); used for small metadata files."""
        with self._open() as tf:
            for info in tf:
                if info.isfile() and info.name == wanted and info.size <= self.limits.max_member_bytes:
                    fh = tf.extractfile(info)
                    return fh.read() if fh else None
        return None

    def names(self) -> list[str]:
        with self._open() as tf:
            return [i.name for i in tf if i.isfile()]

    def units(self, keep: HeaderFilter) -> Iterator[Item]:
        pending: dict[str, tuple[dict[str, Any], list[str], dict[str, bytes]]] = {}
        spare = _Buffer()
        skipped: OrderedDict[str, None] = OrderedDict()  # recent files of skipped headers
        headers: set[str] = set()
        undecided: list[tuple[str, int]] = []  # unknown content, decided once all headers are known
        limit = self.limits.max_member_bytes
        with self._open() as tf:
            for info in tf:
                name = printable_name(info.name)
                if info.isdir():
                    continue
                why = _unsafe(name)
                if why:
                    yield ArchiveProblem(name, "unsafe_member_path", why)
                    continue
                if name != info.name:
                    yield ArchiveProblem(name, "bad_file_name", "file name is not valid UTF-8")
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
                    yield ArchiveProblem(name, "not_regular_file", "a FIFO or device member, not read")
                    continue
                if info.size > limit:
                    yield ArchiveProblem(name, "too_large", f"{info.size} bytes, above the limit of {limit}")
                    continue
                if name.endswith(".hea"):
                    headers.add(name)
                    yield from self._header(tf, info, keep, pending, spare, skipped)
                elif name.endswith(SIGNAL_SUFFIXES):
                    if name not in skipped:
                        spare.add(name, _read_tar(tf, info))
                        while spare.nbytes > self.limits.max_buffered_bytes and len(spare.files) > 1:
                            yield ArchiveProblem(
                                spare.drop_oldest(),
                                "missing_header",
                                "signal file waited for its header past the buffer limit",
                            )
                else:
                    item = _single_file(name, _read_tar(tf, info), headers)
                    if isinstance(item, ArchiveProblem) and item.reason != "empty_file":
                        undecided.append((name, info.size))  # a companion whose header comes later?
                    else:
                        yield item
                yield from self._complete(pending, spare)
        for name in pending:
            yield ArchiveProblem(name, "missing_signal_file", "signal file not found in the archive")
        for name, size in [*undecided, *((n, len(b)) for n, b in spare.files.items())]:
            kind = _no_recording(name, headers)
            yield Skipped(name, kind) if kind else _unreadable(name, size)

    @staticmethod
    def _header(
        tf: tarfile.TarFile,
        info: tarfile.TarInfo,
        keep: HeaderFilter,
        pending: dict,
        spare: _Buffer,
        skipped: OrderedDict[str, None],
    ) -> Iterator[Item]:
        name = info.name
        raw = _read_tar(tf, info)
        extra = keep(name)
        if extra is None:
            yield Skipped(name, "not_in_database")
        try:
            needed = [_sibling(name, s) for s in parse_header(header_text(raw)).file_names]
        except HeaderError as exc:
            if extra is not None:
                yield ArchiveProblem(name, exc.reason, str(exc))
            return
        if extra is None:  # a header we skip: its files need no buffering
            for p in needed:
                spare.take(p)
                skipped[p] = None
            while len(skipped) > _SKIP_MEMORY:
                skipped.popitem(last=False)
            return
        pending[name] = (extra, needed, {posixpath.basename(name): raw})

    @staticmethod
    def _complete(pending: dict, spare: _Buffer) -> Iterator[RecordUnit]:
        done = []
        for name, (extra, needed, got) in pending.items():
            if all(p in spare.files for p in needed):
                for p in needed:
                    got[posixpath.basename(p)] = spare.files[p]
                done.append(name)
                yield RecordUnit(name, got, extra)
        for name in done:
            for p in pending.pop(name)[1]:
                spare.take(p)


class _Buffer:
    """Signal files of a tar stream waiting for their header, oldest first, with their size."""

    def __init__(self) -> None:
        self.files: OrderedDict[str, bytes] = OrderedDict()
        self.nbytes = 0

    def add(self, name: str, data: bytes) -> None:
        self.take(name)
        self.files[name] = data
        self.nbytes += len(data)

    def take(self, name: str) -> bytes | None:
        data = self.files.pop(name, None)
        self.nbytes -= len(data or b"")
        return data

    def drop_oldest(self) -> str:
        name = next(iter(self.files))
        self.take(name)
        return name


def _read_tar(tf: tarfile.TarFile, info: tarfile.TarInfo) -> bytes:
    fh = tf.extractfile(info)
    return fh.read() if fh is not None else b""


def open_archive(
    path: Location, limits: ArchiveLimits | None = None, workers_read: bool = False
) -> DirectoryArchive | ObjectArchive | ZipArchive | TarArchive:
    """The reader for an archive path: a directory, a zip file or a (compressed) tar file, on
    disk or on object storage (a prefix there is the directory). `workers_read`: a directory's or
    prefix's units carry `ArchiveFiles` for the workers to read, not bytes."""
    limits = limits or ArchiveLimits()
    if isinstance(path, ObjectPath):
        if path.is_dir():
            return ObjectArchive(path, limits, workers_read)
        with path.open("rb") as fh:
            if zipfile.is_zipfile(fh):
                return ZipArchive(path, limits)
        with path.open("rb") as fh:
            if tarfile.is_tarfile(fh):
                return TarArchive(path, limits)
        raise ValueError(f"{path} is not a prefix, zip or tar archive")
    if path.is_dir():
        return DirectoryArchive(path, limits, workers_read)
    if zipfile.is_zipfile(path):
        return ZipArchive(path, limits)
    if tarfile.is_tarfile(path):
        return TarArchive(path, limits)
    raise ValueError(f"{path} is not a directory, zip or tar archive")


def expected_units(names: Iterable[str]) -> int:
    """How many record units a walk over these member names will yield (for an ETA): WFDB
    headers, plus every file that is neither a signal file, nor documentation, nor a companion."""
    names = list(names)
    headers = {n for n in names if n.endswith(".hea")}
    return len(headers) + sum(
        1
        for n in names
        if n not in headers and not n.endswith(SIGNAL_SUFFIXES) and not _no_recording(n, headers)
    )
