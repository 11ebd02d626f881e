"""⚙ Settings → Models: the models on this machine and the catalogue, and downloading one with a
progress bar, cancel and resume, then using it with one click.

Downloads run in the runtime's `Downloads` (one per model, shared by every session), so a closed tab
does not stop one and a second person pressing Download watches the same transfer. On an app others
can reach, only the admin may download (`Runtime.require_admin`, checked here on the server).
"""

from __future__ import annotations


import gradio as gr

from rag.errors import RagError
from rag.models import CATALOGUE, DEFAULT_MODEL, discover, memory_mb, recommended
from rag.models.download import DownloadJob, part_path
from ui.escaping import escape_html, escape_markdown, one_line
from ui.request import user_name
from ui.state import Session
from ui.status import errors_in_status

POLL_S = 0.5  # how often the page's bar is redrawn while a download runs


class ModelsPanel:
    def __init__(self, form):
        self.form = form  # ui.settings_form.SettingsForm: Use applies a model as its Apply does
        self.runtime = form.runtime

    # -- what there is ---------------------------------------------------------------------------------

    def listing(self, request: gr.Request = None):
        """The two tables, the catalogue picker (the recommended model chosen) and whether Download is offered."""
        total, available = memory_mb()
        models_dir = self.runtime.settings.models_dir
        found = discover(models_dir)
        suggested = recommended(total)
        may_download = self.runtime.may_administer(user_name(request))
        text = _found_md(found, available) + "\n\n" + _catalogue_md(models_dir, total, suggested, self.runtime.downloads)
        if not may_download:
            text += ("\n\n*Downloading is for the notebook's admin; the models above marked on this machine can be "
                     "chosen under Settings.*")
        choices = [(f"{e.name} ({e.size_mb:,} MB)", e.name) for e in CATALOGUE.values() if e.name != DEFAULT_MODEL]
        value = suggested.name if suggested else None
        return (text, gr.update(choices=choices, value=value), gr.update(interactive=may_download),
                gr.update(interactive=may_download), self.use_button(value))

    def use_button(self, name: str | None):
        """Use this model is offered for a chosen catalogue model that is on this machine."""
        entry = CATALOGUE.get(name or "")
        return gr.update(visible=entry is not None and entry.is_downloaded(self.runtime.settings.models_dir))

    # -- downloading -----------------------------------------------------------------------------------

    @errors_in_status(3, status=1)
    def download(self, name: str, request: gr.Request = None):
        """Start (or join) the download of `name` and redraw its bar until it ends."""
        entry = _entry(name)
        self.runtime.require_admin(user_name(request), "download models")
        if entry.is_downloaded(self.runtime.settings.models_dir):
            yield progress_html(1.0, entry.filename), f"**{entry.name}** is already on this machine.", \
                gr.update(visible=True)
            return
        job = self.runtime.downloads.start(entry)
        while not job.finished.wait(POLL_S):
            yield progress_html(job.progress.fraction, entry.filename), progress_line(job), gr.update(visible=False)
        if job.error:
            yield progress_html(job.progress.fraction, entry.filename), f"⚠️ {escape_markdown(job.error)}", \
                gr.update(visible=False)
            return
        yield (progress_html(1.0, entry.filename),
               f"Downloaded **{entry.name}** ({entry.size_mb:,} MB), its SHA-256 checked. Press **Use this model**.",
               gr.update(visible=True))

    @errors_in_status(1)
    def cancel(self, name: str, request: gr.Request = None):
        entry = _entry(name)
        self.runtime.require_admin(user_name(request), "download models")
        if not self.runtime.downloads.cancel(entry.name):
            return f"No download of **{entry.name}** is running."
        return f"Cancelling **{entry.name}**; what arrived is kept, and Download resumes from there."

    # -- using one -------------------------------------------------------------------------------------

    def use(self, name: str, session: Session):
        """Answer with `name` from now on: the settings form's model, checked and applied as Apply does."""
        values = list(self.form.values(session.chat))
        values[0] = "llamacpp" if values[0] == "openai" else values[0]  # a downloaded file runs here
        values[1] = name
        applied, line, session, *form = self.form.apply_settings(*values, session)
        if session.chat.model == name:
            seconds = self.runtime.load_seconds(session.chat, session.chat.backend)
            about = f" (about {seconds} s)" if seconds else ""
            applied = f"Now answering with **{escape_markdown(name)}**; the next answer loads it{about}."
        return (applied, line, session, *form)


def _entry(name: str):
    entry = CATALOGUE.get((name or "").strip())
    if entry is None:
        raise RagError(f"Choose a model from the catalogue list first; {name!r} is not one.")
    return entry


def progress_html(fraction: float, label: str) -> str:
    percent = max(0.0, min(100.0, fraction * 100))
    return (f'<div class="download-progress"><progress max="100" value="{percent:.1f}" aria-label="download of '
            f'{escape_html(label)}"></progress> <span class="download-percent">{percent:.0f}%</span></div>')


def progress_line(job: DownloadJob) -> str:
    """'40.2 of 98.4 MB · 12.3 MB/s · about 5 s left', while a download runs."""
    state = job.progress
    if not state.total:
        return f"Asking the hub for **{job.entry.filename}**…"
    resumed = f" (resumed at {state.resumed_from / state.total:.0%})" if state.resumed_from else ""
    left = state.seconds_left
    when = f" · about {_duration(left)} left" if left is not None else ""
    return (f"Downloading **{job.entry.name}**: {state.done / 1e6:,.1f} of {state.total / 1e6:,.1f} MB · "
            f"{state.speed / 1e6:,.1f} MB/s{when}{resumed}")


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"


def _fits(ram_mb: int, memory: int | None) -> str:
    if not memory:
        return "?"
    return "yes" if ram_mb <= memory else "no"


def _found_md(found, available: int | None) -> str:
    if not found:
        return "**On this machine:** no GGUF models found yet."
    rows = ["**On this machine** (fits = needs less than the memory free now)", "",
            "| model | size | quantisation | needs RAM | fits | found in |", "|---|---:|---|---:|---|---|"]
    for m in found:
        rows.append(f"| {escape_markdown(one_line(m.name, 60))} | {m.size_mb:,} MB | "
                    f"{escape_markdown(m.quantisation)} | {m.ram_mb:,} MB | {_fits(m.ram_mb, available)} | "
                    f"{escape_markdown(m.source)} |")
    return "\n".join(rows)


def _catalogue_md(models_dir, total: int | None, suggested, downloads) -> str:
    memory = f"{total / 1024:.0f} GB" if total else "an unknown amount of"
    rows = [f"**Catalogue** (this machine has {memory} memory; ⭐ recommended for it)", "",
            "| model | size | licence | good for | needs RAM | fits | here |", "|---|---:|---|---|---:|---|---|"]
    for e in CATALOGUE.values():
        if e.name == DEFAULT_MODEL:
            continue
        star = "⭐ " if suggested is not None and e.name == suggested.name else ""
        rows.append(f"| {star}{e.name} | {e.size_mb:,} MB | {e.licence} | {escape_markdown(e.description)} | "
                    f"{e.ram_mb:,} MB | {_fits(e.ram_mb, total)} | {_here(e, models_dir, downloads.job(e.name))} |")
    return "\n".join(rows)


def _here(entry, models_dir, job: DownloadJob | None) -> str:
    if entry.is_downloaded(models_dir):
        return "downloaded"
    if job is not None and job.progress.total:  # the hub's own size, known once a download has asked
        state = "downloading" if job.running else "fetched"
        return f"{min(99, int(job.progress.fraction * 100))}% {state}"
    part = part_path(entry, models_dir)
    if part.is_file() and entry.size_mb:  # after a restart: against the catalogue's size
        return f"{min(99, part.stat().st_size * 100 // (entry.size_mb << 20))}% fetched"
    return ""


def models_section(models: ModelsPanel, session, settings: gr.Accordion, form: list, model_line, tiny_note,
                   models_button: gr.Button, save_form_js: str) -> None:
    """Lay out 📦 Models (inside the settings accordion) and wire it: listed when opened, Download with a
    bar, Cancel, and Use, which applies the model as the settings form's Apply does and keeps it."""
    with gr.Accordion("📦 Models: on this machine, and better ones to download", open=False,
                      elem_id="models-panel") as accordion:
        table = gr.Markdown(elem_id="models-table")
        with gr.Row(equal_height=True):
            catalogue = gr.Dropdown(label="Catalogue model", choices=[], scale=2, elem_id="catalogue-model")
            download = gr.Button("Download", variant="primary", scale=0, interactive=False, elem_id="download-model")
            cancel = gr.Button("Cancel", scale=0, interactive=False, elem_id="cancel-download")
            use = gr.Button("Use this model", scale=0, visible=False, elem_id="use-model")
        bar = gr.HTML(elem_id="download-progress")
        status = gr.Markdown(elem_id="download-status")
    listed = [table, catalogue, download, cancel, use]
    accordion.expand(models.listing, None, listed, show_progress="hidden")
    models_button.click(lambda: (gr.update(open=True), gr.update(open=True)), None, [settings, accordion]).then(
        models.listing, None, listed, show_progress="hidden").then(
        None, None, None, js="() => document.querySelector('#models-panel')?.scrollIntoView({block: 'start'})")
    catalogue.input(models.use_button, catalogue, use, show_progress="hidden")
    # A download runs in the runtime and outlives its tab: its bar takes no slot from the answers' queue.
    download.click(models.download, catalogue, [bar, status, use], concurrency_limit=None,
                   concurrency_id="downloads").then(models.listing, None, listed, show_progress="hidden")
    cancel.click(models.cancel, catalogue, status, concurrency_limit=None)
    model = form[1]
    use.click(models.use, [catalogue, session], [status, model_line, session, *form]).then(
        None, form, None, js=save_form_js).then(
        models.form.model_picker, session, [model, tiny_note], show_progress="hidden")
