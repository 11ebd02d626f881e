"""The running app under several simultaneous users, and how soon after start its page is usable.

    python benchmarks/bench_load.py [--users 8] [--turns 2] [--max-tokens 16] [--starts 3] [--no-browser]

Start-up: the app is started `--starts` times as a subprocess on 127.0.0.1 with an empty index; for
each start we note the seconds from process start to the first HTTP 200 of `/`, and (with Debian's
chromium) to the page being interactive in a headless browser: header shown, the load events done
(the documents note filled) and the Ingest button enabled.

Load: one more app, a local http.server for the pages, and `--users` threads released together,
each with its own gradio client (its own session): it picks its own collection, ingests its page
(even users by URL, odd users by upload), searches twice, chats `--turns` times and exports the
conversation (tests/app_users.py). Reported: requests served, errors (must be 0), answers or
sessions that mixed (must be 0), p50/p95 of search latency and of time to first token (from
joining the chat queue to the first streamed piece, so queueing is included), and the order in
which users joined the model queue and got their first token.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from app_users import run_users, write_site  # noqa: E402
from e2e_harness import ARGS, CHROMIUM, AppProcess, LocalSite  # noqa: E402


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


# The page is usable: header drawn, the Ingest button enabled, and the load events have filled the note.
INTERACTIVE = """() => {
    const q = (s) => document.querySelector(s);
    return !!(q('#header') && q('#ingest-btn') && !q('#ingest-btn').disabled
              && q('#docs-note') && q('#docs-note').innerText.trim().length > 0);
}"""


def load_average() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


# ---------------------------------------------------------------- start-up


def measure_startups(workdir: Path, starts: int, use_browser: bool) -> list[dict]:
    """Seconds from process start to the first 200 of `/`, and to an interactive page in the browser."""
    rows = []
    browser_ctx = _browser() if use_browser else None
    browser = browser_ctx.__enter__() if browser_ctx else None
    try:
        for n in range(starts):
            app = AppProcess(workdir, index_dir=workdir / f"startup-index-{n}")
            try:
                app.wait_ready(poll_s=0.05)
                row = {"first_200_s": round(app.first_200_s, 2), "load_avg": load_average()}
                if browser is not None:
                    page = browser.new_page()
                    page.goto(app.url)
                    page.wait_for_function(INTERACTIVE, timeout=120_000, polling=50)
                    row["interactive_s"] = round(time.monotonic() - app.started, 2)
                    page.close()
                rows.append(row)
                print(f"start {n + 1}: {row}", flush=True)
            finally:
                app.stop()
    finally:
        if browser_ctx:
            browser_ctx.__exit__(None, None, None)
    return rows


class _browser:
    def __enter__(self):
        from playwright.sync_api import sync_playwright

        self.pw = sync_playwright().start()
        self.browser = self.pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        return self.browser

    def __exit__(self, *exc):
        self.browser.close()
        self.pw.stop()


# ---------------------------------------------------------------- load


def measure_load(workdir: Path, users: int, turns: int, max_tokens: int) -> dict:
    site_root = workdir / "site"
    write_site(site_root, users)
    site = LocalSite(site_root)
    app = AppProcess(workdir, "--max-tokens", str(max_tokens), index_dir=workdir / "load-index")
    try:
        app.wait_ready()
        load_before = load_average()
        started = time.monotonic()
        runs = run_users(users, app.url, site.url, site_root, workdir / "downloads", turns=turns)
        wall = time.monotonic() - started
        server_alive = app.proc.poll() is None
    finally:
        app.stop()
        site.close()
    return summarise(runs, wall, load_before, server_alive)


def summarise(runs, wall: float, load_before: str, server_alive: bool) -> dict:
    searches = [s for r in runs for s in r.search_s]
    ttfts = [t for r in runs for t in r.ttft_s]
    # Queue fairness: the model queue is first come, first served, so first tokens should follow join order.
    chats = sorted((j, f, r.user) for r in runs for j, f in zip(r.chat_joined, r.chat_first_token))
    joined_order = [u for _, _, u in chats]
    served_order = [u for _, _, u in sorted(chats, key=lambda c: c[1])]
    inversions = sum(1 for a in range(len(chats)) for b in range(a + 1, len(chats)) if chats[a][1] > chats[b][1])
    t0 = min((j for j, _, _ in chats), default=0.0)
    return {
        "users": len(runs),
        "wall_s": round(wall, 1),
        "requests_served": sum(r.calls for r in runs),
        "errors": [f"user{r.user}: {e}" for r in runs for e in r.errors],
        "mixed": [f"user{r.user} saw {m}" for r in runs for m in r.mixed],
        "problems": [f"user{r.user}: {p}" for r in runs for p in r.problems],
        "server_alive": server_alive,
        "search_p50_s": _round(percentile(searches, 0.5)),
        "search_p95_s": _round(percentile(searches, 0.95)),
        "ttft_p50_s": _round(percentile(ttfts, 0.5)),
        "ttft_p95_s": _round(percentile(ttfts, 0.95)),
        "chat_p50_s": _round(statistics.median([c for r in runs for c in r.chat_s]) if ttfts else None),
        "chat_join_order": joined_order,
        "chat_first_token_order": served_order,
        "chat_order_inversions": inversions,
        "per_user": [
            {"user": r.user, "ok": r.ok, "calls": r.calls, "search_s": [round(s, 2) for s in r.search_s],
             "chat_joined_at_s": [round(j - t0, 2) for j in r.chat_joined],
             "ttft_s": [round(t, 2) for t in r.ttft_s], "finished_at_s": round((r.finished or t0) - t0, 1),
             "history": r.history}
            for r in runs
        ],
        "load_avg_before": load_before,
        "load_avg_after": load_average(),
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=8)
    parser.add_argument("--turns", type=int, default=2, help="chat questions per user (the second is a follow-up)")
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--starts", type=int, default=3, help="start-up measurements (0 to skip)")
    parser.add_argument("--no-browser", action="store_true", help="measure start-up without the browser")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="bench-load-") as tmp:
        workdir = Path(tmp)
        print(f"cpus {os.cpu_count()} · load average {load_average()}", flush=True)
        startups = measure_startups(workdir, args.starts, CHROMIUM is not None and not args.no_browser)
        load = measure_load(workdir, args.users, args.turns, args.max_tokens)
    result = {"cpus": os.cpu_count(), "startup": startups, "load": load}
    print(json.dumps(result, indent=2, ensure_ascii=False))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2, ensure_ascii=False))
    failed = load["errors"] or load["mixed"] or load["problems"] or not load["server_alive"]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
