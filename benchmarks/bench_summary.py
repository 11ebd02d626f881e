"""Whole-document summaries: which of an article's main sections they state, and their time against a raw read.

    python benchmarks/bench_summary.py [--answer-style auto|quote|free]

For each real article in ../shared/data/articles (two long blog posts), ingested with the project's loader:
  raw       llama-cpp-python alone, same GGUF and settings: evaluate the article's whole text once (in
            context-sized windows) and then write 256 tokens: the least a model that reads everything pays
  summary   the notebook's whole-document summary (the one answer path, `AnswerPath.summary()`, with the
            settings' answer style, greedy), start to end: finding the parts, choosing sentences, the model
Coverage, judged from the HTML and not from the chain: the article's top-level sections (the highest heading
level inside its post body; these pages use <h1> there and <h2> for subsections, which are counted too) and
each one's text. A section is covered when a line of the summary states its content: the line's sentences
find their support (rag.evidence.find_support: embedding and shared words) in that section's text, a quoted
sentence being its own support. A heading merely named does not count.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

ARTICLES = ROOT / ".." / "shared" / "data" / "articles"
REPLY_TOKENS = 256
SKIP = {"citation", "references"}  # the pages' own back matter, not sections of the argument


LEAD = "(before the first heading)"


def sections(html_path: Path) -> dict[str, list[tuple[str, str]]]:
    """{"top": [(heading, text)], "sub": [(heading, text)]}: the post body's sections at its highest heading
    level and at the next, each with the text under it up to the next heading of the same or a higher level;
    the text before the first heading comes first, as LEAD."""
    from lxml import html

    body = html.fromstring(html_path.read_bytes()).xpath("//div[@class='post-content']")[0]
    for anchor in body.xpath(".//a[@class='anchor']"):  # the "#" link each heading carries
        anchor.drop_tree()
    levels = sorted({int(el.tag[1]) for el in body if el.tag in ("h1", "h2", "h3", "h4")})
    out = {}
    for name, level in zip(("top", "sub"), levels):
        current = [LEAD, []]
        found = [current]
        for el in body:
            text = " ".join(el.text_content().split())
            if el.tag in ("h1", "h2", "h3", "h4") and int(el.tag[1]) <= level:
                current = None if int(el.tag[1]) < level or text.lower() in SKIP else [text, []]
                if current:
                    found.append(current)
            elif current is not None and text:
                current[1].append(text)
        out[name] = [(head, "\n".join(texts)) for head, texts in found if texts or head != LEAD]
    return out


def covered(parts: list[dict], found: list[tuple[str, str]], embed) -> dict[str, str]:
    """{section heading: the heading of the summary line that states its content}, for the sections covered:
    a line covers the section where most of its supported sentences find their support."""
    from rag.evidence import find_support

    texts = [text for _, text in found]
    out: dict[str, str] = {}
    for part in parts:
        support = find_support(part["text"], texts, embed)
        if support.evidence and len(support.evidence) * 2 >= len(support.sentences):
            n, _ = Counter(e.n for e in support.evidence).most_common(1)[0]
            out.setdefault(found[n - 1][0], part["heading"])
    return out


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--answer-style", choices=["auto", "quote", "free"], default=None,
                        help="the summary's answer style (default: the settings', auto)")
    args = parser.parse_args(argv)
    if not ARTICLES.exists():
        print(f"skipped: {ARTICLES.resolve()} is absent (the shared data sits beside the checkout)")
        return 0
    from rag.chains.path import AnswerPath
    from rag.collection import Collection
    from rag.generators import get_generator
    from rag.models import resolve_model
    from rag.settings import load_settings

    print("| article | tokens | style | top-level sections covered | subsections covered | raw read + 256 s "
          "| summary s | summary / raw | model calls | tokens written |")
    print("| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    details = []
    with tempfile.TemporaryDirectory() as tmp:
        settings = load_settings(index_dir=Path(tmp), temperature=0.0, max_tokens=REPLY_TOKENS,
                                 answer_style=args.answer_style)
        coll = Collection.open(settings, name="articles")
        pages = sorted(ARTICLES.glob("*/index.html"))
        coll.ingest([str(p) for p in pages])
        generator = get_generator(settings.backend, settings)
        model = resolve_model(settings.model, settings.models_dir)
        embed = coll.embedder.embed
        for page in pages:
            doc = next(coll.document(d.source) for d in coll.documents() if page.parent.name in d.source)
            tokens = generator.count_tokens(doc.text)
            raw = raw_read_and_write(model, doc.text, settings.n_ctx, settings.n_threads)
            t0 = time.perf_counter()
            result = AnswerPath(coll, generator, settings).summary().summarize(documents=[doc]).run()
            ours = time.perf_counter() - t0
            found = sections(page)
            top, sub = covered(result.parts, found["top"], embed), covered(result.parts, found["sub"], embed)
            n_top, n_sub = (len([h for h, _ in found[k] if h != LEAD]) for k in ("top", "sub"))
            hit_top, hit_sub = (len([h for h in got if h != LEAD]) for got in (top, sub))
            print(f"| {page.parent.name} | {tokens:,} | {result.style} | {hit_top} of {n_top} ({hit_top / n_top:.0%}) "
                  f"| {hit_sub} of {n_sub} | {raw:.1f} | {ours:.1f} | {ours / raw:.2f} | "
                  f"{result.timings.get('model_calls', 0)} | {result.completion_tokens} |", flush=True)
            details.append((page.parent.name, found["top"], top, result.answer))
        generator.close()
    for name, found, top, summary in details:
        print(f"\n{name}")
        for heading, _ in found:
            if heading != LEAD:
                print(f"  {'covered by ' + repr(top[heading]) if heading in top else 'NOT covered':45} {heading}")
        print("  summary:\n    " + summary.replace("\n", "\n    "))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
