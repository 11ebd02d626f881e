"""The ingest's progress bar: one fraction that grows with every file and every OCR'd page and ends at 1."""

from __future__ import annotations

import shutil

import pytest

from rag.collection import Collection
from rag.progress import IngestProgress


def _fractions(events) -> list[float]:
    tracker = IngestProgress()
    return [tracker.update(*event) for event in events]


def test_every_file_moves_the_bar_and_the_end_is_whole():
    events = []
    for i, name in enumerate(["a.txt", "b.txt", "c.txt", "d.txt"]):
        events += [("fetch", i, 4, name), ("extract", i + 1, 4, name), ("chunk", 3, 3, name)]
    events += [("embed", 6, 12, None), ("embed", 12, 12, None)]
    events += [("index", n, 4, name) for n, name in enumerate(["a.txt", "b.txt", "c.txt", "d.txt"], start=1)]
    events += [("done", 4, 4, None)]
    values = _fractions(events)
    after_each_file = [values[i * 3 + 2] for i in range(4)]
    assert after_each_file == sorted(set(after_each_file))  # four different steps, not one stuck value
    assert after_each_file[-1] == pytest.approx(0.5)  # all read, none indexed
    assert values == sorted(values) and values[-2] == pytest.approx(1.0) and values[-1] == 1.0


def test_pages_read_by_ocr_move_the_bar_within_their_file():
    events = [("fetch", 0, 2, "scan.tiff")] + [("ocr", n, 5, "scan.tiff") for n in range(1, 6)]
    values = _fractions(events)
    assert len(set(values[1:])) == 5 and values == sorted(values)
    assert values[-1] == pytest.approx(0.5 * 1 / 2)  # one of two sources read, nothing indexed yet


def test_sources_with_nothing_to_index_count_whole_and_groups_follow_their_documents():
    events = [("fetch", 0, 3, "same.txt"), ("extract", 1, 3, "same.txt"), ("chunk", 0, 0, "same.txt"),
              ("fetch", 1, 3, "bad.txt"), ("chunk", 0, 0, "bad.txt"),  # a load that failed says no extract
              ("fetch", 2, 3, "new.txt"), ("extract", 3, 3, "new.txt"), ("chunk", 2, 2, "new.txt")]
    values = _fractions(events)
    assert values[2] == pytest.approx(1 / 3) and values[4] == pytest.approx(2 / 3)
    assert _fractions(events + [("embed", 2, 2, None), ("index", 1, 1, "new.txt")])[-1] == pytest.approx(1.0)


def test_a_sites_pages_arriving_ready_move_the_bar():
    """Add a site: the crawl reports each page read out of the most it may read; the end is whole anyway."""
    events = []
    for n in range(1, 4):
        events += [("fetch", n, 10, f"p{n}"), ("chunk", 1, 1, f"p{n}")]
    events += [("embed", 3, 3, None), ("index", 3, 3, "p3"), ("done", 3, 3, None)]
    values = _fractions(events)
    assert values == sorted(values) and len(set(values[:6:2])) == 3 and values[-1] == 1.0


@pytest.mark.skipif(shutil.which("tesseract") is None, reason="OCR needs Debian's tesseract-ocr")
def test_a_real_ingest_reports_each_file_each_page_and_the_end(settings, tmp_path):
    from PIL import Image, ImageDraw, ImageFont

    frames = []
    for word in ["harbour", "lighthouse", "breakwater"]:
        frame = Image.new("RGB", (1200, 500), "white")
        ImageDraw.Draw(frame).text((80, 200), f"The {word} at dawn.", fill="black",
                                   font=ImageFont.load_default(size=48))
        frames.append(frame)
    scan = tmp_path / "scan.tiff"
    frames[0].save(scan, save_all=True, append_images=frames[1:])
    texts = []
    for n in range(3):
        texts.append(tmp_path / f"note{n}.txt")
        texts[-1].write_text(f"Note {n} is about the {['otter', 'heron', 'badger'][n]}.\n")
    events = []
    coll = Collection.open(settings)
    coll.ingest([str(texts[0]), str(scan), str(texts[1]), str(texts[2])],
                progress=lambda *event: events.append(event))
    tracker = IngestProgress()
    seen = [(event[0], tracker.update(*event)) for event in events]
    values = [value for _, value in seen]
    assert values == sorted(values) and values[-1] == 1.0 and seen[-1][0] == "done"
    ocr = [value for stage, value in seen if stage == "ocr"]
    assert len(ocr) == 3 and len(set(ocr)) == 3  # each page of the scan moves the bar
    read = [value for stage, value in seen if stage == "extract"]
    assert len(read) == 4 and len(set(read)) == 4  # and each file

    again = []  # the same files again: nothing to index, and the bar still goes to the end
    coll.ingest([str(texts[0]), str(scan)], progress=lambda *event: again.append(event))
    assert [e[0] for e in again if e[0] == "chunk"] == ["chunk", "chunk"] and again[-1][0] == "done"
    assert _fractions(again)[-2] == pytest.approx(1.0)
