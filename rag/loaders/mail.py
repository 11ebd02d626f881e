"""E-mail (.eml, .msg): the headers a person reads, the body, and the attachments as documents of their own.

An attachment's source is the message's path, `::`, and the attachment's name (again for a message attached
to a message), so that `expand_sources` can list them beside the message and `load_source` can load each.
"""

from __future__ import annotations

import email
import email.policy
import hashlib
from dataclasses import dataclass, field

from rag.documents import Document
from rag.errors import RagError
from rag.loaders.common import TITLE_MAX, one_line
from rag.loaders.markup import html_text

SEPARATOR = "::"
MAX_DEPTH = 3  # a message attached to a message attached to a message, and no deeper
MAX_ATTACHMENTS = 100
HEADERS = ("From", "To", "Cc", "Date", "Subject")


@dataclass
class Message:
    """What the loaders need from an e-mail, whichever its format."""

    headers: dict[str, str]
    plain: str = ""
    html: str = ""
    attachments: list[tuple[str, bytes]] = field(default_factory=list)  # (file name, data)


def parse(data: bytes, name: str) -> Message:
    """An .eml (MIME) or .msg (Outlook) message, by its content."""
    from rag.loaders.common import is_ole

    return _parse_msg(data, name) if is_ole(data) else _parse_eml(data, name)


def message_document(data: bytes, name: str) -> Document:
    """The message as one document: its headers, then its body."""
    message = parse(data, name)
    lines = [f"{key}: {value}" for key, value in message.headers.items() if value]
    body = _body(message)
    if not body and not message.attachments:
        raise RagError(f"{name} has no text; the message has no body and no attachments.")
    names = [attachment for attachment, _ in message.attachments]
    if names:
        lines.append("Attachments: " + ", ".join(names))
    text = "\n".join(lines) + ("\n\n" + body if body else "")
    subject = message.headers.get("Subject", "")
    metadata = {"headers": message.headers, "attachments": names}
    return Document(source=name, text=text, title=(subject or name)[:TITLE_MAX], metadata=metadata)


def attachment_names(data: bytes, name: str) -> list[str]:
    """The sources' tails of every attachment, nested messages opened to MAX_DEPTH, repeats left out."""
    found: list[str] = []
    seen = {hashlib.sha256(data).digest()}

    def walk(data: bytes, prefix: str, depth: int) -> None:
        if depth > MAX_DEPTH or len(found) >= MAX_ATTACHMENTS:
            return
        try:
            message = parse(data, name)
        except RagError:
            return
        for file_name, content in _unique(message.attachments):
            digest = hashlib.sha256(content).digest()
            if digest in seen or len(found) >= MAX_ATTACHMENTS:  # a message that holds itself, or a repeat
                continue
            seen.add(digest)
            found.append(prefix + file_name)
            if _is_message(file_name):
                walk(content, prefix + file_name + SEPARATOR, depth + 1)

    walk(data, "", 1)
    return found


def attachment(data: bytes, name: str, path: list[str]) -> tuple[str, bytes, str]:
    """The attachment at `path` (names, outermost first): its file name, data, and its message's subject."""
    subject = ""
    for depth, wanted in enumerate(path, start=1):
        if depth > MAX_DEPTH:
            raise RagError(f"{name}: attachments nested deeper than {MAX_DEPTH} messages are not read.")
        message = parse(data, name)
        subject = message.headers.get("Subject", "") or subject
        match = dict(_unique(message.attachments)).get(wanted)
        if match is None:
            raise RagError(f"{name} has no attachment {wanted!r}; ingest the message again to list them.")
        data = match
    return path[-1], data, subject


def _unique(attachments: list[tuple[str, bytes]]) -> list[tuple[str, bytes]]:
    """Attachments with names that are unique and hold no separator: `a.pdf`, `a (2).pdf`."""
    out, used = [], set()
    for file_name, data in attachments:
        base = one_line(file_name).replace(SEPARATOR, ":") or "attachment"
        candidate, n = base, 1
        while candidate in used:
            n += 1
            stem, dot, ext = base.rpartition(".")
            candidate = f"{stem} ({n}).{ext}" if dot else f"{base} ({n})"
        used.add(candidate)
        out.append((candidate, data))
    return out


def _is_message(file_name: str) -> bool:
    return file_name.lower().endswith((".eml", ".msg"))


def _body(message: Message) -> str:
    """The plain body; the HTML body's text where there is no plain one, or where it says something else."""
    plain = message.plain.replace("\r\n", "\n").strip()
    html = html_text(message.html) if message.html.strip() else ""
    if not plain:
        return html
    words = set(plain.lower().split())
    html_words = html.lower().split()
    if html_words and sum(w in words for w in html_words) < 0.8 * len(html_words):
        return plain + "\n\n" + html
    return plain


def _parse_eml(data: bytes, name: str) -> Message:
    try:
        parsed = email.message_from_bytes(data, policy=email.policy.default)
        headers = {key: one_line(str(parsed.get(key, ""))) for key in HEADERS}
    except Exception as exc:  # the email package raises many kinds of header error on damaged input
        raise RagError(f"{name} could not be read as an e-mail ({type(exc).__name__}); check the file.") from None
    if not any(headers.values()) and not parsed.is_multipart():
        raise RagError(f"{name} does not look like an e-mail: it has none of the headers {', '.join(HEADERS)}.")
    message = Message(headers)
    for part in parsed.walk():
        if part.is_multipart() and part.get_content_type() != "message/rfc822":
            continue
        file_name = part.get_filename()
        kind = part.get_content_type()
        if kind == "message/rfc822":
            inner = part.get_payload()
            inner = inner[0] if isinstance(inner, list) and inner else inner
            data_of = inner.as_bytes() if hasattr(inner, "as_bytes") else b""
            subject = one_line(str(inner.get("Subject", ""))) if hasattr(inner, "get") else ""
            message.attachments.append(((file_name or subject or "message") + ".eml", data_of))
            continue
        if file_name or part.get_content_disposition() == "attachment":
            message.attachments.append((file_name or "attachment", part.get_payload(decode=True) or b""))
        elif kind == "text/plain" and not message.plain:
            message.plain = _content(part)
        elif kind == "text/html" and not message.html:
            message.html = _content(part)
    return message


def _content(part) -> str:
    try:
        return part.get_content()
    except (LookupError, UnicodeError, AssertionError):  # an unknown or wrong charset: read it as Latin-1
        return (part.get_payload(decode=True) or b"").decode("latin-1")


def _parse_msg(data: bytes, name: str) -> Message:
    import extract_msg

    try:
        msg = extract_msg.openMsg(data)
    except Exception as exc:  # extract-msg and olefile raise their own error types for damaged files
        raise RagError(f"{name} could not be read as an Outlook message ({type(exc).__name__}); "
                       "check that it is a complete .msg file.") from None
    try:
        headers = {"From": msg.sender, "To": msg.to, "Cc": msg.cc, "Date": msg.date, "Subject": msg.subject}
        message = Message({k: one_line(str(v)) if v else "" for k, v in headers.items()})
        message.plain = getattr(msg, "body", "") or ""
        if not message.plain.strip():
            html = getattr(msg, "htmlBody", None) or b""
            message.html = html.decode("utf-8", "replace") if isinstance(html, bytes) else str(html)
        for item in getattr(msg, "attachments", []):
            try:
                file_name = item.longFilename or item.shortFilename or "attachment"
                content = item.data
                if hasattr(content, "exportBytes"):  # an attached message: kept in its own format
                    content = content.exportBytes()
                    file_name = file_name if _is_message(file_name) else file_name + ".msg"
            except Exception:  # a damaged or exotic attachment (an OLE object) costs only itself
                continue
            if isinstance(content, bytes):
                message.attachments.append((file_name, content))
    except Exception as exc:  # a damaged property stream
        raise RagError(f"{name} could not be read as an Outlook message ({type(exc).__name__}); "
                       "check that it is a complete .msg file.") from None
    finally:
        msg.close()
    return message
