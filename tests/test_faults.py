"""Faults while writing a collection: kill -9, a full disk, a read-only index, a damaged cache, two writers.

Each failure must be one RagError sentence (one `error:` line from the CLI) and leave the collection
as it was before the document that failed. The full-disk and read-only-mount cases run in a child
process inside a user and mount namespace, on a real tiny tmpfs or a real read-only bind mount; they
skip, saying why, where the system doesn't allow such namespaces.
"""

import errno
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import textwrap
from functools import lru_cache
from pathlib import Path

import pytest

from rag.collection import Collection
from rag.documents import Document
from rag.errors import RagError

ROOT = Path(__file__).resolve().parents[1]
CATS = Document("mem://cats", "Cats purr when they are content.\n\nA cat sleeps most of the day.", "Cats")
DOGS = Document("mem://dogs", "Dogs bark at the postman.", "Dogs")


def _bench_faults():
    spec = importlib.util.spec_from_file_location("bench_faults", ROOT / "benchmarks" / "bench_faults.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def snapshot(settings, name: str = "default") -> tuple:
    """What a reader sees: documents with their hashes and chunk counts, the generation, integrity problems."""
    coll = Collection.open(settings, name, create=False)
    try:
        docs = sorted((d.source, d.content_hash, d.chunks) for d in coll.documents())
        return docs, coll.store.generation(), coll.store.integrity_problems()
    finally:
        coll.store.close()


@pytest.fixture
def coll(settings):
    c = Collection.open(settings)
    c.add_documents([CATS])
    yield c
    c.store.close()


# -- kill -9 --------------------------------------------------------------------------------------


def test_documents_reported_finished_survive_kill_9(tmp_path):
    """Three kills at different moments: every committed document is kept, whole, in its new version."""
    bench = _bench_faults()
    kills = [bench.Kill(0, 0.0), bench.Kill(3, 0.05), bench.Kill(7, 0.3)]
    rounds = bench.kill_rounds(tmp_path / "index", kills, docs=12, log=lambda line: None)
    assert [r.problems for r in rounds] == [[], [], []]
    assert any(r.finished for r in rounds), "no document finished in any round; the check proved nothing"


# -- a full disk ------------------------------------------------------------------------------------


def test_full_database_is_one_sentence_and_keeps_the_old_documents(settings, coll):
    before = snapshot(settings)
    db = coll.store._db
    db.execute(f"PRAGMA max_page_count={db.execute('PRAGMA page_count').fetchone()[0] + 4}")
    big = Document("mem://big", " ".join(f"word{i}" for i in range(20_000)), "Big")  # ~150 KB, 16 KB free
    with pytest.raises(RagError, match=r"^The disk holding .* is full; free some space") as caught:
        coll.add_documents([DOGS, big], chunk_size=20_000)
    assert "\n" not in str(caught.value)
    coll.store.close()
    docs, generation, problems = snapshot(settings)
    assert problems == []
    # DOGS, written before the big one in the same ingest, is kept; the big one left nothing behind.
    assert [d[0] for d in docs] == ["mem://cats", "mem://dogs"]
    assert docs[0] == before[0][0] and generation == before[1] + 1


def test_failed_cache_save_says_the_documents_are_saved(settings, coll, monkeypatch):
    from rag.store import vector_index

    def full_disk(path, payload):
        path.write_bytes(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(vector_index, "write_file", full_disk)  # as the cache calls it
    with pytest.raises(RagError, match=r"documents are saved, but the search cache .* \(No space left on device\)"):
        coll.add_documents([DOGS])
    monkeypatch.undo()
    coll.store.close()
    assert not list((settings.index_dir / "default").glob("*.tmp"))
    docs, _, problems = snapshot(settings)
    assert [d[0] for d in docs] == ["mem://cats", "mem://dogs"] and problems == []


@pytest.mark.parametrize("damage", [b"", b"not a faiss index", None])
def test_damaged_cache_file_is_rebuilt_from_the_database(settings, coll, damage):
    coll.store.close()
    (cache,) = (settings.index_dir / "default").glob("faiss-*.index")
    cache.write_bytes(cache.read_bytes()[:100] if damage is None else damage)  # None: truncated
    reopened = Collection.open(settings)
    assert reopened.search("purring", k=1, mode="dense")[0].source == "mem://cats"
    assert reopened.store.integrity_problems() == []


def test_cache_file_that_fails_its_checksum_is_not_trusted(settings, coll):
    """A file FAISS would read happily, but not the one saved for this generation: rebuilt, not used."""
    import faiss
    import numpy as np

    coll.add_documents([DOGS])
    coll.store.close()
    (cache,) = (settings.index_dir / "default").glob("faiss-*.index")
    data = bytearray(cache.read_bytes())
    data[-1] ^= 0xFF  # one flipped bit in the vectors: FAISS alone would load it without a word
    cache.write_bytes(bytes(data))
    reopened = Collection.open(settings)
    rebuilt = []
    original = reopened.store._vectors.rebuild
    reopened.store._vectors.rebuild = lambda db: rebuilt.append(1) or original(db)
    assert reopened.search("purring", k=1, mode="dense")[0].source == "mem://cats"
    assert rebuilt == [1] and reopened.store.integrity_problems() == []
    reopened.store.close()
    # A raw FAISS file of the right shape but other vectors, without our header, is refused too.
    other = faiss.IndexIDMap2(faiss.IndexFlatIP(384))
    other.add_with_ids(np.ones((2, 384), np.float32) / np.sqrt(384), np.array([1, 2]))
    faiss.write_index(other, str(cache))
    again = Collection.open(settings)
    assert again.search("barking", k=1, mode="dense")[0].source == "mem://dogs"
    assert again.store.integrity_problems() == []
    again.store.close()


# -- real tiny filesystems and read-only mounts, in a namespace ------------------------------------------

NAMESPACE_CHILD = textwrap.dedent(
    """
    import contextlib, io, json, subprocess, sys
    from rag.cli import main

    mode, index, *sources = sys.argv[1:]
    if mode == "full":
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", index], check=True)
    else:
        subprocess.run(["mount", "--bind", index, index], check=True)
        subprocess.run(["mount", "-o", "remount,bind,ro", index], check=True)
    runs = []
    for source in sources:
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            rc = main(["ingest", source, "--index", index, "--chunk-size", "20000"])
        runs.append({"rc": rc, "stderr": err.getvalue()})
    result = {"runs": runs}
    if mode == "full":  # the tmpfs goes with this process, so look at what is left from inside
        from rag.collection import Collection
        from rag.settings import load_settings
        coll = Collection.open(load_settings(environ={}, index_dir=index), create=False)
        result["docs"] = [d.source for d in coll.documents()]
        result["problems"] = coll.store.integrity_problems()
    print(json.dumps(result))
    """
)


@lru_cache(maxsize=1)
def _namespace_unavailable() -> str:
    """Why a user+mount namespace with a tmpfs can't be made here, or '' when it can."""
    if not sys.platform.startswith("linux") or not shutil.which("unshare"):
        return "needs Linux with unshare(1)"
    probe = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "sh", "-c",
                            "mount -t tmpfs -o size=64k tmpfs /tmp"], capture_output=True, text=True)
    if probe.returncode:
        return f"user and mount namespaces are not allowed here ({probe.stderr.strip()[:100]})"
    return ""


def in_namespace(mode: str, index: Path, *sources: Path) -> dict:
    if reason := _namespace_unavailable():
        pytest.skip(reason)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", sys.executable, "-c",
                           NAMESPACE_CHILD, mode, str(index), *map(str, sources)],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.splitlines()[-1])


def test_full_disk_is_one_error_line_and_keeps_what_fit(tmp_path):
    small, big = tmp_path / "small.txt", tmp_path / "big.txt"
    small.write_text(CATS.text)
    big.write_text(" ".join(f"word{i}" for i in range(60_000)))  # ~400 KB into a 256 KB filesystem
    index = tmp_path / "index"
    index.mkdir()
    result = in_namespace("full", index, small, big)
    assert [r["rc"] for r in result["runs"]] == [0, 1]
    assert result["runs"][1]["stderr"].count("\n") == 1
    assert result["runs"][1]["stderr"].startswith("error: The disk holding ")
    assert "is full; free some space" in result["runs"][1]["stderr"]
    assert result["docs"] == [str(small)] and result["problems"] == []


def test_read_only_mount_is_one_error_line_and_the_index_is_untouched(settings, coll, tmp_path):
    coll.store.close()
    before = snapshot(settings)
    files_before = sorted(p.name for p in (settings.index_dir / "default").iterdir())
    dogs = tmp_path / "dogs.txt"
    dogs.write_text(DOGS.text)
    result = in_namespace("read-only", settings.index_dir, dogs)
    (run,) = result["runs"]
    assert run["rc"] == 1 and run["stderr"].count("\n") == 1
    assert "cannot be written (read-only or no permission)" in run["stderr"]
    assert snapshot(settings) == before
    assert sorted(p.name for p in (settings.index_dir / "default").iterdir()) == files_before


def test_read_only_permissions_are_one_sentence_and_the_index_is_untouched(settings, coll):
    if os.geteuid() == 0:
        pytest.skip("root writes through file modes; the read-only mount test covers this case")
    coll.store.close()
    before = snapshot(settings)
    folder = settings.index_dir / "default"
    modes = {p: p.stat().st_mode for p in [folder, *folder.iterdir()]}
    for path in modes:
        path.chmod(0o555 if path.is_dir() else 0o444)
    try:
        with pytest.raises(RagError, match="cannot be written"):
            Collection.open(settings).add_documents([DOGS])
    finally:
        for path, mode in modes.items():
            path.chmod(mode)
    assert snapshot(settings) == before


# -- two writers ------------------------------------------------------------------------------------


def test_two_processes_ingesting_one_new_collection_both_complete(tmp_path, settings):
    """Two CLI processes create and fill the same collection at once; the second waits for the lock."""
    folders = []
    for name in ("left", "right"):
        folder = tmp_path / name
        folder.mkdir()
        for i in range(6):
            (folder / f"{name}{i}.txt").write_text(f"{name} note {i}: " + " ".join(f"{name}{i}w{j}" for j in range(300)))
        folders.append(folder)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("RAG_INDEX_DIR", None)
    index = settings.index_dir
    procs = [subprocess.Popen([sys.executable, "-m", "rag", "ingest", str(f), "--index", str(index), "--json"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
             for f in folders]
    outputs = [p.communicate(timeout=300) for p in procs]
    for proc, (out, err) in zip(procs, outputs):
        assert proc.returncode == 0, err
        assert json.loads(out)["documents_added"] == 6
    coll = Collection.open(settings, create=False)
    assert len(coll.documents()) == 12
    assert coll.store.integrity_problems() == []
    assert coll.store.generation() == 12
