"""Who may read, change and share a collection: its owner, its shares, the admin. The one home of the rule.

Under `--auth` each collection has an owner and a list of shares: named users, or everyone who can log in
(`EVERYONE`), each either read-only or read-write. The owner and the admin may also share and take shares
back; only the admin moves ownership. A collection without a record (made before owners existed)
belongs to the admin. Without `--auth` there is one person, and everything is theirs.

The record lives where the collection lives (`rag.store.locate.read_access` / `write_access`: a file
beside the local store's database, a row of the docs collection on Milvus), so app instances agree.

Each person names collections in a space of their own, so that choosing a name never tells whether someone
else has one by it: alice's "notes" and bob's "notes" are two collections. The store keeps a user's collection
under their name's namespace (`AccessRule.stored_name`: the name and a digest of the user); the admin's, those
made before owners existed, and every collection without --auth under the plain name. A person calls another's
collection "owner/name" (`AccessRule.shown_name`), which is how shared collections are listed to them.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field, replace

from rag.errors import RagError

FORMAT_VERSION = 1
EVERYONE = "*"
READ, WRITE = "read", "write"
LEVELS = (READ, WRITE)
# The one sentence for a collection a user may not open, and for one that does not exist: the notebook's
# sentence for an empty collection, so that a refusal tells neither apart.
HIDDEN = "Collection {name!r} is empty; ingest something in step 1 first."
# Adding to a collection named as another person's ("owner/name") that this user may not change: the same
# sentence whether it exists or not.
NOT_YOURS = ("You can add documents only to your own collections and to those shared with you read-write; "
             "{name!r} is neither. Choose a name of your own.")
READ_ONLY_SHARE = "Collection {name!r} is shared with you read-only; only its owner can let you change it."


class AccessDenied(RagError):
    """A user asked for a collection they may not see, or for a change they may not make."""


def hidden(name: str) -> AccessDenied:
    return AccessDenied(HIDDEN.format(name=name))


def refused(name: str, want: str, readable: bool) -> AccessDenied:
    """The refusal of `want` (read, write, create, manage) on an existing collection, saying no more than
    the user may know: nothing at all of a collection they cannot read."""
    if not readable:
        return AccessDenied(NOT_YOURS.format(name=name)) if want == "create" else hidden(name)
    if want == "manage":
        return AccessDenied(f"Only the owner of collection {name!r} can share it, delete it or take shares back.")
    return AccessDenied(READ_ONLY_SHARE.format(name=name))


@dataclass(frozen=True)
class Access:
    """A collection's owner and shares: {user or EVERYONE: READ or WRITE}."""

    owner: str
    shares: dict[str, str] = field(default_factory=dict)
    deleted_at: float = 0.0   # when it was moved to the trash (rag.libraries); 0: it is not in the trash
    deleted_by: str = ""

    def to_dict(self) -> dict:
        data = {"format_version": FORMAT_VERSION, "owner": self.owner, "shares": dict(sorted(self.shares.items()))}
        return data | ({"deleted_at": self.deleted_at, "deleted_by": self.deleted_by} if self.deleted_at else {})

    @classmethod
    def from_dict(cls, data: dict | None) -> "Access | None":
        """The record as stored; None for no record. A record of a newer format is refused, not guessed at."""
        if not data:
            return None
        if data.get("format_version") != FORMAT_VERSION:
            raise RagError(f"A collection's sharing record is format {data.get('format_version')!r}; this program "
                           f"reads format {FORMAT_VERSION}. Update the program.")
        shares = {str(u): v for u, v in (data.get("shares") or {}).items() if v in LEVELS}
        return cls(owner=str(data.get("owner") or ""), shares=shares,
                   deleted_at=float(data.get("deleted_at") or 0.0), deleted_by=str(data.get("deleted_by") or ""))

    def shared(self, who: str, level: str | None) -> "Access":
        """A copy with `who` given `level` (None takes their share back)."""
        shares = {u: v for u, v in self.shares.items() if u != who}
        if level is not None:
            shares[who] = check_level(level)
        return replace(self, shares=shares)


_NAMESPACE = re.compile(r"\.u[0-9a-f]{10}$")
NAME_LIMIT = 64  # rag.store.manifest.validate_collection_name


def namespace(user: str, n: int = 0) -> str:
    """The ending of `user`'s collection names in the store: a digest, so a stored name does not name its maker.
    The nth (n > 0) is for a name whose first place is held by a collection moved to another owner."""
    return ".u" + hashlib.sha256((user if n == 0 else f"{user}\n{n}").encode("utf-8")).hexdigest()[:10]


def label(stored: str) -> str:
    """A stored collection name without its namespace: the name its owner gave it."""
    return _NAMESPACE.sub("", stored)


def check_level(level: str) -> str:
    if level not in LEVELS:
        raise RagError(f"Unknown share level {level!r}; choose one of: {', '.join(LEVELS)}.")
    return level


@dataclass(frozen=True)
class AccessRule:
    """The rule for one app: `users` are those who can log in (empty: no --auth, one person), `admin` one of them."""

    users: tuple[str, ...] = ()
    admin: str = ""

    @property
    def enabled(self) -> bool:
        return bool(self.users)

    def owner(self, record: Access | None) -> str:
        """The collection's owner; one made before owners existed belongs to the admin."""
        return record.owner if record is not None and record.owner else self.admin

    def is_admin(self, user: str) -> bool:
        return not self.enabled or (bool(user) and user == self.admin)

    def level(self, user: str, record: Access | None) -> str | None:
        """What `user` may do with the collection: "own", WRITE, READ or None (nothing, not even see it)."""
        if not self.enabled or self.is_admin(user) or (user and user == self.owner(record)):
            return "own"
        if not user or record is None:
            return None
        mine, everyone = record.shares.get(user), record.shares.get(EVERYONE)
        if WRITE in (mine, everyone):
            return WRITE
        return READ if READ in (mine, everyone) else None

    def can_read(self, user: str, record: Access | None) -> bool:
        return self.level(user, record) is not None

    def can_write(self, user: str, record: Access | None) -> bool:
        return self.level(user, record) in ("own", WRITE)

    def can_manage(self, user: str, record: Access | None) -> bool:
        """Share, take shares back, delete the collection: its owner and the admin."""
        return self.level(user, record) == "own"

    def allows(self, want: str, user: str, record: Access | None) -> bool:
        """Whether `user` may `want` (read, write, create, manage) the existing collection of `record`."""
        if want == "read":
            return self.can_read(user, record)
        if want in ("write", "create"):
            return self.can_write(user, record)
        return self.can_manage(user, record)

    def stored_name(self, owner: str, name: str, n: int = 0) -> str:
        """Where `owner`'s collection `name` is kept: under the plain name for the admin and without --auth,
        else with `owner`'s namespace; the nth place (n > 0) when the ones before are held by collections moved
        to others (rag.libraries looks). A name ending like a namespace is kept for the notebook itself."""
        if _NAMESPACE.search(name):
            raise RagError(f"Collection names ending in {name[-12:]!r} are kept for the notebook's own use; "
                           "choose another name.")
        if n == 0 and (not self.enabled or self.is_admin(owner)):
            return name
        stored = name + namespace(owner, n)
        if len(stored) > NAME_LIMIT:
            raise RagError(f"Collection name {name!r} is too long; use up to {NAME_LIMIT - 12} characters.")
        return stored

    def shown_name(self, stored: str, viewer: str, record: Access | None) -> str:
        """What `viewer` calls the collection stored as `stored`: its name when it is theirs, else
        "owner/name"."""
        owner = self.owner(record)
        return label(stored) if not self.enabled or owner == viewer else f"{owner}/{label(stored)}"

    def new_record(self, user: str) -> Access:
        """The record of a collection `user` creates now."""
        return Access(owner=user if self.enabled else "")

    def check_user(self, who: str) -> str:
        """A share's target: one of the users, or EVERYONE; anyone else is refused by name."""
        who = (who or "").strip()
        if who in ("everyone", EVERYONE):
            return EVERYONE
        if who not in self.users:
            raise RagError(f"{who!r} is not a user of this notebook; share with one of them, or with everyone.")
        return who


def read(settings, name: str) -> Access | None:
    """Collection `name`'s record, where the collection lives (no record: made before owners existed)."""
    from rag.store.locate import read_access

    return Access.from_dict(read_access(settings, name))


def create(settings, name: str, record: Access) -> Access | None:
    """Write the first record of collection `name` unless another process wrote one first; the record now kept."""
    from rag.store.locate import create_access

    create_access(settings, name, record.to_dict())
    return read(settings, name)


def write(settings, name: str, record: Access) -> None:
    """Replace collection `name`'s record at once; a crash leaves the old record or the new one."""
    from rag.store.locate import write_access

    write_access(settings, name, record.to_dict())
