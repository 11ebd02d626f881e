"""Runs the original LangChain recipe (recipe_reference.py) in its own virtual environment.

The answer benchmark runs in the app's environment and calls run_recipe(); the recipe's packages live
in benchmarks/.venv-recipe, built by `make bench-recipe-venv`. Standard library only.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections import deque
from pathlib import Path
from typing import Iterable

HERE = Path(__file__).resolve().parent
RECIPE_SCRIPT = HERE / "recipe_reference.py"
RECIPE_PYTHON = HERE / ".venv-recipe" / "bin" / "python"


class RecipeError(RuntimeError):
    """The recipe could not be run: its environment is missing or the script failed as a whole."""


def recipe_command(corpus_dir: str | os.PathLike, questions_path: str | os.PathLike, out_path: str | os.PathLike,
                   exclude_titles: Iterable[str] = (), limit: int | None = None,
                   python: str | os.PathLike = RECIPE_PYTHON, n_threads_batch: int | None = None) -> list[str]:
    """The command line that runs recipe_reference.py with the recipe environment's python."""
    command = [str(python), str(RECIPE_SCRIPT), "--corpus", str(corpus_dir), "--questions", str(questions_path),
               "--out", str(out_path)]
    titles = [t for t in exclude_titles if t]
    if titles:
        command += ["--exclude-titles", ",".join(titles)]
    if limit is not None:
        command += ["--limit", str(int(limit))]
    if n_threads_batch:
        command += ["--n-threads-batch", str(int(n_threads_batch))]
    return command


def run_recipe(corpus_dir: str | os.PathLike, questions_path: str | os.PathLike,
               exclude_titles: Iterable[str] = (), limit: int | None = None, *,
               python: str | os.PathLike = RECIPE_PYTHON, out_path: str | os.PathLike | None = None,
               log_path: str | os.PathLike | None = None, echo: bool = True,
               n_threads_batch: int | None = None) -> list[dict]:
    """Answer the questions through the recipe; one dict per question, in file order:
    {"id", "answer", "sources", "seconds", "error"} (error is None, or the recipe's error with an empty answer).

    The recipe's own progress lines go to stderr when echo is set; its whole output (llama.cpp's log
    included) goes to log_path when given. out_path keeps the JSONL (a ".partial" file while it runs).
    """
    if not Path(python).is_file():
        raise RecipeError(f"The recipe's environment is missing ({python} not found); "
                          "run `make bench-recipe-venv` first.")
    with tempfile.TemporaryDirectory(prefix="recipe-") as tmp:
        out = Path(out_path) if out_path is not None else Path(tmp) / "answers.jsonl"
        out.unlink(missing_ok=True)  # a file left by an earlier run must not pass for this one's
        command = recipe_command(corpus_dir, questions_path, out, exclude_titles, limit, python, n_threads_batch)
        tail = _run(command, Path(log_path) if log_path is not None else Path(tmp) / "recipe.log", echo)
        if not out.is_file():
            raise RecipeError("The recipe reference failed before writing its answers:\n" + "".join(tail))
        with open(out, encoding="utf-8") as fh:
            return [json.loads(line) for line in fh if line.strip()]


def _run(command: list[str], log_path: Path, echo: bool) -> deque[str]:
    """Run the command, logging all its output and echoing its progress lines; the last lines back."""
    tail: deque[str] = deque(maxlen=20)
    with open(log_path, "w", encoding="utf-8") as log, subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            text=True, errors="replace") as proc:
        try:
            for line in proc.stdout:
                log.write(line)
                tail.append(line)
                if echo and (line.startswith("recipe:") or line.startswith("error:")):
                    sys.stderr.write(line)
                    sys.stderr.flush()
        except BaseException:  # Ctrl-C or the caller's error: don't leave the recipe running
            proc.kill()
            raise
    if proc.returncode != 0:
        raise RecipeError(f"The recipe reference exited with status {proc.returncode}:\n" + "".join(tail))
    return tail
