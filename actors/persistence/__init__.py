"""Persistence: the single writer (group commit), the schema and its migrations, the queries.

``actor`` runs rounds on a backend (``sqlite`` by default); ``schema`` holds the migrations as data;
``queries`` is the one place for the SQL the account and the front door need.
"""

from .actor import Backend as Backend
from .actor import Persistence as Persistence
from .actor import PersistenceStats as PersistenceStats
from .actor import persistence_actor as persistence_actor
from .errors import Fenced as Fenced
from .errors import IntegrityError as IntegrityError
from .items import Claim as Claim
from .items import CommittedEvent as CommittedEvent
from .items import EventRecord as EventRecord
from .rows import Statement as Statement
from .rows import dec as dec
from .rows import insert as insert
from .rows import text as text
from .rows import upsert as upsert
from .schema import SCHEMA_VERSION as SCHEMA_VERSION
from .schema import migrate as migrate
from .sqlite import Reader as Reader
from .sqlite import open_connection as open_connection

__all__ = [
    "SCHEMA_VERSION",
    "Backend",
    "Claim",
    "CommittedEvent",
    "EventRecord",
    "Fenced",
    "IntegrityError",
    "Persistence",
    "PersistenceStats",
    "Reader",
    "Statement",
    "dec",
    "insert",
    "migrate",
    "open_connection",
    "persistence_actor",
    "text",
    "upsert",
]
