import io
import tarfile
import warnings

import pandas as pd
import pytest

from rllc.data import corpus, parsers


@pytest.fixture()
def data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("RLLC_DATA_DIR", str(tmp_path / "data"))
    return tmp_path / "data"


def _tgz(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, blob in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
    return buf.getvalue()


def test_corrupt_download_is_refetched_and_never_used(data_dir, monkeypatch):
    good = _tgz({"package/data/a.txt": b"hello"})
    pkg = corpus.Package(key="x", registry="npm", name="x", version="1", file="x-1.tgz",
                         sha256=corpus.sha256_bytes(good))
    downloads = data_dir / "downloads"
    downloads.mkdir(parents=True)
    (downloads / "x-1.tgz").write_bytes(good[:20])  # a truncated earlier download
    calls = []

    def fake_download(p, dest):
        calls.append(p.name)
        (dest / p.file).write_bytes(good)

    monkeypatch.setattr(corpus, "_download", fake_download)
    with pytest.warns(UserWarning, match="does not match"):
        path = corpus.fetch_package(pkg)
    assert path.read_bytes() == good and calls == ["x"]


def test_download_that_never_matches_is_refused(data_dir, monkeypatch):
    pkg = corpus.Package(key="x", registry="npm", name="x", version="1", file="x-1.tgz", sha256="0" * 64)
    monkeypatch.setattr(corpus, "_download", lambda p, dest: (dest / p.file).write_bytes(b"garbage"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(corpus.SourceUnavailable, match="hash mismatch"):
            corpus.fetch_package(pkg)
    assert not (data_dir / "downloads" / "x-1.tgz").exists()


def test_missing_registry_client_skips_source_and_says_so(data_dir, monkeypatch):
    real_which = corpus.shutil.which
    monkeypatch.setattr(corpus.shutil, "which", lambda cmd: None if cmd == "npm" else real_which(cmd))
    with pytest.warns(UserWarning, match="'moby_dick' skipped: npm not found"):
        out = corpus.load_sources(["moby_dick"])
    assert out == {}
    assert corpus.read_manifest()["moby_dick"]["status"].startswith("skipped: npm not found")


def test_deb_reader_finds_the_data_member(tmp_path):
    data = _tgz({"./usr/share/x/file.txt": b"payload"})
    def member(name: str, blob: bytes) -> bytes:
        header = f"{name:<16}{0:<12}{0:<6}{0:<6}{100644:<8}{len(blob):<10}`\n".encode()
        return header + blob + (b"\n" if len(blob) % 2 else b"")
    deb = tmp_path / "x_1_all.deb"
    deb.write_bytes(b"!<arch>\n" + member("debian-binary", b"2.0\n") + member("data.tar.gz", data))
    files = {name: read() for name, read in parsers.iter_archive(deb)}
    assert files == {"usr/share/x/file.txt": b"payload"}


def test_brown_detokenizer():
    tagged = "\n\n\tThe/at jury/nn said/vbd ``/`` no/at evidence/nn ''/'' ,/, it's/pps+bez true/jj ./.\n"
    assert parsers.brown_detokenize(tagged) == 'The jury said "no evidence", it\'s true.'


def _docs(texts):
    df = pd.DataFrame({"source": "s", "kind": "prose", "doc_id": range(len(texts)), "text": texts})
    df["sha256"] = [corpus.doc_hash(t) for t in texts]
    return df.sort_values("sha256").reset_index(drop=True)


def test_take_bytes_is_greedy_within_budget():
    df = _docs(["a" * 10, "b" * 50, "c" * 10, "d" * 10])
    taken = corpus.take_bytes(df, 35)
    total = taken["text"].str.len().sum()
    assert total <= 35
    left = df[~df["sha256"].isin(taken["sha256"])]
    assert (total + left["text"].str.len() > 35).all()  # greedy: nothing left would still fit
    assert len(taken) == 3 and "b" * 50 not in set(taken["text"])
    assert len(corpus.take_bytes(df, 1)) == 1  # never empty


def test_test_split_is_by_content_and_roughly_the_fraction():
    df = _docs([f"document number {i}" for i in range(2000)])
    train, test = corpus.split_test(df, 0.1)
    assert set(train["sha256"]).isdisjoint(test["sha256"]) and len(train) + len(test) == 2000
    assert 140 < len(test) < 260
    again_train, again_test = corpus.split_test(df.sample(frac=1, random_state=0), 0.1)
    assert set(again_test["sha256"]) == set(test["sha256"])  # independent of order


def test_hub_loader_reads_a_local_dataset_in_hub_format(tmp_path):
    # the Pile subset has a "text" column, CodeParrot's github-code a "code" column
    root = tmp_path / "pile-like" / "data"
    root.mkdir(parents=True)
    pd.DataFrame({"text": ["first document", "second document", "first document"],
                  "meta": ["{}"] * 3}).to_parquet(root / "train-00000-of-00001.parquet")
    docs = corpus.load_hub_documents(str(tmp_path / "pile-like"), text_column="text")
    assert sorted(docs["text"]) == ["first document", "second document"]  # duplicates dropped
    assert set(docs.columns) >= {"source", "doc_id", "text", "sha256"}
    with pytest.raises(KeyError, match="columns"):
        corpus.load_hub_documents(str(tmp_path / "pile-like"), text_column="code")
    assert len(corpus.load_hub_documents(str(tmp_path / "pile-like"), max_documents=1)) == 1


def test_per_source_caps_weight_the_mixture(monkeypatch):
    from rllc.config import CorpusConfig

    parts = {"prose": _docs([f"prose {i} " * 20 for i in range(50)]).assign(source="prose"),
             "code": _docs([f"code {i} " * 20 for i in range(50)]).assign(source="code")}
    monkeypatch.setattr(corpus, "load_sources", lambda names, force=False: {n: parts[n] for n in names if n in parts})
    cfg = CorpusConfig(train_sources=("prose", "code"), heldout_sources=(), max_bytes_per_source=1000,
                       source_max_bytes={"code": 3000}, test_fraction=0.0)
    mix = corpus.build_mixture(cfg)
    size = mix.train.groupby("source")["text"].apply(lambda t: t.str.len().sum())
    assert size["prose"] <= 1000 < size["code"] <= 3000
    bad = CorpusConfig(train_sources=("prose",), heldout_sources=(), source_max_bytes={"kode": 10})
    with pytest.raises(KeyError, match="kode"):
        corpus.build_mixture(bad)
