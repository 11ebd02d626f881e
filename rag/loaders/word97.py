"""Word 97-2003 (.doc) text, read from the document's piece table.

No maintained package on PyPI reads .doc text in Python (antiword and catdoc are C programs; textract
calls them), so this reads the format's one structure that holds the text: the CLX in the table stream,
whose pieces say where each run of characters lies in the WordDocument stream and whether it is stored
as cp1252 or UTF-16 ([MS-DOC] 2.8.35, 2.9.38). Fields keep their result, not their code.
"""

from __future__ import annotations

import io
import re
import struct

from rag.errors import RagError

_FIB_FLAGS = 0x000A
_FC_CLX = 0x01A2
_ENCRYPTED, _TABLE1 = 0x0100, 0x0200
MAX_CHARACTERS = 50_000_000


def doc_text(data: bytes, name: str) -> str:
    """The document's main text, paragraphs on their own lines, table cells as `a | b`."""
    import olefile

    try:
        with olefile.OleFileIO(io.BytesIO(data)) as ole:
            word = ole.openstream("WordDocument").read()
            flags = struct.unpack_from("<H", word, _FIB_FLAGS)[0]
            if flags & _ENCRYPTED:
                raise RagError(f"{name} is password-protected; remove the password in Word and load it again.")
            table = ole.openstream("1Table" if flags & _TABLE1 else "0Table").read()
            fc_clx, lcb_clx = struct.unpack_from("<II", word, _FC_CLX)
            text = _pieces(word, table[fc_clx:fc_clx + lcb_clx])
    except RagError:
        raise
    except Exception as exc:  # olefile and struct errors: a damaged or foreign file
        raise RagError(f"{name} could not be read as a Word 97-2003 document ({type(exc).__name__}); "
                       "save it as .docx and load that.") from None
    return _clean(text)


def _pieces(word: bytes, clx: bytes) -> str:
    at = 0
    while at < len(clx) and clx[at] == 0x01:  # Prc: property modifiers, skipped
        at += 3 + struct.unpack_from("<H", clx, at + 1)[0]
    if at >= len(clx) or clx[at] != 0x02:
        raise ValueError("no piece table")
    size = struct.unpack_from("<I", clx, at + 1)[0]
    plc = clx[at + 5:at + 5 + size]
    count = (len(plc) - 4) // 12
    cps = struct.unpack_from(f"<{count + 1}I", plc, 0)
    parts, total = [], 0
    for i in range(count):
        length = cps[i + 1] - cps[i]
        total += length
        if length < 0 or total > MAX_CHARACTERS:
            raise ValueError("piece table out of range")
        fc = struct.unpack_from("<I", plc, 4 * (count + 1) + 8 * i + 2)[0]
        if fc & 0x40000000:
            start = (fc & 0x3FFFFFFF) // 2
            parts.append(word[start:start + length].decode("cp1252", "replace"))
        else:
            parts.append(word[fc:fc + 2 * length].decode("utf-16-le", "replace"))
    return "".join(parts)


def _clean(text: str) -> str:
    text = re.sub(r"\x13[^\x13\x14\x15]*\x14", "", text)  # a field's code, up to its separator
    text = re.sub(r"\x13[^\x13\x14\x15]*\x15", "", text)  # a field with no result
    text = text.replace("\x15", "").replace("\x07\x07", "\n").replace("\x07", " | ")  # cells, then rows
    text = text.replace("\r", "\n").replace("\x0b", "\n").replace("\x0c", "\n\n")
    text = "".join(c for c in text if c in "\n\t" or c >= " ")
    lines = [" ".join(line.split()) for line in text.split("\n")]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()
