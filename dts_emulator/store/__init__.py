"""SQLite persistence for the emulator, one job per module:

- ``store.py``: the :class:`Store` facade the engine uses (see its docstring).
- ``rows.py``: row types and their columns.  ``schema.py``: tables and migrations.
- ``writes.py``: write batching on the writer's connection.  ``transaction.py``: transactions
  and the undo log that keeps memory in step with the disk.
- ``caches.py``, ``messages.py`` (pending-message mirror), ``locks.py`` (entity lock index),
  ``counts.py`` (kept hub counts): the store's memory.
- ``queries.py``: instance and entity queries.  ``reads.py``: the read interface for the
  dashboard and query calls, off the engine's path.
- ``database.py``: the data file's connection, opened and closed in order.
- ``claim.py``: one emulator per database file.  ``datafile.py``: refusing damaged or
  unusable files, and writes once the file is deleted or replaced.  ``checkpoints.py``: WAL
  checkpoints on a thread, and the bound on the -wal file.
- ``errors.py``: SchemaError, DataInUse, DataFileError, StorageError, DataFileGone.
"""

from .errors import DataFileError, DataInUse, SchemaError, StorageError
from .queries import SEARCH_WINDOW
from .reads import Reads
from .rows import ACTIVITY, ENTITY, ORCHESTRATION, EntityRow, InstanceRow, MessageRow
from .schema import MIGRATIONS, SCHEMA_VERSION
from .store import CACHED_HISTORIES, CACHED_ROWS, Store

__all__ = [
    "ACTIVITY", "CACHED_HISTORIES", "CACHED_ROWS", "ENTITY", "MIGRATIONS", "ORCHESTRATION", "SCHEMA_VERSION",
    "SEARCH_WINDOW", "DataFileError", "DataInUse", "EntityRow", "InstanceRow", "MessageRow", "Reads", "SchemaError",
    "Store", "StorageError",
]
