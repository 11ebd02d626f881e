"""Embedding backends for all-MiniLM-L6-v2: torch fp32 vs ONNX fp32 vs ONNX int8 (dynamic quantisation).

    python benchmarks/bench_embedding_backends.py [--rounds 3] [--speed-chunks 3000] [--store STORE.sqlite]
                                                  [--via auto|optimum|onnxruntime] [--skip-quality]

Speed: the same ~3,000 SciFact chunks (title + abstract, split at 500 characters as users' documents are)
encoded by each backend in alternating rounds (batch 64, normalised); the median chunks/s is reported,
since other work on the machine skews single runs. Quality: SciFact nDCG@10, dense only, on the 809
train queries; documents are all 5,183 abstracts, a document scores its best chunk's cosine (exact
inner-product search, top 100 chunks). Rule from the issue: a faster backend may become the default
only if its nDCG@10 stays within 0.005 of torch's.

ONNX comes from one of two routes, both offline from the installed model's safetensors:
  optimum      SentenceTransformer(path, backend="onnx") and
               sentence_transformers.backend.export_dynamic_quantized_onnx_model (needs optimum-onnx,
               which at the time of writing requires transformers<4.58, i.e. not the project's pins);
  onnxruntime  torch.onnx.export of the transformer + onnxruntime.quantization.quantize_dynamic, run by
               an onnxruntime session with the model's own tokenizer, mean pooling and L2 normalisation.
`auto` uses optimum when it imports, else onnxruntime. Neither is in requirements.txt; exported files
go to a temporary directory (or --work), never into the checkout.

Measured (2 shared, heavily loaded cores, avx512_vnni; onnxruntime 1.32.0, route onnxruntime under the
project's pins): torch fp32 4.9 chunks/s, ONNX fp32 5.6 (1.12x), ONNX int8 11.2 (2.28x), medians of 3
rounds of 300 chunks; nDCG@10 dense on all 809 train queries: torch 0.6858, int8 0.6854 (-0.0004),
mean cosine int8 to torch 0.993 (ONNX fp32: 1.0000 on a sample, so its nDCG is torch's).

`--store` reuses the torch vectors the project already computed for the same chunks (a collection's
store.sqlite, opened read-only) instead of embedding the whole corpus with torch again.
"""

from __future__ import annotations

import argparse
import os
import re
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import scifact  # noqa: E402

from rag.chunking import split_document  # noqa: E402
from rag.documents import Document  # noqa: E402
from rag.embedding import resolve_model_path  # noqa: E402
from rag.settings import DEFAULT_EMBEDDING_MODEL  # noqa: E402

BATCH = 64
DEPTH = 100  # chunks retrieved per query before grouping them by document
TOLERANCE = 0.005
PIP_LINE = "pip install onnxruntime onnx"
PIP_LINE_OPTIMUM = (
    'pip install "sentence-transformers[onnx]"  (optimum-onnx 0.1.0 needs transformers<4.58, so pip falls back '
    "to sentence-transformers 5.7 / transformers 4.57: a separate environment, not this project's pins)"
)


def cpu_quant_config() -> str:
    """The best of optimum's dynamic-quantisation presets this CPU supports."""
    try:
        flags = set(re.findall(r"\S+", Path("/proc/cpuinfo").read_text().split("flags", 1)[1].split("\n", 1)[0]))
    except (OSError, IndexError):
        flags = set()
    if "avx512_vnni" in flags:
        return "avx512_vnni"
    if "avx512f" in flags:
        return "avx512"
    if os.uname().machine in ("aarch64", "arm64"):
        return "arm64"
    return "avx2"


def optimum_works() -> str | None:
    """None when sentence-transformers' ONNX backend can load, else why not."""
    try:
        import onnxruntime  # noqa: F401
        from optimum.onnxruntime import ORTModelForFeatureExtraction  # noqa: F401
    except Exception as exc:  # an ImportError, or optimum failing against this transformers version
        return f"{exc.__class__.__name__}: {exc}"
    return None


# ---------------------------------------------------------------- backends


class OrtEncoder:
    """The model's tokenizer + an onnxruntime session of its transformer + mean pooling + normalisation,
    mirroring SentenceTransformer.encode for this Transformer -> Pooling(mean) -> Normalize model."""

    def __init__(self, st_model, onnx_path: Path):
        import onnxruntime as ort
        import torch

        self.tokenizer = st_model.tokenizer
        self.max_length = st_model.max_seq_length
        options = ort.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()  # the same threads torch gets
        self.session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
        self.inputs = {i.name for i in self.session.get_inputs()}
        self.dimension = int(st_model.get_embedding_dimension())

    def encode(self, texts, batch_size=BATCH, normalize_embeddings=True, **_):
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        for start in range(0, len(texts), batch_size):
            idx = order[start : start + batch_size]
            enc = self.tokenizer([texts[i] for i in idx], padding=True, truncation=True,
                                 max_length=self.max_length, return_tensors="np")
            feed = {k: v.astype(np.int64) for k, v in enc.items() if k in self.inputs}
            hidden = self.session.run(None, feed)[0]
            mask = enc["attention_mask"][..., None].astype(np.float32)
            vectors = (hidden * mask).sum(1) / np.clip(mask.sum(1), 1e-9, None)
            if normalize_embeddings:
                vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
            out[idx] = vectors
        return out


def export_with_onnxruntime(st_model, work: Path, config: str) -> tuple[Path, Path]:
    """The project's own export and quantisation (rag.embedding), kept beside the fp32 file for comparison."""
    from rag.embedding import export_onnx, quantize_int8

    fp32, int8 = work / "model.onnx", work / f"model_qint8_{config}.onnx"
    export_onnx(st_model, fp32)
    quantize_int8(fp32, int8)
    return fp32, int8


def load_backends(via: str, work: Path) -> dict:
    """name -> object with .encode(texts, batch_size=, normalize_embeddings=)."""
    from sentence_transformers import SentenceTransformer

    path = resolve_model_path(DEFAULT_EMBEDDING_MODEL)
    config = cpu_quant_config()
    torch_model = SentenceTransformer(path, device="cpu", backend="torch")
    backends = {"torch fp32": torch_model}
    if via == "optimum":
        from sentence_transformers.backend import export_dynamic_quantized_onnx_model

        onnx_model = SentenceTransformer(path, device="cpu", backend="onnx")  # exports from the safetensors
        onnx_model.save_pretrained(str(work))
        export_dynamic_quantized_onnx_model(onnx_model, config, str(work))
        name = f"onnx/model_qint8_{config}.onnx"
        backends["onnx fp32"] = SentenceTransformer(
            str(work), device="cpu", backend="onnx", model_kwargs={"file_name": "onnx/model.onnx"}
        )
        backends[f"onnx int8 ({config})"] = SentenceTransformer(
            str(work), device="cpu", backend="onnx", model_kwargs={"file_name": name}
        )
    else:
        fp32, int8 = export_with_onnxruntime(torch_model, work, config)
        backends["onnx fp32"] = OrtEncoder(torch_model, fp32)
        backends[f"onnx int8 ({config})"] = OrtEncoder(torch_model, int8)
    return backends


# ---------------------------------------------------------------- data


def corpus_chunks(chunk_size: int = 500) -> tuple[list[str], list[str]]:
    """(chunk texts, their document ids) for all of SciFact, in corpus order."""
    texts, sources = [], []
    for d in scifact.load_corpus():
        doc = Document(source=d["_id"], title=d["title"], text=f"{d['title']}\n\n{d['text']}")
        for chunk in split_document(doc, chunk_size):
            texts.append(chunk.text)
            sources.append(d["_id"])
    return texts, sources


def store_chunks(store: str) -> tuple[list[str], list[str], np.ndarray] | None:
    """Chunk texts, document ids and torch vectors from a project store, read-only; None if incomplete."""
    con = sqlite3.connect(f"file:{store}?mode=ro", uri=True)
    try:
        docs = con.execute("SELECT COUNT(*) FROM documents").fetchone()[0]
        if docs < len(scifact.load_corpus()):
            print(f"note: {store} holds {docs} documents, not all of SciFact; embedding with torch instead")
            return None
        rows = con.execute(
            "SELECT c.text, d.source, c.vector FROM chunks c JOIN documents d ON d.id = c.doc_id ORDER BY c.id"
        ).fetchall()
    finally:
        con.close()
    vectors = np.stack([np.frombuffer(v, dtype=np.float32) for _, _, v in rows])
    return [t for t, _, _ in rows], [s for _, s, _ in rows], vectors


# ---------------------------------------------------------------- measurements


def speed(backends: dict, texts: list[str], rounds: int) -> dict[str, float]:
    """Median chunks/s per backend over alternating rounds (the order rotates each round)."""
    for model in backends.values():  # warm up: first calls allocate and pick kernels
        model.encode(texts[:BATCH], batch_size=BATCH, normalize_embeddings=True)
    rates = {name: [] for name in backends}
    names = list(backends)
    for r in range(rounds):
        for name in names[r % len(names):] + names[: r % len(names)]:
            started = time.perf_counter()
            backends[name].encode(texts, batch_size=BATCH, normalize_embeddings=True)
            rates[name].append(len(texts) / (time.perf_counter() - started))
            print(f"  round {r + 1} {name}: {rates[name][-1]:.1f} chunks/s", flush=True)
    return {name: statistics.median(v) for name, v in rates.items()}


def dense_ndcg(chunk_vectors: np.ndarray, sources: list[str], query_vectors: np.ndarray,
               qids: list[str], qrels: dict) -> float:
    scores = query_vectors @ chunk_vectors.T
    rankings = {}
    for row, q in enumerate(qids):
        top = np.argpartition(-scores[row], DEPTH)[:DEPTH]
        top = top[np.argsort(-scores[row][top], kind="stable")]
        rankings[q] = scifact.doc_ranking([(sources[i], float(scores[row][i])) for i in top])
    return scifact.mean_ndcg(rankings, qrels, qids)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--speed-chunks", type=int, default=3000)
    parser.add_argument("--store", help="a store.sqlite of SciFact at chunk size 500, to reuse its torch vectors")
    parser.add_argument("--via", choices=["auto", "optimum", "onnxruntime"], default="auto")
    parser.add_argument("--work", help="directory for the exported ONNX files (default: a temporary one)")
    parser.add_argument("--skip-quality", action="store_true")
    parser.add_argument("--skip-speed", action="store_true")
    args = parser.parse_args()
    scifact.require_data()

    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError as exc:
        print(f"skipped: ONNX Runtime is not installed ({exc}). To run this benchmark, in a separate environment:\n"
              f"  {PIP_LINE}\nor, for sentence-transformers' own ONNX backend:\n  {PIP_LINE_OPTIMUM}")
        return 0
    why_not = optimum_works()
    via = args.via
    if via == "auto":
        via = "optimum" if why_not is None else "onnxruntime"
        if why_not:
            reason = why_not.splitlines()[0][:160]
            print(f"note: optimum unavailable ({reason}); exporting with torch.onnx + onnxruntime")
    elif via == "optimum" and why_not:
        print(f"skipped: sentence-transformers' ONNX backend needs optimum-onnx ({why_not.splitlines()[0][:160]}).\n"
              f"  {PIP_LINE_OPTIMUM}\nor run with --via onnxruntime ({PIP_LINE})")
        return 0

    import onnxruntime as ort
    import torch
    import transformers

    import sentence_transformers

    work = Path(args.work or tempfile.mkdtemp(prefix="onnx-minilm-"))
    work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    backends = load_backends(via, work)
    print(f"backends ready in {time.perf_counter() - started:.0f} s (route: {via}, files in {work}); "
          f"torch {torch.__version__} ({torch.get_num_threads()} threads), onnxruntime {ort.__version__}, "
          f"transformers {transformers.__version__}, sentence-transformers {sentence_transformers.__version__}")

    texts, sources = corpus_chunks()
    torch_vectors = None
    if args.store:
        stored = store_chunks(args.store)
        if stored:
            texts, sources, torch_vectors = stored

    rates = {}
    if not args.skip_speed:
        sample = texts[: args.speed_chunks]
        print(f"\nspeed: {len(sample)} chunks, {args.rounds} alternating rounds, batch {BATCH}")
        rates = speed(backends, sample, args.rounds)

    ndcg, agreement = {}, {}
    if not args.skip_quality:
        queries, qrels = scifact.load_queries(), scifact.load_qrels("train")
        qids = sorted(qrels)
        print(f"\nquality: {len(texts)} chunks of {len(set(sources))} documents, {len(qids)} train queries")
        reference = None
        for name, model in backends.items():
            started = time.perf_counter()
            if name == "torch fp32" and torch_vectors is not None:
                vectors = torch_vectors
            else:
                vectors = np.asarray(model.encode(texts, batch_size=BATCH, normalize_embeddings=True), dtype=np.float32)
            qv = np.asarray(model.encode([queries[q] for q in qids], batch_size=BATCH, normalize_embeddings=True),
                            dtype=np.float32)
            ndcg[name] = dense_ndcg(vectors, sources, qv, qids, qrels)
            if reference is None:
                reference = vectors
            agreement[name] = float(np.mean(np.sum(vectors * reference, axis=1)))
            print(f"  {name}: nDCG@10 {ndcg[name]:.4f}, mean cosine to torch {agreement[name]:.4f} "
                  f"({time.perf_counter() - started:.0f} s)", flush=True)

    base_rate, base_ndcg = rates.get("torch fp32"), ndcg.get("torch fp32")
    print("\n| backend | chunks/s (median) | vs torch | nDCG@10 dense | diff to torch | cosine to torch | verdict |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name in backends:
        rate, score = rates.get(name), ndcg.get(name)
        ratio = f"{rate / base_rate:.2f}x" if rate and base_rate else "-"
        diff = score - base_ndcg if score is not None and base_ndcg is not None else None
        if name == "torch fp32":
            verdict = "baseline (current default)"
        elif diff is None or rate is None:
            verdict = "not measured"
        elif diff < -TOLERANCE:
            verdict = f"reject: nDCG drops more than {TOLERANCE}"
        elif rate <= base_rate:
            verdict = "keep torch: not faster"
        else:
            verdict = f"eligible: within {TOLERANCE} and faster"
        print(f"| {name} | {f'{rate:.1f}' if rate else '-'} | {ratio} | {f'{score:.4f}' if score is not None else '-'} "
              f"| {f'{diff:+.4f}' if diff is not None else '-'} "
              f"| {f'{agreement[name]:.4f}' if name in agreement else '-'} | {verdict} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
