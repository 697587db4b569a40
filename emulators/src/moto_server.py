"""moto's server with changes that keep its answers and make it usable at load.

The reliability suite pushes 2,000 messages through moto's SQS and S3; moto, one Python
process, is what the local pipeline waits on. A profile of moto 5.2.5 during a burst
(py-spy, December 2026) showed where its time goes besides real work, and each change
below removes one such cost without changing any answer:

- The clock. moto reads it through `moto.core.utils.unix_time`, which builds two
  datetimes and subtracts them, for every message on every send; `time.time()` gives the
  same seconds since the Unix epoch about 15 times faster.
- The queue's attributes. `Queue.attributes` counts the visible, delayed and in-flight
  messages (three passes over the queue) every time it is read, and the hot paths read it
  for one flag: validating and adding a message look at `ContentBasedDeduplication`, and
  `receive_message` asks for `MessageRetentionPeriod` once per message it hands out (so a
  receive of ten from a backlog of 2,000 made 60,000 message checks). The dictionary below
  holds the plain attributes at once and counts the messages only when a count is read
  (GetQueueAttributes), so the counts are as exact as before. 14% of the profile.
- The service lookup. For every request the dispatcher lists moto's package folder
  (`os.listdir` and one `isdir` per service, about 150) to learn the service names, which
  do not change while it runs: listed once. 13% of the profile.
- The request log. werkzeug logs every request line at INFO to a stderr nobody reads
  (the process's output goes to /dev/null): warnings and errors only. 4% of the profile.

One change makes it behave as S3 does where it did not:

- Conditional writes. moto checks `If-Match` / `If-None-Match` and then stores the object
  as two steps, with other request threads free to run between them, so two writers of
  the same key could both succeed (a lost update S3 never allows). Object writes are made
  one at a time, so the check and the write are one step, as in S3.

One API moto lacks, answered as Lambda documents it:

- Lambda's GetAccountSettings (`GET /2016-08-19/account-settings/`), which `remedios
  deploy` reads to warn when the stack would ask for more concurrency than the account
  has. The account's concurrency is `REMEDIOS_LAMBDA_CONCURRENT_EXECUTIONS` (AWS's
  default quota, 1,000, unless set; new accounts often have 10).

Run by `remedios_emulators::moto` as `python -c <this file> -H HOST -p PORT`.
"""

import json
import logging
import os
import sys
import threading
import time

import moto.awslambda.urls as lambda_urls
import moto.backends as backends
from moto.awslambda.responses import LambdaResponse
import moto.sqs.models as sqs_models
from moto.core.utils import camelcase_to_underscores
from moto.s3.responses import S3Response
from moto.server import main

# The clock.
_unix_time = sqs_models.unix_time


def unix_time(dt=None):
    return time.time() if dt is None else _unix_time(dt)


def unix_time_millis(dt=None):
    return unix_time(dt) * 1000.0


sqs_models.unix_time = unix_time
sqs_models.unix_time_millis = unix_time_millis

# The queue's attributes: message counts only when read.
_COUNTS = (
    "ApproximateNumberOfMessages",
    "ApproximateNumberOfMessagesDelayed",
    "ApproximateNumberOfMessagesNotVisible",
)


class _CountedOnRead(dict):
    """A queue's attributes whose message counts are computed on first read."""

    def __init__(self, queue, plain):
        super().__init__(plain)
        self._uncounted = queue

    def _count(self):
        queue, self._uncounted = self._uncounted, None
        if queue is not None:
            for name in _COUNTS:
                dict.__setitem__(self, name, getattr(queue, camelcase_to_underscores(name)))

    def __getitem__(self, key):
        if key in _COUNTS:
            self._count()
        return dict.__getitem__(self, key)

    def get(self, key, default=None):
        if key in _COUNTS:
            self._count()
        return dict.get(self, key, default)

    def __contains__(self, key):
        return key in _COUNTS or dict.__contains__(self, key)

    def __iter__(self):
        self._count()
        return dict.__iter__(self)

    def __len__(self):
        self._count()
        return dict.__len__(self)

    def __eq__(self, other):
        self._count()
        return dict.__eq__(self, other)

    __hash__ = None

    def __repr__(self):
        self._count()
        return dict.__repr__(self)

    def keys(self):
        self._count()
        return dict.keys(self)

    def values(self):
        self._count()
        return dict.values(self)

    def items(self):
        self._count()
        return dict.items(self)

    def copy(self):
        self._count()
        return dict(self)


_all_attributes = sqs_models.Queue.attributes.fget


class _Uncounted:
    """A queue seen through `Queue.attributes` with its counting properties answering
    None, so the original getter builds everything else exactly as it does."""

    def __init__(self, queue):
        self._queue = queue

    def __getattr__(self, name):
        if name in _COUNTED_PROPERTIES:
            return None
        return getattr(self._queue, name)


_COUNTED_PROPERTIES = {camelcase_to_underscores(name) for name in _COUNTS}


def _attributes(queue):
    plain = _all_attributes(_Uncounted(queue))
    for name in _COUNTS:
        plain.pop(name, None)
    return _CountedOnRead(queue, plain)


sqs_models.Queue.attributes = property(_attributes)

# The service lookup: moto's services do not change while it runs.
_services = tuple(backends.list_of_moto_modules())
backends.list_of_moto_modules = lambda: _services

# Conditional writes: the precondition check and the write as one step.
_writes = threading.RLock()
_put_object = S3Response.put_object


def _put_object_atomically(self):
    with _writes:
        return _put_object(self)


S3Response.put_object = _put_object_atomically

# Lambda's account settings.
def _get_account_settings(self):
    concurrency = int(os.environ.get("REMEDIOS_LAMBDA_CONCURRENT_EXECUTIONS", "1000"))
    settings = {
        "AccountLimit": {
            "TotalCodeSize": 80530636800,
            "CodeSizeUnzipped": 262144000,
            "CodeSizeZipped": 52428800,
            "ConcurrentExecutions": concurrency,
            "UnreservedConcurrentExecutions": concurrency,
        },
        "AccountUsage": {"TotalCodeSize": 0, "FunctionCount": 0},
    }
    return 200, {"Content-Type": "application/json"}, json.dumps(settings)


LambdaResponse.get_account_settings = _get_account_settings
lambda_urls.url_paths[r"{0}/(?P<api_version>[^/]+)/account-settings/?$"] = LambdaResponse.dispatch

# The request log.
logging.getLogger("werkzeug").setLevel(logging.WARNING)

sys.argv[0] = "moto_server"
sys.exit(main())
