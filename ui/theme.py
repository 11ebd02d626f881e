"""Look of the notebook: a Gradio theme with local fonts (no requests to font CDNs) and our CSS."""

from __future__ import annotations

from pathlib import Path

import gradio as gr

ASSETS = Path(__file__).resolve().parent.parent / "assets"

THEME = gr.themes.Soft(
    primary_hue="indigo",
    secondary_hue="sky",
    neutral_hue="slate",
    font=["Inter", "ui-sans-serif", "system-ui", "Segoe UI", "Roboto", "sans-serif"],
    font_mono=["ui-monospace", "SFMono-Regular", "Menlo", "Consolas", "monospace"],
)


def css_paths() -> list[Path]:
    return [ASSETS / "style.css"]


def script() -> str:
    """The page's own script: citation links open their passage (see assets/notebook.js)."""
    return (ASSETS / "notebook.js").read_text(encoding="utf-8")
