"""Each person's library: which collections they see and by what name, what they may do with each, and the
trash of whole collections. The store's side of `rag.access`, for the notebook and anything serving people.

Names are the ones people use: their own collections by name, another's as "owner/name" (rag.access says how
they are stored). Every method takes such a name and the user, and returns or refuses in one sentence that
tells a person nothing of a collection they may not read.

A deleted collection is marked so in its access record (when, by whom) and leaves every list and route at
once, as if it were missing. Its owner (or the admin) restores it whole within `rag.trash.TRASH_DAYS` days, also after a
restart; after that the next look at the trash drops it from the store, with its uploads and deleted documents.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import NamedTuple

from rag import access
from rag.access import Access, AccessRule
from rag.errors import RagError
from rag.store import validate_collection_name
from rag.store.locate import collection_exists, collection_names, drop_collection
from rag.trash import Trash, expires_at

PLACES = 16  # how many of an owner's collections of one name may have been moved to others
IN_TRASH = ("Collection {name!r} is in the trash; restore it from 🗑 Trash, or choose another name for a "
            "new collection.")


class BadName(RagError):
    """A name no collection can have, with the sentence saying why."""


def _valid(make):
    """What `make` returns; a name it refuses is a BadName."""
    try:
        return make()
    except RagError as exc:
        raise BadName(str(exc)) from None


def uploads_folder(settings, stored: str) -> Path:
    """Where the uploads to collection `stored` are kept. A collection name starts with a letter or digit and
    holds no separator, so "_uploads" never is one and the folder is always directly under it."""
    return Path(settings.index_dir) / "_uploads" / validate_collection_name(stored)


class _Place(NamedTuple):
    stored: str
    exists: bool
    record: Access | None


@dataclass(frozen=True)
class DeletedCollection:
    name: str        # as the person asking calls it
    stored: str
    deleted_at: float
    deleted_by: str

    @property
    def expires_at(self) -> float:
        return expires_at(self.deleted_at)


class Libraries:
    """The collections of one store as each user of `rule` sees them."""

    def __init__(self, settings, rule: AccessRule | None = None, read_only: bool = False):
        """`read_only`: nothing is created, and nothing expired is dropped (the caller refuses other changes)."""
        self.settings = settings
        self.rule = rule or AccessRule()
        self.read_only = read_only

    # -- names -------------------------------------------------------------------------------------

    def stored(self, name: str, user: str) -> str:
        """The store's name of what `user` calls collection `name` (the place a new one would take, when there
        is none); refused in one sentence when `name` is no collection name. One moved to another owner is found
        under the name it was made with."""
        if not self.rule.enabled:  # the name is the store's: nothing to look up
            return _valid(lambda: validate_collection_name((name or self.settings.collection).strip()))
        return self._find(name, user).stored

    def _find(self, name: str, user: str) -> _Place:
        """Collection `name` as `user` calls it: its stored name, whether it exists and its record, each read
        from the store once."""
        name = (name or self.settings.collection).strip()
        if not self.rule.enabled:
            stored = _valid(lambda: validate_collection_name(name))
            exists = collection_exists(self.settings, stored)
            return _Place(stored, exists, self.record(stored) if exists else None)
        owner, _, own_name = name.rpartition("/")
        owner = owner or user
        _valid(lambda: validate_collection_name(own_name))
        for n in range(PLACES):  # the owner's places for the name; one held by a collection moved away is skipped
            direct = _valid(lambda: validate_collection_name(self.rule.stored_name(owner, own_name, n)))
            if not collection_exists(self.settings, direct):
                break
            record = self.record(direct)
            if record is None and direct != own_name:
                return _Place(direct, True, None)  # its record not written yet: being made by that owner
            if self.rule.owner(record) == owner:
                return _Place(direct, True, record)
        else:
            raise RagError(f"Collection name {own_name!r} has been moved away too often; choose another name.")
        for stored in collection_names(self.settings):
            record = self.record(stored)
            if access.label(stored) == own_name and self.rule.owner(record) == owner \
                    and self.rule.can_read(user, record):
                return _Place(stored, True, record)
        return _Place(direct, False, None)

    def names(self, user: str) -> list[str]:
        """The collections `user` may read, by the names they use, sorted; none in the trash."""
        shown = []
        for stored in collection_names(self.settings):
            record = self.record(stored)
            if self.rule.can_read(user, record) and not (record and record.deleted_at):
                shown.append(self.rule.shown_name(stored, user, record))
        return sorted(shown)

    def record(self, stored: str) -> Access | None:
        return access.read(self.settings, stored)

    # -- checks ------------------------------------------------------------------------------------

    def check(self, name: str, user: str, want: str = "read") -> str:
        """The stored name of collection `name`, once `user` may `want` it (read, write, create, manage):
        create also when it does not exist yet and the name is theirs to use."""
        return self._checked(name, user, want).stored

    def _checked(self, name: str, user: str, want: str) -> _Place:
        place = self._find(name, user)
        record, exists = place.record, place.exists
        if record is not None and record.deleted_at:
            if want == "create" and self.rule.can_manage(user, record):
                raise RagError(IN_TRASH.format(name=name))
            exists = False
        if not exists:
            if want == "create" and not self.read_only and self._own_name(name, user):
                return place
            raise access.refused(name, want, readable=False) if want == "create" and not self.read_only \
                else access.hidden(name)
        if self.rule.enabled and not self.rule.allows(want, user, record):
            raise access.refused(name, want, self.rule.can_read(user, record))
        return place

    def readable(self, name: str, user: str) -> str | None:
        """The stored name of collection `name` when it exists, is not in the trash and `user` may read it."""
        place = self._readable(name, user)
        return None if place is None else place.stored

    def level(self, name: str, user: str) -> str | None:
        """What `user` may do with collection `name`: own, write, read, or None (missing, or not theirs)."""
        place = self._readable(name, user)
        return None if place is None else self.rule.level(user, place.record)

    def _readable(self, name: str, user: str) -> _Place | None:
        try:
            return self._checked(name, user, "read")
        except (access.AccessDenied, BadName):
            return None  # a store that cannot be reached is said, not taken for a missing collection

    def _own_name(self, name: str, user: str) -> bool:
        owner, slash, _ = name.strip().rpartition("/")
        return not slash or owner == user

    # -- sharing -----------------------------------------------------------------------------------

    def sharing(self, name: str, user: str) -> tuple[str, dict]:
        """Collection `name`'s owner and shares, for its owner or the admin (anyone else: as a missing one)."""
        record = self._checked(name, user, "manage").record
        return self.rule.owner(record), dict(record.shares) if record else {}

    def share(self, name: str, user: str, who: str, level: str | None) -> None:
        """Give `who` (a user, or everyone) `level` on collection `name`, or take it back (None)."""
        stored, _, record = self._checked(name, user, "manage")
        who = self.rule.check_user(who)
        record = record or Access(self.rule.owner(None))
        if who == self.rule.owner(record):
            raise RagError(f"{who} owns collection {name!r} already.")
        access.write(self.settings, stored, record.shared(who, level))

    def move_owner(self, name: str, user: str, new_owner: str) -> str:
        """Make `new_owner` the owner of collection `name`; the admin only. Shares stay as they were. The name
        the admin calls it now ("new_owner/name", or its name when the admin took it)."""
        if not self.rule.is_admin(user):
            raise access.AccessDenied("Only the notebook's admin can move a collection to another owner.")
        stored, _, record = self._checked(name, user, "manage")
        new_owner = self.rule.check_user(new_owner)
        if new_owner == access.EVERYONE:
            raise RagError("A collection is owned by one user; share it with everyone instead.")
        record = record or Access(self.rule.owner(None))
        if new_owner != self.rule.owner(record) and access.label(stored) in self.names(new_owner):
            raise RagError(f"{new_owner} has a collection named {access.label(stored)!r} already, and one person "
                           "cannot keep two of one name; move it once theirs is deleted.")
        moved = replace(record.shared(new_owner, None), owner=new_owner)
        access.write(self.settings, stored, moved)
        return self.rule.shown_name(stored, user, moved)

    def owners(self, user: str) -> list[tuple[str, str, dict]]:
        """Every collection out of the trash, by the admin's name for it, with its owner and shares."""
        if not self.rule.is_admin(user):
            raise access.AccessDenied("Only the notebook's admin can see who owns every collection.")
        rows = []
        for stored in collection_names(self.settings):
            record = self.record(stored)
            if not (record and record.deleted_at):
                rows.append((self.rule.shown_name(stored, user, record), self.rule.owner(record),
                             dict(record.shares) if record else {}))
        return sorted(rows)

    # -- the trash of collections ------------------------------------------------------------------

    def delete(self, name: str, user: str, now: float | None = None) -> str:
        """Move collection `name` to the trash (its owner or the admin); the stored name it had."""
        stored, _, record = self._checked(name, user, "manage")
        record = record or Access(self.rule.owner(None))
        access.write(self.settings, stored, replace(record, deleted_at=time.time() if now is None else now,
                                                    deleted_by=user))
        return stored

    def deleted(self, user: str, now: float | None = None) -> list[DeletedCollection]:
        """The collections in the trash that `user` may restore, newest first. Those kept for TRASH_DAYS days
        are dropped from the store here, for good."""
        now = time.time() if now is None else now
        found = []
        for stored in collection_names(self.settings):
            record = self.record(stored)
            if record is None or not record.deleted_at:
                continue
            entry = DeletedCollection(self.rule.shown_name(stored, user, record), stored, record.deleted_at,
                                      record.deleted_by)
            if entry.expires_at <= now and not self.read_only:
                self._drop(stored)
            elif self.rule.can_manage(user, record):
                found.append(entry)
        return sorted(found, key=lambda e: e.deleted_at, reverse=True)

    def restore(self, stored: str, user: str) -> str:
        """Take collection `stored` (from `deleted`) out of the trash; the name `user` calls it."""
        gone = RagError("That collection is no longer in the trash; refresh the list.")
        try:
            record = self.record(validate_collection_name(stored or "")) if collection_exists(self.settings, stored) \
                else None
        except RagError:
            raise gone from None
        if record is None or not record.deleted_at or not self.rule.can_manage(user, record):
            raise gone
        access.write(self.settings, stored, replace(record, deleted_at=0.0, deleted_by=""))
        return self.rule.shown_name(stored, user, record)

    def _drop(self, stored: str) -> None:
        drop_collection(self.settings, stored)
        shutil.rmtree(uploads_folder(self.settings, stored), ignore_errors=True)
        Trash(self.settings.index_dir).drop(stored)
