"""When work fails: retried after a backoff, handed to the next worker, or after MAX_ATTEMPTS failed for good.

Storage errors are always retried (nothing is wrong with the work, and nothing is lost).
"""

from __future__ import annotations

import logging

from .backoff import MAX_ATTEMPTS, Backoff
from .dispatch import Lease
from .endings import Endings
from .errors import STORAGE_ERRORS, Refused
from .post import Post
from .streams import Streams
from .transactions import Transactions

log = logging.getLogger("dts_emulator")


class _Completing:
    """``Retries.completing(token)``: yields the released lease; a failed apply retries later."""

    __slots__ = ("retries", "token", "lease")

    def __init__(self, retries: Retries, token: str):
        self.retries, self.token = retries, token

    def __enter__(self) -> Lease:
        self.lease = self.retries._streams.release(self.token)
        return self.lease

    def __exit__(self, kind, exc, tb) -> None:
        retries, lease = self.retries, self.lease
        if kind is None or isinstance(exc, Refused):
            retries.forget(lease)
            if kind is not None:  # refused, but committed: what follows it may run at once
                retries.requeue_now(lease)
        else:
            retries.work_failed(lease, exc)


class Retries:
    def __init__(self, streams: Streams, post: Post, backoff: Backoff, endings: Endings, transactions: Transactions):
        self._streams = streams
        self._post = post
        self._backoff = backoff
        self._endings = endings
        self._transactions = transactions

    def completing(self, token: str) -> _Completing:
        """End a lease for its completion; if applying it fails, its work is retried later."""
        return _Completing(self, token)

    def work_failed(self, lease: Lease, error: BaseException | str) -> None:
        """A lease's work failed: retry it after a delay, or after MAX_ATTEMPTS in a row, fail it for good."""
        if isinstance(error, STORAGE_ERRORS):
            self._post.retry_later(lease.hub, lease.kind, lease.target, error)
            return
        if not self._backoff.exhausted((lease.hub, lease.kind, lease.target)):
            if isinstance(error, BaseException):
                self._post.retry_later(lease.hub, lease.kind, lease.target, error)
            else:  # its worker went away: another may take it at once
                self.requeue_now(lease)
            return
        self.fail_work(lease, f"the emulator gave up on this work item after {MAX_ATTEMPTS} failed attempts; "
                              f"the last: {error}")

    def fail_work(self, lease: Lease, reason: str) -> None:
        """End a lease's work for good: its instance, its activity task or its entity operations fail."""
        try:
            with self._transactions.tx():
                self._endings.fail(lease, reason)
        except Exception as exc:  # keep retrying, with backoff, rather than lose the work
            if not isinstance(exc, STORAGE_ERRORS):
                log.exception("could not fail %s '%s'", lease.kind, lease.target)
            self._post.retry_later(lease.hub, lease.kind, lease.target, exc)
            return
        log.error("%s '%s' in hub %s failed: %s", lease.kind, lease.target, lease.hub, reason)
        self.forget(lease)
        self.requeue_now(lease)

    def forget(self, lease: Lease) -> None:
        """The lease's work is done with (applied, refused, or failed for good): forget its failures."""
        self._backoff.forget((lease.hub, lease.kind, lease.target))

    def requeue_now(self, lease: Lease) -> None:
        try:
            with self._transactions.tx():
                self._post.requeue(lease.hub, lease.kind, lease.target)
        except STORAGE_ERRORS as exc:
            self._post.retry_later(lease.hub, lease.kind, lease.target, exc)

    def abandon(self, token: str) -> None:
        self.requeue_now(self._streams.release(token))

    def stream_ended(self, stream: int) -> None:
        """A worker went away (or stopped answering): whatever it held goes back to the queue."""
        leases = self._streams.close(stream)
        if not leases:
            return
        log.info("worker stream %d ended holding %d work item(s); re-queued", stream, len(leases))
        for lease in leases:  # a work item that its worker cannot take (too large?) must not come back forever
            self.work_failed(lease, "the worker's stream ended while it held this work item (a message larger "
                                    "than the worker receives, or a worker that crashes on it?)")
