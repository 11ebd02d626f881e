"""The GPT4All backend, through the gpt4all package (which bundles its own llama.cpp)."""

from __future__ import annotations

import os
import queue
import threading
from typing import Iterator

from rag.errors import RagError
from rag.generators.base import Generator, Message, StatsTimer, StopScanner
from rag.models import gpt4all_compatible

# gpt4all evaluates prompts in batches of at most this many tokens.
_MAX_BATCH = 128
_DONE = object()


class GPT4AllGenerator(Generator):
    """A GGUF model in GPT4All, fed the same fully templated prompt as the llama.cpp backend."""

    name = "gpt4all"

    def __init__(self, model_path: str | os.PathLike, **kwargs):
        super().__init__(model_path, **kwargs)
        self._llm = None
        self._vocab = None
        try:
            from gpt4all import GPT4All
        except ImportError:
            raise RagError("The gpt4all backend needs the gpt4all package; run `pip install gpt4all`.") from None
        # Newer pre-tokenizer names are unknown to gpt4all's llama.cpp; a copy names an identical one.
        self.load_path = gpt4all_compatible(self.model_path, self.models_dir)
        try:
            self._llm = GPT4All(
                self.load_path.name, model_path=self.load_path.parent, allow_download=False,
                n_threads=self.n_threads, n_ctx=self.n_ctx, ngl=self.n_gpu_layers,
                device=None if self.n_gpu_layers == 0 else "gpu")
        except Exception as exc:  # gpt4all raises bare Exception("Model not loaded") on failure
            raise RagError(f"GPT4All could not load {self.model_path.name} ({str(exc)[:100]}); its bundled "
                           "llama.cpp may not support this model, try --backend llamacpp.") from None

    @property
    def context_size(self) -> int:
        return self.n_ctx

    def count_tokens(self, text: str) -> int:
        """gpt4all's Python API exposes no tokenizer; use llama.cpp's, loaded vocabulary-only from the
        same file (tests check both give the same tokens), else let gpt4all evaluate the text."""
        if self._vocab is None:
            try:
                import llama_cpp
            except ImportError:
                return self._count_by_evaluation(text)
            self._vocab = llama_cpp.Llama(str(self.load_path), vocab_only=True, verbose=False)
        return len(self._vocab.tokenize(text.encode("utf-8"), add_bos=True, special=True))

    def _count_by_evaluation(self, text: str) -> int:
        model = self._model()
        with self._lock:
            model.prompt_model(text, "%1%2", lambda *_: True, n_predict=0, n_batch=_MAX_BATCH,
                               reset_context=True, special=True)
            return model.context.n_past

    def stream(self, messages: list[Message], **params) -> Iterator[str]:
        p = self.params(**params)
        prompt = self.format_prompt(messages)
        n_prompt = self.count_tokens(prompt)
        max_tokens = self.reply_budget(n_prompt, p.max_tokens)
        scanner = StopScanner(p.stop)
        with self._lock:
            timer, finish, pieces = StatsTimer(n_prompt), "cancelled", self._run(prompt, max_tokens, p, scanner)
            try:
                for piece in pieces:
                    timer.token()
                    if text := scanner.feed(piece):
                        yield text
                    if scanner.stopped:
                        break
                if tail := scanner.flush():
                    yield tail
                finish = "stop" if scanner.stopped or self._generated(n_prompt) < max_tokens else "length"
            finally:
                pieces.close()
                self.last_stats = timer.finish(self._generated(n_prompt), finish)

    def _run(self, prompt: str, max_tokens: int, p, scanner: StopScanner) -> Iterator[str]:
        """Run the blocking C call in a thread and hand its pieces over through a queue; closing
        this iterator tells the model to stop and waits for it, so the lock covers the whole call."""
        model, out, cancel = self._model(), queue.Queue(), threading.Event()

        def on_token(token_id: int, piece: str) -> bool:
            # gpt4all reports its own errors (e.g. a prompt over the context) as token -1.
            out.put(RagError(f"GPT4All refused the prompt: {piece}") if token_id == -1 else piece)
            return not (cancel.is_set() or scanner.stopped)

        def work() -> None:
            try:
                # "%1%2": the prompt is already templated; special=True parses its control tokens.
                model.prompt_model(prompt, "%1%2", on_token, n_predict=max_tokens, top_k=p.top_k,
                                   top_p=p.top_p, min_p=0.0, temp=p.temperature, n_batch=min(self.n_batch, _MAX_BATCH),
                                   repeat_penalty=p.repeat_penalty, repeat_last_n=64, reset_context=True,
                                   special=True)
            except Exception as exc:  # an error here would otherwise end the answer silently
                reason = " ".join(str(exc).split())[:120] or type(exc).__name__
                out.put(RagError(f"GPT4All failed while answering ({reason}); the answer is incomplete, "
                                 "so try again or use --backend llamacpp."))
            finally:
                out.put(_DONE)

        thread = threading.Thread(target=work, daemon=True)
        thread.start()
        try:
            while (piece := out.get()) is not _DONE:
                if isinstance(piece, RagError):
                    raise piece
                yield piece
        finally:
            cancel.set()
            thread.join()

    def _generated(self, n_prompt: int) -> int:
        return max(0, self._model().context.n_past - n_prompt) if self._llm else 0

    def close(self) -> None:
        with self._lock:
            if self._llm is not None:
                self._llm.close()
                self._llm = None
            if self._vocab is not None:
                self._vocab.close()
                self._vocab = None

    def _model(self):
        if self._llm is None:
            raise RagError("This GPT4All model was closed; load it again.")
        return self._llm.model
