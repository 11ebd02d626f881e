"""⚙ Settings: the form that Summarize, Chat and Compare read (backend, model, sampling, retrieval, answer style,
the system prompt and QA template), its checks, the model picker and the note while the tiny default answers,
and the line naming the model in use. The values a browser applied are kept in its localStorage and checked
again when the page loads (`restore_settings`), as any client's values are.
"""

from __future__ import annotations

import gradio as gr

from rag import limits
from rag.quote import STYLES
from rag.retrieval import MODES as SEARCH_MODES
from ui import formatting as fmt
from ui.escaping import escape_markdown, one_line
from ui.models_panel import ModelsPanel, models_section
from ui.runtime import Runtime
from ui.search import check_k
from ui.state import MAX_K, ChatSettings, Session
from ui.status import error_line

MODES = sorted(SEARCH_MODES, key=lambda mode: mode != "hybrid")  # the default first
SETTINGS_KEY = "local-rag-notebook-settings"  # the settings form's values after the last Apply, as JSON
SAVE_FORM_JS = f"(...form) => {{ localStorage.setItem({SETTINGS_KEY!r}, JSON.stringify(form)); }}"


class SettingsForm:
    """The settings form's callbacks over the shared runtime; the chosen values live in each Session."""

    def __init__(self, runtime: Runtime):
        self.runtime = runtime

    @staticmethod
    def values(chat: ChatSettings) -> tuple:
        """The form's values for `chat`, in the order of its fields."""
        return settings_values(chat)

    def system_hint(self) -> str:
        from rag.prompts import FULL_QA_SYSTEM

        return ("Empty: a small model is asked for a short answer in a few words from the sources; a capable "
                "model (over 600M weights, or a server's) is told:\n" + FULL_QA_SYSTEM)

    def template_hint(self) -> str:
        return "Use {context} and {question}, e.g.\nAnswer from the context.\n\n{context}\n\nQuestion: {question}"

    def apply_settings(self, backend, model, temperature, max_tokens, n_ctx, k, mode, answer_style, template,
                       system, session: Session):
        """Keep valid settings in this user's session; a refused one is said and the form shows what is in use."""
        try:
            chosen = self._checked_settings(backend, model, temperature, max_tokens, n_ctx, k, mode, answer_style,
                                            template, system)
        except Exception as exc:  # noqa: BLE001 - refused: say why and put back the settings in use
            return (error_line(exc), self.model_line(session.chat), session, *settings_values(session.chat))
        session.chat = chosen
        return (fmt.settings_line(chosen), self.model_line(chosen), session, *settings_values(chosen))

    def restore_settings(self, kept: str, session: Session):
        """On load: the settings this browser kept from its last Apply (the form's values as JSON), checked
        as any client's values are. Nothing kept leaves the app's own settings; kept values the app now
        refuses (a model since removed) are said, and its own settings stay."""
        import json

        try:
            values = json.loads(kept) if kept else None
        except ValueError:
            values = None
        if self.runtime.read_only and isinstance(values, list) and values:
            return ("This notebook is read-only: the settings kept in this browser from your last Apply are not used "
                    "here, and it answers with its own.", self.model_line(session.chat), session,
                    *settings_values(session.chat))
        if isinstance(values, list) and len(values) == len(settings_values(session.chat)) - 1:
            values.append("")  # kept before the system prompt joined the form
        if self.runtime.read_only or not isinstance(values, list) or len(values) != len(settings_values(session.chat)):
            return (gr.update(), self.model_line(session.chat), session, *settings_values(session.chat))
        try:
            chosen = self._checked_settings(*values)
        except Exception as exc:  # noqa: BLE001 - refused: say why and keep the app's settings
            why = error_line(exc).removeprefix("⚠️ ")
            return (f"⚠️ The settings kept in this browser were not restored: {why}",
                    self.model_line(session.chat), session, *settings_values(session.chat))
        session.chat = chosen
        return (fmt.settings_line(chosen) + " (kept in this browser from your last Apply)",
                self.model_line(chosen), session, *settings_values(chosen))

    def _checked_settings(self, backend, model, temperature, max_tokens, n_ctx, k, mode, answer_style,
                          template, system="") -> ChatSettings:
        self.runtime.require_writable("changing settings")
        from rag.generators import generator_class
        from rag.prompts import Prompts
        from rag.quote import check_style
        from rag.retrieval import check_mode

        generator_class(backend)  # unknown names fail with the list of backends
        check_mode(mode)
        template, system = (template or "").strip(), (system or "").strip()
        if template or system:
            Prompts(**{key: value for key, value in (("qa", template), ("system", system)) if value}).check()
        limits.check_reply_room(int(max_tokens), int(n_ctx))
        chosen = ChatSettings(
            backend=backend, model=(model or "").strip(), temperature=float(temperature),
            max_tokens=int(max_tokens), n_ctx=int(n_ctx), k=check_k(k), mode=mode, template=template, system=system,
            answer_style=check_style(answer_style),
        )
        if chosen.model:
            from rag.models import resolve_model

            resolve_model(chosen.model, self.runtime.settings.models_dir,  # fails now with the names that exist
                          offered_only=getattr(self.runtime.settings, "models_offered_only", False))
        return chosen

    def model_picker(self, session: Session):
        """The model list (the default, the GGUF models found on this machine, the catalogue), and a
        note while the tiny default model answers, saying how to pick a bigger one."""
        from rag.models import CATALOGUE, DEFAULT_MODEL, discover

        found = [m for m in discover(self.runtime.settings.models_dir, session.chat.n_ctx) if m.source != "default"]
        names = {m.name for m in found}
        files = {m.path.name for m in found}
        missing = [e for e in CATALOGUE.values() if e.name != DEFAULT_MODEL and e.filename not in files]
        choices = ([(f"{DEFAULT_MODEL} (the default; tiny)", "")] + [(fmt.found_model_label(m), m.name) for m in found]
                   + [(f"{e.name} · catalogue, not downloaded ({e.size_mb:,} MB)", e.name) for e in missing
                      if e.name not in names])
        if session.chat.model and session.chat.model not in {value for _, value in choices}:
            choices.append((session.chat.model, session.chat.model))  # a typed path stays shown as typed
        return gr.update(choices=choices, value=session.chat.model), self._tiny_model_note(session.chat, found)

    def _tiny_model_note(self, chat: ChatSettings, found: list):
        from rag.models import is_default_model

        if chat.backend == "openai" or not is_default_model(chat.model):
            return gr.update(value="", visible=False)
        from rag.models import DEFAULT_MODEL

        if found:
            names = ", ".join(f"`{one_line(m.name, 60)}`" for m in found[:3])
            which = (f"choose {names}, found on this machine," if len(found) == 1 else
                     f"choose one of the **{len(found)}** models found on this machine, such as {names},")
            offer = f"{which} under **⚙ Settings → Model**, or press **📦 Models** to download a better one"
        else:
            offer = ("press **📦 Models** to download a better one: the one recommended for this machine is chosen "
                     "for you")
        return gr.update(visible=True, value=(
            f"**You are on the tiny default model, {DEFAULT_MODEL}: its answers will be weak.** It is here so the "
            f"notebook works offline on a first run. To answer well, {offer}."))

    def model_line_of(self, session: Session) -> str:
        return self.model_line(session.chat)

    def model_line(self, chat: ChatSettings) -> str:
        """The model in use, always shown under the header."""
        held = self.runtime.holds(chat, chat.backend)
        loaded = self.runtime.loaded_model(chat.backend) if held else None
        if not (loaded or chat.model or self.runtime.settings.model):
            from rag.models import DEFAULT_MODEL  # a name only: nothing is loaded or looked up

            model = f"{DEFAULT_MODEL}, the default"
        else:
            model = loaded or chat.model or self.runtime.settings.model
        # Another model chosen since the last answer loads with the next one: the line names the new one.
        state = "loaded" if loaded else ("loads with the next answer" if self.runtime.is_loaded(chat.backend)
                                         else "loads on first use")
        return (f"**Model in use:** {escape_markdown(chat.backend)} · {escape_markdown(model)} ({state}) · "
                f"k={chat.k} · {chat.mode} · max {chat.max_tokens} new tokens · temperature {chat.temperature:g}")


def settings_values(chat: ChatSettings) -> tuple:
    """The settings form's values, in the order of its fields."""
    return (chat.backend, chat.model, chat.temperature, chat.max_tokens, chat.n_ctx, chat.k, chat.mode,
            chat.answer_style, chat.template, chat.system)


def settings_panel(form: SettingsForm, session, writable: bool, backends: list[str], model_line, tiny_note,
                   models_button) -> dict:
    """One place for the settings that Summarize, Chat and Compare use; returns the model picker."""
    s = form.runtime.settings
    with gr.Accordion("⚙ Settings for Summarize, Chat and Compare", open=False, elem_id="settings") as accordion:
        with gr.Row():
            backend = gr.Dropdown(backends, value=s.backend, label="Backend", interactive=writable,
                                  elem_id="backend")
            # Filled on page load with the models found on this machine; a typed name or path is accepted too.
            model = gr.Dropdown(choices=[(s.model or "default", s.model)], value=s.model, allow_custom_value=True,
                                label="Model (one found on this machine, or type a GGUF path)", filterable=True,
                                interactive=writable, elem_id="model", scale=2)
            # No rounding here (precision): 2.5 reaches check_k and is refused out loud.
            k = gr.Number(value=s.k, label=f"Chunks to retrieve (k, 1 to {MAX_K})",
                          interactive=writable, elem_id="settings-k")
            mode = gr.Radio(MODES, value=s.mode, label="Retrieval mode", interactive=writable)
            answer_style = gr.Radio(list(STYLES), value=s.answer_style, label="Answer style",
                                    info="quote: words of the best-matching source sentence; auto: quote with "
                                    "small models", interactive=writable, elem_id="answer-style")
        with gr.Row():
            temperature = gr.Slider(0, 1.5, value=s.temperature, step=0.05, label="Temperature",
                                    interactive=writable)
            # The ranges are rag/limits.py's, as the README lists them.
            max_tokens = gr.Slider(limits.SETTINGS["max_tokens"].low, limits.SETTINGS["max_tokens"].high,
                                   value=s.max_tokens, step=1, label="Max new tokens",
                                   interactive=writable, elem_id="max-tokens")
            n_ctx = gr.Slider(limits.SETTINGS["n_ctx"].low, limits.SETTINGS["n_ctx"].high, value=s.n_ctx,
                              step=128, label="Context size (tokens)", interactive=writable)
        with gr.Row():
            system = gr.Textbox(label="System prompt (empty = the model's default)", lines=4,
                                placeholder=form.system_hint(), interactive=writable, elem_id="system-prompt")
            template = gr.Textbox(label="Prompt template (empty = the model's default)", lines=4,
                                  placeholder=form.template_hint(), interactive=writable, elem_id="qa-template")
        with gr.Row():
            apply = gr.Button("Apply settings", interactive=writable, elem_id="apply-settings", scale=0)
            applied = gr.Markdown(elem_id="settings-applied")
        fields = [backend, model, temperature, max_tokens, n_ctx, k, mode, answer_style, template, system]
        # ⚙ Settings → 📦 Models, inside the settings accordion, wired to the form it sets.
        models_section(ModelsPanel(form), session, accordion, fields, model_line, tiny_note, models_button, SAVE_FORM_JS)
    # The form then holds the settings in use (the new ones, or the old ones put back): this browser
    # keeps them, and the next load of the page applies them again (restore_settings).
    apply.click(form.apply_settings, [*fields, session], [applied, model_line, session, *fields]).then(
        None, fields, None, js=SAVE_FORM_JS).then(
        form.model_picker, session, [model, tiny_note], show_progress="hidden")
    return {"model": model, "form": fields, "applied": applied}
