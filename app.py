"""The browser notebook: `python app.py` serves it on http://127.0.0.1:7860.

This file is the composition root. It reads flags and environment variables into a `Settings`
and a `LaunchConfig`, builds the services, hands them to the Blocks in `ui/` and launches.
Nothing heavy is imported here: Gradio is imported in `main`, models load on first use.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import ipaddress
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from rag import limits
from rag.errors import RagError
from rag.settings import Settings, env_flag, env_value, load_settings

ASSETS = Path(__file__).resolve().parent / "assets"


@dataclass(frozen=True)
class LaunchConfig:
    """How the server is exposed: where it listens, who may log in, what guests may do."""

    host: str = "127.0.0.1"
    port: int = 7860
    share: bool = False
    auth: tuple[tuple[str, str], ...] = ()
    read_only: bool = False
    max_upload_mb: int = 25
    admin: str = ""  # --admin; under --auth the users file's first user when not given
    user_quota_docs: int = 0  # --user-quota-docs; 0: no limit
    user_quota_mb: float = 0.0  # --user-quota-mb; 0: no limit

    @property
    def exposed(self) -> bool:
        """True when people other than this machine's user can reach the app."""
        return self.share or not is_loopback(self.host)

    @property
    def admin_name(self) -> str:
        """Who may download models and change app-wide settings under --auth ('' without --auth)."""
        if not self.auth:
            return ""
        return self.admin or self.auth[0][0]

    @property
    def access_rule(self):
        """Who may open which collection (rag.access): under --auth its owner, those it is shared with, the admin."""
        from rag.access import AccessRule

        return AccessRule(users=tuple(user for user, _ in self.auth), admin=self.admin_name)

    @property
    def quota(self):
        """What each user but the admin may keep under --auth (rag.quota)."""
        from rag.quota import Quota

        return Quota(documents=self.user_quota_docs, megabytes=self.user_quota_mb)

    def is_admin(self, user: str) -> bool:
        """Whether `user` (the logged-in name, '' without --auth) may act as the admin.

        Without --auth on an app only this machine reaches, the one person is the admin; an exposed app
        without --auth has no admin at all (anyone on the link could be anyone).
        """
        if not self.auth:
            return not self.exposed
        return bool(user) and user == self.admin_name


def is_loopback(host: str) -> bool:
    """True for localhost and loopback addresses; 0.0.0.0 and names of this machine are not."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_auth(value: str | None) -> tuple[tuple[str, str], ...]:
    """`user:password`, or a file with one `user:password` per line (blank lines and # ignored)."""
    if not value:
        return ()
    path = Path(value).expanduser()
    lines = path.read_text(encoding="utf-8").splitlines() if path.is_file() else [value]
    pairs = []
    for line in lines:
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        user, sep, password = line.partition(":")
        if not sep or not user or not password:
            raise RagError(
                "--auth expects user:password or a file of user:password lines; "
                f"got {'a line in ' + str(path) if path.is_file() else repr(value)} without both parts."
            )
        pairs.append((user, password))
    if not pairs:
        raise RagError(f"--auth file {path} holds no user:password lines.")
    return tuple(pairs)


def build_parser() -> argparse.ArgumentParser:
    env = os.environ.get
    parser = argparse.ArgumentParser(prog="app.py", description="Chat with your documents in the browser.")
    parser.add_argument("--host", default=env("RAG_HOST", "127.0.0.1"), help="address to listen on (RAG_HOST)")
    parser.add_argument("--port", type=int, default=env_value(os.environ, "RAG_PORT", int, 7860),
                        help="port (RAG_PORT)")
    parser.add_argument("--index-dir", help="where collections live (RAG_INDEX_DIR)")
    parser.add_argument("--embed-url", help="embed through a server's /v1/embeddings, e.g. http://127.0.0.1:8080/v1 "
                        "(RAG_EMBED_URL); name its model with --embedding-model")
    parser.add_argument("--embedding-model", help="the embedding model: a sentence-transformers id, or the "
                        "server's model name with --embed-url (RAG_EMBEDDING_MODEL)")
    parser.add_argument("--store", help="where collections live, if not in --index-dir: milvus://host:port, "
                        "milvus+https://host or milvus+lite:///path.db (RAG_STORE); the token comes from "
                        "RAG_MILVUS_TOKEN or RAG_MILVUS_TOKEN_FILE")
    parser.add_argument("--collection", help="collection selected at start (RAG_COLLECTION)")
    parser.add_argument("--backend", help="generation backend: llamacpp, gpt4all or openai (RAG_BACKEND)")
    parser.add_argument("--model", help="generation model name or GGUF path; with openai, the server's model (RAG_MODEL)")
    parser.add_argument("--base-url", help="the openai backend's server, e.g. http://127.0.0.1:8080/v1 (RAG_BASE_URL); "
                        "its key comes from RAG_OPENAI_API_KEY or RAG_OPENAI_API_KEY_FILE")
    parser.add_argument("--max-tokens", type=int, help=f"default answer length in tokens, "
                        f"{_range('max_tokens')} (RAG_MAX_TOKENS)")
    parser.add_argument("--temperature", type=float, help="default sampling temperature; 0 answers the same "
                        "every time (RAG_TEMPERATURE, default 0.2)")
    parser.add_argument("-k", type=int, help=f"default chunks to retrieve, {_range('k')} (RAG_K)")
    parser.add_argument("--mode", choices=["dense", "bm25", "hybrid"], help="default retrieval mode (RAG_MODE)")
    parser.add_argument("--answer-style", choices=["auto", "quote", "free"],
                        help="default answer style (RAG_ANSWER_STYLE): quote with small models under auto")
    parser.add_argument(
        "--share", action="store_true", default=env_flag(os.environ, "RAG_SHARE"),
        help="also serve through a temporary public share link (RAG_SHARE=1)",
    )
    parser.add_argument("--auth", default=env("RAG_AUTH"),
                        help="user:password, or a file of such lines (RAG_AUTH); each user then has a private "
                             "library: their own collections and those shared with them, the admin sees all")
    parser.add_argument("--admin", default=env("RAG_ADMIN", ""),
                        help="under --auth, the user who downloads models and changes app-wide settings; "
                             "the users file's first user when not given (RAG_ADMIN)")
    parser.add_argument("--user-quota-docs", type=int, default=env_value(os.environ, "RAG_USER_QUOTA_DOCS", int, 0),
                        help="under --auth, the most documents the collections a user owns may hold; 0 for no "
                             "limit, the admin has none (RAG_USER_QUOTA_DOCS)")
    parser.add_argument("--user-quota-mb", type=float, default=env_value(os.environ, "RAG_USER_QUOTA_MB", float, 0),
                        help="under --auth, the most disk a user's collections and uploads may take in the index "
                             "directory, in MB, checked before each ingest; 0 for no limit, the admin has none; "
                             "local store only (RAG_USER_QUOTA_MB)")
    parser.add_argument(
        "--read-only", action="store_true", default=env_flag(os.environ, "RAG_READ_ONLY"),
        help="guest/demo mode: no ingest, delete or settings changes (RAG_READ_ONLY=1)",
    )
    parser.add_argument(
        "--allow-private-urls", action="store_true",
        help="let URL ingestion reach loopback/private addresses even when the app is exposed",
    )
    parser.add_argument(
        "--max-upload-mb", type=int, default=env_value(os.environ, "RAG_MAX_UPLOAD_MB", int, 25),
        help=f"largest file a user may upload, in MB, {limits.UPLOAD_MB.low:g} to {limits.UPLOAD_MB.high:g} "
             "(RAG_MAX_UPLOAD_MB)",
    )
    parser.epilog = limits.describe()
    return parser


def _range(name: str) -> str:
    bound = limits.SETTINGS[name]
    return f"{bound.low:g} to {bound.high:g}"


def configure(argv: list[str] | None = None, environ: dict | None = None) -> tuple[Settings, LaunchConfig]:
    """Flags and environment variables into the settings and the launch configuration."""
    args = build_parser().parse_args(argv)
    launch = LaunchConfig(
        host=args.host, port=args.port, share=args.share, auth=parse_auth(args.auth),
        read_only=args.read_only, max_upload_mb=args.max_upload_mb, admin=args.admin or "",
        user_quota_docs=args.user_quota_docs, user_quota_mb=args.user_quota_mb,
    )
    if launch.admin and launch.admin not in {user for user, _ in launch.auth}:
        raise RagError(f"--admin {launch.admin!r} is not one of the --auth users; "
                       f"choose one of: {', '.join(user for user, _ in launch.auth) or '(no --auth given)'}.")
    limits.PORT.check(launch.port)
    limits.UPLOAD_MB.check(launch.max_upload_mb)
    overrides = dict(index_dir=args.index_dir, store=args.store, embed_url=args.embed_url,
                     embedding_model=args.embedding_model, collection=args.collection, backend=args.backend,
                     model=args.model, max_tokens=args.max_tokens, base_url=args.base_url,
                     temperature=args.temperature, k=args.k, mode=args.mode, answer_style=args.answer_style)
    settings = load_settings(environ, **overrides)
    _check_quota_flags(launch, settings)
    # Guests must not be able to make this machine fetch addresses on its own network.
    if launch.exposed and not args.allow_private_urls:
        settings = settings.replace(allow_private_urls=False)
    if launch.exposed:  # guests choose among offered models only, never a path of their own
        settings = settings.replace(models_offered_only=True)
    return settings, launch


def _check_quota_flags(launch: LaunchConfig, settings: Settings) -> None:
    from rag.store.locate import on_milvus

    if launch.user_quota_docs < 0 or launch.user_quota_mb < 0:
        raise RagError("--user-quota-docs and --user-quota-mb take 0 (no limit) or more.")
    if launch.quota.enabled and not launch.auth:
        raise RagError("--user-quota-docs and --user-quota-mb limit each user under --auth; give --auth too.")
    if launch.user_quota_mb and on_milvus(settings):
        raise RagError("--user-quota-mb counts the disk of the local store; a Milvus store keeps its data on its "
                       "server, so use --user-quota-docs there.")


def launch(demo, launch_cfg: LaunchConfig) -> None:
    """Serve locally; add a share link if asked, and say in one line when the tunnel can't be made."""
    from ui.guard import launch_options
    from ui.theme import THEME, css_paths, script

    captured = io.StringIO()
    # Gradio prints several lines of advice when a share link fails; we print our own one line.
    with contextlib.redirect_stdout(captured):
        _, local_url, share_url = demo.launch(
            server_name=launch_cfg.host, server_port=launch_cfg.port, share=launch_cfg.share,
            auth=list(launch_cfg.auth) or None, auth_message="local-rag notebook: please log in.",
            prevent_thread_lock=True, quiet=True, max_file_size=f"{launch_cfg.max_upload_mb}mb",
            footer_links=["api"], run_history=False, enable_monitoring=False, ssr_mode=False,
            # Requests Gradio refuses before a callback runs (a file path that was never uploaded, a value
            # outside a component's choices) then reach API clients as a sentence rather than null.
            show_error=True,
            theme=THEME, css_paths=css_paths(), js=script(), favicon_path=str(ASSETS / "favicon.png"),
            **launch_options(),
        )
    print(f"local-rag notebook on {local_url}" + (" (read-only)" if launch_cfg.read_only else ""), flush=True)
    if launch_cfg.share:
        if share_url:
            print(f"Public share link: {share_url}", flush=True)
        else:
            print(f"Share link unavailable (tunnel unreachable); serving locally only at {local_url}", flush=True)
    demo.block_thread()


def main(argv: list[str] | None = None) -> int:
    try:
        settings, launch_cfg = configure(argv)
    except (RagError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    from ui.blocks import build_app
    from ui.runtime import Runtime

    runtime = Runtime(settings=settings, read_only=launch_cfg.read_only, max_upload_mb=launch_cfg.max_upload_mb,
                      is_admin=launch_cfg.is_admin, access_rule=launch_cfg.access_rule,
                      quota=launch_cfg.quota)
    demo = build_app(runtime)
    try:
        launch(demo, launch_cfg)
    except KeyboardInterrupt:
        pass
    except OSError as exc:
        print(f"error: cannot serve on {launch_cfg.host}:{launch_cfg.port}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
