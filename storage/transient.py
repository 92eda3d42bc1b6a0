"""Object-store failures that pass: telling them from answers, and retrying them with backoff.

An object store answers some calls with an error that says nothing about
the object: S3's 500 InternalError and 503 SlowDown, a timeout, a reset
connection.  s3fs retries only some of them (timeouts, SlowDown) and turns
the rest into a plain ``OSError``; a caller that gives up at once fails a
flush, a query or a vacuum for a fault that the next attempt would not
meet.  Worse, a layer that maps every error to "absent" (fsspec's
``isfile``, which pyarrow's fsspec handler asks before opening a file)
turns such a fault into ``FileNotFoundError``, and a reader that believes
it decides on a fact that is not one.

:func:`is_transient` says which errors are worth another attempt: an
answer about the object (absent, already there, refused for permission,
precondition failed) or a full disk is not.  :func:`retrying` runs a call
until it succeeds or has failed transiently ``attempts`` times in a row,
with exponential backoff and jitter, and then raises
:class:`~storage.errors.StoreUnavailable` (an ``OSError`` too) that names
what was being done and the last error.
"""

from __future__ import annotations

import errno
import logging
import random
import time
from typing import Callable, TypeVar

from storage.errors import PetrelError, StoreUnavailable

ATTEMPTS = 6
FIRST_BACKOFF = 0.1  # seconds before the second attempt; doubled each time, with jitter
MAX_BACKOFF = 4.0
_ANSWERS = (FileNotFoundError, FileExistsError, PermissionError, IsADirectoryError, NotADirectoryError)
# errnos of a failure that may pass: no errno (a timeout, a reset), a remote or I/O error (S3's 500s become
# EREMOTEIO or EIO in s3fs), busy (503 SlowDown, ServiceUnavailable), and the network ones; a full disk, a
# refused request (EINVAL: a 400) or a permission is an answer that another attempt gets again
_PASSING_ERRNOS = {None, errno.EIO, errno.EREMOTEIO, errno.EBUSY, errno.EAGAIN, errno.ETIMEDOUT, errno.ECONNRESET,
                   errno.ECONNREFUSED, errno.ECONNABORTED, errno.EPIPE, errno.ENETUNREACH, errno.EHOSTUNREACH,
                   errno.ENETDOWN, errno.EINTR}
_PASSING_BOTOCORE = ("HTTPClientError", "ConnectionError", "ConnectionClosedError", "EndpointConnectionError",
                     "ReadTimeoutError", "ConnectTimeoutError", "ResponseParserError", "IncompleteReadError")

T = TypeVar("T")
logger = logging.getLogger(__name__)


def is_transient(exc: BaseException) -> bool:
    """Whether ``exc`` is a failure of the store that another attempt may not meet (not an answer)."""
    if isinstance(exc, StoreUnavailable):
        return False  # retried already, as long as the caller was willing to wait
    if isinstance(exc, (PetrelError, _ANSWERS)):
        return False
    if isinstance(exc, TimeoutError | ConnectionError):
        return True
    if isinstance(exc, OSError) and exc.errno in _PASSING_ERRNOS:
        return True
    module = type(exc).__module__.split(".")[0]
    if module in ("aiohttp", "urllib3"):  # connection-level failures of the HTTP client under s3fs
        return True
    # botocore: the network and parsing failures, not a missing credential or a bad parameter
    return module in ("botocore", "aiobotocore") and any(c.__name__ in _PASSING_BOTOCORE for c in type(exc).__mro__)


def backoff(attempt: int) -> float:
    """Seconds to wait before attempt ``attempt + 1`` (``attempt`` counts from 1): doubling, jittered, capped."""
    return min(MAX_BACKOFF, FIRST_BACKOFF * 2 ** (attempt - 1)) * random.uniform(0.5, 1.0)


def retrying(call: Callable[[], T], what: str, attempts: int = ATTEMPTS) -> T:
    """``call()``, again after each transient failure (see :func:`is_transient`), ``attempts`` times at most.

    Raises the first error that is not transient as it is, and
    StoreUnavailable once ``attempts`` transient failures came in a row.
    """
    for attempt in range(1, attempts + 1):
        try:
            return call()
        except Exception as exc:
            if not is_transient(exc):
                raise
            if attempt == attempts:
                raise StoreUnavailable(
                    f"the object store failed {attempts} times in a row while {what} "
                    f"(last: {type(exc).__name__}: {exc}); it may be unavailable — retry later"
                ) from exc
            logger.debug("%s failed transiently (%s: %s); attempt %d of %d", what, type(exc).__name__, exc,
                         attempt + 1, attempts)
            time.sleep(backoff(attempt))
    raise AssertionError("unreachable")
