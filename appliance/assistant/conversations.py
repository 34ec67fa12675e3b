"""Conversations saved on the box, each private to the device that had it.

A device is a random id the portal keeps in a cookie (no login); every read and write here names the device,
so a conversation id guessed or copied from another device finds nothing. A conversation holds its turns
(question, answer, the passages cited); its waiting answers are jobs that name it (jobs.py).
"""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass

from .sqlite_store import SqliteStore

SCHEMA = """
CREATE TABLE IF NOT EXISTS conversations (
    id TEXT PRIMARY KEY,
    device TEXT NOT NULL,
    title TEXT NOT NULL,
    created REAL NOT NULL,
    updated REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS conversations_device ON conversations (device, updated);
CREATE TABLE IF NOT EXISTS conversation_turns (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    conversation TEXT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    question TEXT NOT NULL,
    answer TEXT NOT NULL,
    passages TEXT NOT NULL,
    created REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS conversation_turns_conversation ON conversation_turns (conversation, id);
"""

TITLE_CHARS = 120


class TitleError(ValueError):
    """A conversation's new title is empty or too long."""


@dataclass(frozen=True)
class Conversation:
    id: str
    title: str
    created: float
    updated: float

    def to_json(self) -> dict:
        return {
            "id": self.id,
            "title": self.title,
            "created": self.created,
            "updated": self.updated,
            "url": f"/conversations/{self.id}",
        }


def new_id() -> str:
    return secrets.token_urlsafe(16)


def title_of(question: str) -> str:
    question = " ".join(question.split())
    return question if len(question) <= TITLE_CHARS else question[: TITLE_CHARS - 1].rstrip() + "…"


class ConversationStore(SqliteStore):
    SCHEMA = SCHEMA

    def create(self, device: str, question: str) -> Conversation:
        now, cid = time.time(), new_id()
        self._run("INSERT INTO conversations VALUES (?,?,?,?,?)", (cid, device, title_of(question), now, now))
        return Conversation(cid, title_of(question), now, now)

    def get(self, cid: str, device: str) -> Conversation | None:
        rows = self._rows(
            "SELECT id, title, created, updated FROM conversations WHERE id = ? AND device = ?", (cid, device)
        )
        return Conversation(*rows[0]) if rows else None

    def list(self, device: str) -> list[Conversation]:
        rows = self._rows(
            "SELECT id, title, created, updated FROM conversations WHERE device = ? ORDER BY updated DESC", (device,)
        )
        return [Conversation(*r) for r in rows]

    def rename(self, cid: str, device: str, title: str) -> bool:
        title = " ".join(str(title).split())
        if not title:
            raise TitleError("a conversation's title must not be empty")
        if len(title) > TITLE_CHARS:
            raise TitleError(f"a conversation's title is at most {TITLE_CHARS} characters")
        return self._run("UPDATE conversations SET title = ? WHERE id = ? AND device = ?", (title, cid, device)) == 1

    def delete(self, cid: str, device: str) -> bool:
        return self._run("DELETE FROM conversations WHERE id = ? AND device = ?", (cid, device)) == 1

    def add_turn(self, cid: str, question: str, answer: str, passages: list[dict]) -> None:
        now = time.time()
        with self._lock:
            self._conn.execute(
                "INSERT INTO conversation_turns (conversation, question, answer, passages, created) VALUES (?,?,?,?,?)",
                (cid, question, answer, json.dumps(passages, ensure_ascii=False), now),
            )
            self._conn.execute("UPDATE conversations SET updated = ? WHERE id = ?", (now, cid))

    def turns(self, cid: str) -> list[dict]:
        rows = self._rows(
            "SELECT question, answer, passages, created FROM conversation_turns WHERE conversation = ? ORDER BY id",
            (cid,),
        )
        return [{"q": r[0], "a": r[1], "passages": json.loads(r[2]), "created": r[3]} for r in rows]
