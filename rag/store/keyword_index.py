"""The keyword index: BM25 over the chunk texts in tantivy, beside the database and caught up from its log.

tantivy ranks a disjunctive query with block-max WAND: it skips every block of postings that cannot
reach the k-th best score, so a query's cost no longer grows with each matching chunk (FTS5 scored
every match: 2.4 s at a million chunks). English words are stemmed (Snowball), as FTS5's porter did.

SQLite stays the truth. The index lives in `keywords/`, and `keywords/generation` names the database
generation it reflects, written after tantivy's own commit. Only the holder of the collection's
writer lock writes it: at the end of each hold (`catch_up`) it replays what the change log recorded
since that generation. Replaying deletes each id before adding it, so a replay after a crash between
the two commits is harmless; a generation the log no longer reaches (or a missing or damaged index)
is rebuilt from every chunk.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import threading
from pathlib import Path
from typing import Sequence

from rag.store import schema
from rag.store.errors import cache_save_error
# Dropped from keyword queries: they match nearly every chunk and add nothing to BM25 (one list, in rag.text).
from rag.text import QUERY_STOPWORDS as STOPWORDS
from rag.text import WORD

DIRECTORY = "keywords"
# What the indexed text is and how it is analysed, written into the marker beside the generation: an
# index built another way is rebuilt. Each chunk is indexed with its document's title (as BEIR indexes
# title and text): SciFact bm25 nDCG@10 0.6711 -> 0.6915 on the held-out half (bench_retrieval.py).
ANALYSIS = "title+chunk/en_stem"
HEAP_BYTES = 64_000_000  # tantivy's indexing buffer; a rebuild uses it per thread
ADD_BATCH = 5_000  # rows read from SQLite at a time while (re)indexing


def query_words(text: str) -> list[str]:
    """The distinct lower-case words of `text` that a keyword search looks for (stopwords dropped,
    unless the text has nothing else)."""
    words = [w.lower() for w in WORD.findall(text)]
    kept = [w for w in words if w not in STOPWORDS] or words
    return list(dict.fromkeys(kept))


def keyword_text(title: str | None, text: str) -> str:
    """What the index holds for a chunk: its document's title, then its text (the title once, when the
    chunk already starts with it)."""
    title = (title or "").strip()
    return text if not title or text.lstrip().startswith(title) else f"{title}\n{text}"


def _schema():
    import tantivy

    builder = tantivy.SchemaBuilder()
    builder.add_integer_field("id", stored=True, indexed=True, fast=True)
    # Term frequencies without positions: BM25 needs nothing more, and the index stays small.
    builder.add_text_field("text", stored=False, tokenizer_name="en_stem", index_option="freq")
    return builder.build()


def _analyzer():
    """The same analysis tantivy's `en_stem` applies to indexed text, for the query's words."""
    import tantivy

    return (tantivy.TextAnalyzerBuilder(tantivy.Tokenizer.simple())
            .filter(tantivy.Filter.remove_long(40))
            .filter(tantivy.Filter.lowercase())
            .filter(tantivy.Filter.stemmer("english"))
            .build())


class KeywordIndex:
    """One collection's tantivy index, shared by the threads of a process."""

    def __init__(self, path: Path):
        self.dir = Path(path) / DIRECTORY
        self._marker = self.dir / "generation"
        self._lock = threading.Lock()
        self._index = None
        self._schema = None
        self._analyzer = None
        self._seen: tuple | None = None  # the marker file's identity when the reader last reloaded

    # -- the generation it reflects ----------------------------------------------------------------

    def generation(self) -> int:
        """The database generation the index holds; -1 when there is none (never built, unreadable, or
        built from other text or with other analysis than ANALYSIS)."""
        try:
            generation, analysis = self._marker.read_text(encoding="ascii").split()
            return int(generation) if analysis == ANALYSIS else -1
        except (OSError, ValueError):
            return -1

    def _open(self):
        import tantivy

        if self._index is None:
            self._schema = _schema()
            self._analyzer = _analyzer()
            self.dir.mkdir(parents=True, exist_ok=True)
            index = tantivy.Index(self._schema, path=str(self.dir), reuse=True)
            index.config_reader(reload_policy="Manual")
            self._index = index
        return self._index

    def _recreate(self):
        """An empty index in place of one that cannot be opened (the caller holds `_lock`)."""
        self._index = None
        self._marker.unlink(missing_ok=True)
        shutil.rmtree(self.dir, ignore_errors=True)
        return self._open()

    # -- writing (the caller holds the collection's writer lock) -----------------------------------

    def catch_up(self, db: sqlite3.Connection) -> None:
        """Bring the index to the database's generation: replay the log since the index's generation,
        or rebuild from every chunk when the log does not reach back that far."""
        done = self.generation()
        db.execute("BEGIN")
        try:
            current = schema.generation(db)
            opens = self._opens()
            if done == current and opens:
                return
            rebuild = done < 0 or done > current or done < schema.log_floor(db) or not opens
            since = -1 if rebuild else done  # a rebuild reads every chunk
            removed = [] if rebuild else [r[0] for r in db.execute("SELECT chunk_id FROM removed WHERE gen > ?",
                                                                   (done,))]
            rows = db.execute("SELECT c.id, c.text, d.title FROM chunks c JOIN documents d ON d.id = c.doc_id "
                              "WHERE c.gen > ? ORDER BY c.id", (since,))
            try:
                self._write(rows, removed, rebuild)
            except (OSError, ValueError) as exc:  # tantivy reports I/O failures as ValueError
                raise cache_save_error(self.dir, exc) from None
        finally:
            if db.in_transaction:
                db.execute("COMMIT")
        self._write_marker(current)

    def _write(self, rows, removed: Sequence[int], rebuild: bool) -> None:
        import tantivy

        with self._lock:
            try:
                index = self._open()
            except (OSError, ValueError):
                if not rebuild:
                    raise
                index = self._recreate()  # damaged beyond opening: the database has every chunk
        writer = index.writer(HEAP_BYTES * (2 if rebuild else 1), 2 if rebuild else 1)
        try:
            if rebuild:
                writer.delete_all_documents()
            for chunk_id in removed:
                writer.delete_documents("id", int(chunk_id))
            while batch := rows.fetchmany(ADD_BATCH):
                for chunk_id, text, title in batch:
                    if not rebuild:  # a replay after a crash may have added it already
                        writer.delete_documents("id", chunk_id)
                    writer.add_document(tantivy.Document(id=chunk_id, text=keyword_text(title, text)))
            writer.commit()  # uncommitted additions are dropped with the writer
        finally:
            writer.wait_merging_threads()  # merges done, and tantivy's own lock released

    def is_current(self, generation: int) -> bool:
        """Whether the index opens and reflects `generation`."""
        return self.generation() == generation and self._opens()

    def _opens(self) -> bool:
        with self._lock:
            try:
                self._open()
                return True
            except (OSError, ValueError):
                return False

    def _write_marker(self, generation: int) -> None:
        tmp = self._marker.with_name(f"generation.{os.getpid()}.tmp")
        try:
            with open(tmp, "w", encoding="ascii") as fh:
                fh.write(f"{generation} {ANALYSIS}")
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self._marker)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise cache_save_error(self.dir, exc) from None

    # -- reading -----------------------------------------------------------------------------------

    def _searcher(self):
        """A searcher over the newest commit: reloaded when the marker file changed since the last one."""
        try:
            stat = self._marker.stat()
        except OSError:
            return None  # never built: nothing to search yet
        seen = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
        with self._lock:
            try:
                index = self._open()
                if seen != self._seen:
                    index.reload()
                    self._seen = seen
                return index.searcher()
            except (OSError, ValueError):
                return None  # damaged: no keyword hits until the next writer rebuilds it from the database

    def _terms(self, text: str) -> list:
        import tantivy

        tokens = dict.fromkeys(t for w in query_words(text) for t in self._analyzer.analyze(w))
        return [(tantivy.Occur.Should, tantivy.Query.term_query(self._schema, "text", t, index_option="freq"))
                for t in tokens]

    def top(self, text: str, k: int, only: Sequence[int] | None = None) -> list[tuple[int, float]]:
        """(chunk id, BM25) of the `k` best chunks matching any word of `text`, best first; with `only`,
        the `k` best of those chunk ids."""
        searcher = self._searcher()
        query = self._query(text, only) if searcher is not None else None
        if query is None:
            return []
        found = searcher.search(query, k, count=False)  # count=True would visit every match
        return [(searcher.doc(address)["id"][0], score) for score, address in found.hits]

    def scores(self, text: str, ids: Sequence[int]) -> dict[int, float]:
        """BM25 of the given chunks (those matching no word of `text` left out)."""
        searcher = self._searcher()
        query = self._query(text, ids) if searcher is not None else None
        if query is None:
            return {}
        found = searcher.search(query, len(ids), count=False)
        return {searcher.doc(address)["id"][0]: score for score, address in found.hits}

    def _query(self, text: str, only: Sequence[int] | None):
        """Any word of `text`, among the chunk ids `only` when given (None when nothing can match). The id
        clause scores 0, so the BM25 scores are those of the words alone."""
        import tantivy

        terms = self._terms(text) if only is None or len(only) else []
        if not terms:
            return None
        words = tantivy.Query.boolean_query(terms)
        if only is None:
            return words
        among = tantivy.Query.const_score_query(
            tantivy.Query.term_set_query(self._schema, "id", [int(i) for i in only]), 0.0)
        return tantivy.Query.boolean_query([(tantivy.Occur.Must, among), (tantivy.Occur.Must, words)])

    def ids(self) -> list[int]:
        """Every chunk id the index holds (for the integrity check; reads every document)."""
        import tantivy

        searcher = self._searcher()
        if searcher is None or not searcher.num_docs:
            return []
        found = searcher.search(tantivy.Query.all_query(), searcher.num_docs, count=False)
        return [searcher.doc(address)["id"][0] for _, address in found.hits]
