"""Whole-document summaries: time against raw llama-cpp-python reading the text once, and faithfulness.

    python benchmarks/bench_summary.py

For each real article in ../shared/data/articles (two long blog posts), in one run:
  raw       llama-cpp-python alone, same GGUF and settings: evaluate the article's whole text once (in
            context-sized windows) and then write 256 tokens: the least a model that reads everything pays
  ours      SummarizeChain over the whole document with the project's defaults (greedy), start to end
            (chunking, choosing the passages, the model)
Faithfulness: the article's own section headings (its <h2> elements, read from the HTML, independent of
the chain) and which of them the summary names (a heading counts when one of its content words, lightly
stemmed, is in the summary), for the model's own text and for the whole summary, which ends with the
headings the chain found in the extracted text (its outline).
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

ARTICLES = ROOT / ".." / "shared" / "data" / "articles"
REPLY_TOKENS = 256


def sections(html_path: Path) -> list[str]:
    from lxml import html

    tree = html.fromstring(html_path.read_bytes())
    heads = [" ".join(h.text_content().split()) for h in tree.xpath("//article//h2 | //div[@class='post-content']//h2")]
    return [h for h in dict.fromkeys(heads) if h and h.lower() not in {"citation", "references"}]


def named(summary: str, heading: str) -> bool:
    from rag.text import content_words, stem

    said = {stem(w) for w in content_words(summary)}
    return any(stem(w) in said for w in content_words(heading))


def raw_read_and_write(model_path: Path, text: str, n_ctx: int, threads: int) -> float:
    """Seconds for llama-cpp-python to evaluate `text` once, window by window, then write 256 tokens."""
    from llama_cpp import Llama

    llm = Llama(model_path=str(model_path), n_ctx=n_ctx, n_threads=threads, n_batch=512, verbose=False, seed=0)
    tokens = llm.tokenize(text.encode("utf-8"))
    window = n_ctx - REPLY_TOKENS - 8
    t0 = time.perf_counter()
    for start in range(0, len(tokens), window):
        llm.reset()
        llm.eval(tokens[start:start + window])
    written = 0
    for _ in llm.generate([], temp=0.0, reset=False):  # continue after the last window
        written += 1
        if written >= REPLY_TOKENS:
            break
    seconds = time.perf_counter() - t0
    llm.close()
    return seconds


def main() -> int:
    if not ARTICLES.exists():
        print(f"skipped: {ARTICLES.resolve()} is absent (the shared data sits beside the checkout)")
        return 0
    from rag.chains import SummarizeChain
    from rag.collection import Collection
    from rag.generators import get_generator
    from rag.models import resolve_model
    from rag.settings import load_settings

    from rag.chains import OUTLINE_LEAD

    print("| article | tokens | raw read + 256 s | ours s | ours / raw | strategy | sections named: model's text "
          "| with the outline |")
    print("| --- | ---: | ---: | ---: | ---: | --- | ---: | ---: |")
    with tempfile.TemporaryDirectory() as tmp:
        settings = load_settings(index_dir=Path(tmp), temperature=0.0)
        coll = Collection.open(settings, name="articles")
        pages = sorted(ARTICLES.glob("*/index.html"))
        coll.ingest([str(p) for p in pages])
        generator = get_generator(settings.backend, settings)
        model = resolve_model(settings.model, settings.models_dir)
        summaries = {}
        for page in pages:
            doc = next(coll.document(d.source) for d in coll.documents() if page.parent.name in d.source)
            tokens = generator.count_tokens(doc.text)
            raw = raw_read_and_write(model, doc.text, settings.n_ctx, settings.n_threads)
            t0 = time.perf_counter()
            result = SummarizeChain(coll, generator, max_tokens=REPLY_TOKENS).summarize(
                documents=[(doc.title or doc.source, doc.text)]).run()
            ours = time.perf_counter() - t0
            heads = sections(page)
            own = result.answer.split(OUTLINE_LEAD)[0]
            hit = [h for h in heads if named(own, h)]
            whole = [h for h in heads if named(result.answer, h)]
            summaries[page.parent.name] = (result.answer, heads, hit)
            print(f"| {page.parent.name} | {tokens:,} | {raw:.1f} | {ours:.1f} | {ours / raw:.2f} | "
                  f"{result.strategy} | {len(hit)} of {len(heads)} | {len(whole)} of {len(heads)} |", flush=True)
        generator.close()
    for name, (summary, heads, hit) in summaries.items():
        print(f"\n{name}\n  sections: {'; '.join(heads)}\n  named: {'; '.join(hit)}\n  summary: {summary}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
