"""Per-user quotas under --auth: how many documents, and how much disk, the collections a user owns may hold.

`--user-quota-docs` counts the documents of every collection the user owns; `--user-quota-mb` the disk their
collections and uploads take in the index directory (the local store: a Milvus server keeps no files here,
so the app refuses that flag with one). Both are checked before an ingest starts: a batch that would pass
the limit is refused in one sentence, and nothing of it is fetched.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from rag.errors import RagError

MB = 1024 * 1024


class QuotaExceeded(RagError):
    """An ingest would take a user past their quota."""


@dataclass(frozen=True)
class Quota:
    documents: int = 0  # 0: no limit
    megabytes: float = 0.0  # 0: no limit

    @property
    def enabled(self) -> bool:
        return bool(self.documents or self.megabytes)

    def check(self, documents: int, adding: int, used_bytes: int, upload_bytes: int) -> None:
        """Refuse a batch that adds `adding` documents (`upload_bytes` of uploads) to `documents` and `used_bytes`."""
        if self.documents and documents + adding > self.documents:
            raise QuotaExceeded(f"Your collections hold {documents} of the {self.documents} documents you may keep, "
                                f"and this would add {adding}; delete some, or ask the admin for more.")
        if self.megabytes and used_bytes + upload_bytes > self.megabytes * MB:
            raise QuotaExceeded(f"Your collections and uploads take {used_bytes / MB:.1f} MB of the "
                                f"{self.megabytes:g} MB you may use, and this would add {upload_bytes / MB:.1f} MB; "
                                "delete some documents, or ask the admin for more.")


def disk_bytes(*paths: Path) -> int:
    """The bytes the files under `paths` take (missing paths take none)."""
    total = 0
    for path in paths:
        for root, _dirs, files in os.walk(path):
            for name in files:
                try:
                    total += os.stat(os.path.join(root, name)).st_size
                except OSError:
                    pass  # removed meanwhile (a temp file, a replaced index)
    return total
