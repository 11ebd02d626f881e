"""The llama.cpp backend, through llama-cpp-python."""

from __future__ import annotations

import os
from typing import Iterator

from rag.errors import RagError
from rag.generators.base import Generator, Message, StatsTimer
from rag.interrupt import checkpoint


class _TokenCounter:
    """A stopping criterion that never stops: it counts sampled tokens, which the text stream hides."""

    def __init__(self):
        self.n = 0

    def __call__(self, input_ids, logits) -> bool:
        self.n += 1
        return False


def _completion_tokens(calls: int, max_tokens: int, finish: str, stops: tuple[str, ...]) -> int:
    """Sampled tokens from the counter's calls: llama-cpp-python consults the criterion once more
    after its loop, and an end-of-generation token is sampled but not part of the reply."""
    n = min(calls - 1, max_tokens)
    return max(0, n - 1) if finish == "stop" and not stops else max(0, n)


def eval_step(model_bytes: int, n_batch: int) -> int:
    """Prompt tokens evaluated between two interrupt checks: 64 for a model up to 128 MB (about a
    quarter of a second of work on two busy cores), halved for each doubling of the model, never
    under 16 (smaller batches waste the CPU). Fixed per model, so a prompt is always cut the same way."""
    step, size = 64, 128 << 20
    while step > 16 and model_bytes > size:
        step, size = step // 2, size * 2
    return max(1, min(n_batch, step))


def _interruptible(llama_cpp):
    """llama-cpp-python's Llama, but evaluating a prompt in slices with `checkpoint()` before each,
    so Stop ends a long prompt's evaluation within a slice instead of after the whole prompt.

    A stopped evaluation leaves the slices done in the KV cache, matched as a prefix by the next call."""

    class Llama(llama_cpp.Llama):
        eval_step = 64

        def eval(self, tokens) -> None:
            for i in range(0, len(tokens), self.eval_step):
                checkpoint()
                super().eval(tokens[i:i + self.eval_step])

    return Llama


def _prompt_cache(llama_cpp, capacity_bytes: int):
    """llama-cpp-python's RAM cache, but counting the logits each saved state also holds
    (the stock one counts only the KV bytes, which lets memory grow far past its capacity)."""

    class PromptCache(llama_cpp.LlamaRAMCache):
        @property
        def cache_size(self) -> int:
            return sum(s.llama_state_size + getattr(s.scores, "nbytes", 0) for s in self.cache_state.values())

    return PromptCache(capacity_bytes=capacity_bytes)


class LlamaCppGenerator(Generator):
    """A GGUF model in llama.cpp. The KV cache keeps the last prompt, so a prompt that starts the
    same way as the previous one only evaluates its new tail."""

    name = "llamacpp"
    supports_grammar = True

    def __init__(self, model_path: str | os.PathLike, *, prompt_cache_mb: int = 256, **kwargs):
        super().__init__(model_path, **kwargs)
        self._llm = None
        try:
            import llama_cpp
        except ImportError:
            raise RagError("The llamacpp backend needs llama-cpp-python; run `pip install llama-cpp-python`.") from None
        self._lib = llama_cpp
        try:
            self._llm = _interruptible(llama_cpp)(
                model_path=str(self.model_path), n_ctx=self.n_ctx, n_batch=self.n_batch,
                n_threads=self.n_threads, n_threads_batch=self.n_threads,
                n_gpu_layers=self.n_gpu_layers, seed=self.defaults.seed, verbose=False)
        except (ValueError, RuntimeError, OSError) as exc:
            raise RagError(f"llama.cpp could not load {self.model_path.name} ({str(exc)[:120]}); check that it "
                           "is a complete GGUF model of an architecture this llama-cpp-python supports.") from None
        self._llm.eval_step = eval_step(self.model_path.stat().st_size, self.n_batch)
        if prompt_cache_mb > 0:
            # Saved KV states keyed by tokens: a chat follow-up finds its answer prompt's shared
            # beginning even though the condense call ran in between.
            self._llm.set_cache(_prompt_cache(llama_cpp, prompt_cache_mb << 20))

    @property
    def context_size(self) -> int:
        return self._model().n_ctx()

    def count_tokens(self, text: str) -> int:
        return len(self._model().tokenize(text.encode("utf-8"), add_bos=True, special=True))

    def stream(self, messages: list[Message], **params) -> Iterator[str]:
        p = self.params(**params)
        prompt = self.format_prompt(messages)
        n_prompt = self.count_tokens(prompt)
        max_tokens = self.reply_budget(n_prompt, p.max_tokens)
        counter = _TokenCounter()
        with self._lock:
            timer, finish = StatsTimer(n_prompt), "cancelled"
            try:
                chunks = self._model().create_completion(
                    prompt, max_tokens=max_tokens, temperature=p.temperature, top_p=p.top_p, top_k=p.top_k,
                    min_p=0.0, repeat_penalty=p.repeat_penalty, seed=p.seed, stop=list(p.stop), stream=True,
                    stopping_criteria=self._lib.StoppingCriteriaList([counter]), grammar=self._grammar(p.grammar))
                for chunk in chunks:
                    choice = chunk["choices"][0]
                    if choice["text"]:
                        timer.token()
                        yield choice["text"]
                    finish = choice.get("finish_reason") or finish
            finally:
                self.last_stats = timer.finish(_completion_tokens(counter.n, max_tokens, finish, p.stop), finish)

    def _grammar(self, text: str | None):
        if not text:
            return None
        try:
            return self._lib.LlamaGrammar.from_string(text, verbose=False)
        except ValueError:
            raise RagError("The reply's grammar could not be parsed; check its GBNF rules.") from None

    def forget_prompts(self) -> None:
        """Empty the KV cache and the saved prompt states, so the next prompt is evaluated cold."""
        with self._lock:
            self._model().reset()
            if self._llm.cache is not None:
                self._llm.cache.cache_state.clear()

    def close(self) -> None:
        with self._lock:
            if self._llm is not None:
                self._llm.close()
                self._llm = None

    def _model(self):
        if self._llm is None:
            raise RagError("This llama.cpp model was closed; load it again.")
        return self._llm
