"""Generation speed through our stack against the raw libraries, and prefix reuse across turns.

1. Generation tokens/s: the same templated QA prompt, greedy, same settings, streamed through our
   Generator and through the library's own streaming call on the same loaded model, alternating
   (raw, ours) so drift on a shared machine hits both. Target: ours >= 0.97 x raw.
2. Time to first token of a follow-up over the same retrieved context against a cold first
   question (KV cache emptied first). Target: warm <= 0.1 x cold. Measured for a follow-up in the
   QA chain, for one in the chat chain (which first condenses the question), and for raw
   llama-cpp-python on the same two prompts.

The context is the first SciFact abstracts from ../shared/data (served as retrieved chunks), the
model the default SmolLM2-135M-Instruct. Run from the repository root:
    python benchmarks/bench_generation.py [--runs 5] [--max-tokens 64] [--threads N]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rag.chains import ChatChain, QAChain  # noqa: E402
from rag.generators import get_generator  # noqa: E402
from rag.retrieval import SearchHit  # noqa: E402
from rag.settings import load_settings  # noqa: E402

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "scifact" / "corpus.jsonl"
QUESTIONS = ["What do these studies say about cancer risk?", "Which of them used mice?"]


def measure(pieces) -> tuple[float, float, str, float]:
    """(ttft_s, gen tokens/s, text, gen tokens per CPU-second) for a stream of one-token pieces,
    timed by the consumer. CPU time (all threads of this process) barely moves when other
    programs compete for the cores, so its ratio stays meaningful on a busy machine."""
    start, first, last, n, parts = time.perf_counter(), None, None, 0, []
    cpu_first = cpu_last = 0.0
    for piece in pieces:
        now, cpu = time.perf_counter(), time.process_time()
        if first is None:
            first, cpu_first = now, cpu
        last, cpu_last, n = now, cpu, n + 1
        parts.append(piece)
    ttft = (first or time.perf_counter()) - start
    tps = (n - 1) / (last - first) if n > 1 and last > first else 0.0
    cpu_tps = (n - 1) / (cpu_last - cpu_first) if n > 1 and cpu_last > cpu_first else 0.0
    return ttft, tps, "".join(parts), cpu_tps


def raw_stream(backend: str, gen, prompt: str, max_tokens: int):
    """The library's own streaming call on the generator's loaded model, same sampling settings."""
    if backend == "llamacpp":
        llm, cache = gen._llm, gen._llm.cache
        llm.cache = None  # the library as it comes: no saved prompt states
        try:
            for chunk in llm.create_completion(prompt, max_tokens=max_tokens, temperature=0.0, top_k=40, top_p=0.95,
                                               min_p=0.0, repeat_penalty=1.1, seed=0, stream=True):
                if chunk["choices"][0]["text"]:
                    yield chunk["choices"][0]["text"]
        finally:
            llm.cache = cache
    else:
        yield from gen._llm.model.prompt_model_streaming(
            prompt, "%1%2", n_predict=max_tokens, temp=0.0, top_k=40, top_p=0.95, min_p=0.0, repeat_penalty=1.1,
            repeat_last_n=64, n_batch=min(gen.n_batch, 128), reset_context=True, special=True)


def hits(n: int = 4) -> list[SearchHit]:
    if not DATA.exists():
        sys.exit(f"{DATA} is absent: this benchmark reads SciFact abstracts from the shared data.")
    with DATA.open(encoding="utf-8") as f:
        docs = [json.loads(next(f)) for _ in range(n)]
    return [SearchHit(rank=i + 1, score=1.0 / (i + 1), dense_score=None, bm25_score=None, source=d["_id"],
                      title=d["title"], page=None, start=0, end=len(d["text"]), text=d["text"], chunk_id=i)
            for i, d in enumerate(docs)]


def fmt(values: list[float], digits: int = 2) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.{digits}f} ± {sd:.{digits}f}"


def bench_throughput(backend: str, settings, runs: int) -> dict[str, list[float]]:
    gen = get_generator(backend, settings)
    chain = QAChain(lambda q, k, mode: hits(), gen, max_tokens=settings.max_tokens)
    messages = [{"role": "user", "content": chain._pack(chain.prompts.qa, hits(), question=QUESTIONS[0])[0]}]
    prompt = gen.format_prompt(messages)
    out = {"raw": [], "ours": [], "raw_cpu": [], "ours_cpu": []}
    try:
        measure(gen.stream(messages))  # warm-up: first-call allocations are not part of either side
        for _ in range(runs):
            _, tps, raw_text, cpu_tps = measure(raw_stream(backend, gen, prompt, settings.max_tokens))
            out["raw"].append(tps)
            out["raw_cpu"].append(cpu_tps)
            _, tps, our_text, cpu_tps = measure(gen.stream(messages))
            out["ours"].append(tps)
            out["ours_cpu"].append(cpu_tps)
            if raw_text != our_text:
                print(f"warning: {backend} raw and stack replies differ", file=sys.stderr)
    finally:
        gen.close()
    return out


def bench_ttft(settings, runs: int) -> dict[str, tuple[list[float], list[float]]]:
    gen = get_generator("llamacpp", settings)
    results = {"QA follow-up, same context": ([], []), "chat follow-up (condense, then answer)": ([], []),
               "raw llama-cpp-python, same two prompts": ([], [])}
    try:
        qa = QAChain(lambda q, k, mode: hits(), gen)
        chat = ChatChain(lambda q, k, mode: hits(), gen)
        for _ in range(runs):
            gen.forget_prompts()  # cold: nothing of the prompt is in the KV cache or saved states
            first = qa.ask(QUESTIONS[0]).run()
            follow = qa.ask(QUESTIONS[1]).run()
            results["QA follow-up, same context"][0].append(first.timings["ttft_s"])
            results["QA follow-up, same context"][1].append(follow.timings["ttft_s"])
            gen.forget_prompts()
            first = chat.ask(QUESTIONS[0], []).run()
            follow = chat.ask(QUESTIONS[1], [(first.question, first.answer)]).run()
            results["chat follow-up (condense, then answer)"][0].append(first.timings["ttft_s"])
            results["chat follow-up (condense, then answer)"][1].append(follow.timings["ttft_s"])
            prompts = [gen.format_prompt([{"role": "user", "content": qa._pack(qa.prompts.qa, hits(), question=q)[0]}])
                       for q in QUESTIONS]
            gen.forget_prompts()
            cold, *_ = measure(raw_stream("llamacpp", gen, prompts[0], settings.max_tokens))
            warm, *_ = measure(raw_stream("llamacpp", gen, prompts[1], settings.max_tokens))
            results["raw llama-cpp-python, same two prompts"][0].append(cold)
            results["raw llama-cpp-python, same two prompts"][1].append(warm)
    finally:
        gen.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=None, help="default: all cores")
    parser.add_argument("--backends", default="llamacpp,gpt4all")
    parser.add_argument("--only", choices=["throughput", "ttft"], help="run one of the two parts")
    args = parser.parse_args()
    settings = load_settings(temperature=0.0, seed=0, max_tokens=args.max_tokens, n_threads=args.threads)
    print(f"model: default ({settings.model or 'SmolLM2-135M-Instruct'}), n_ctx {settings.n_ctx}, "
          f"threads {settings.n_threads}, {args.runs} runs, {args.max_tokens} new tokens, greedy\n")
    if args.only != "ttft":
        print_throughput(settings, args)
    if args.only != "throughput":
        print_ttft(settings, args)


def print_throughput(settings, args) -> None:
    print("| backend | raw gen tok/s | ours gen tok/s | ratio (≥ 0.97) | raw tok/CPU-s | ours tok/CPU-s | ratio |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for backend in args.backends.split(","):
        m = bench_throughput(backend, settings, args.runs)
        ratio = statistics.mean(m["ours"]) / statistics.mean(m["raw"])
        cpu_ratio = statistics.mean(m["ours_cpu"]) / statistics.mean(m["raw_cpu"])
        print(f"| {backend} | {fmt(m['raw'], 1)} | {fmt(m['ours'], 1)} | {ratio:.3f} {'✓' if ratio >= 0.97 else '✗'} "
              f"| {fmt(m['raw_cpu'], 1)} | {fmt(m['ours_cpu'], 1)} | {cpu_ratio:.3f} |", flush=True)


def print_ttft(settings, args) -> None:
    print("\n| llama.cpp, time to first token | cold (s) | follow-up (s) | ratio | target |")
    print("| --- | --- | --- | --- | --- |")
    for label, (cold, warm) in bench_ttft(settings, args.runs).items():
        ratio = statistics.mean(warm) / statistics.mean(cold)
        print(f"| {label} | {fmt(cold, 3)} | {fmt(warm, 3)} | {ratio:.3f} | ≤ 0.1 {'✓' if ratio <= 0.1 else '✗'} |")


if __name__ == "__main__":
    main()
