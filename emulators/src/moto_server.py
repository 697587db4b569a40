"""moto's server with one change that keeps its behaviour and makes its SQS usable at load.

moto 5.2 reads the clock through `moto.core.utils.unix_time`, which builds two datetimes and
subtracts them; its SQS model calls it for every message on every send (each queue
attribute counts visible, delayed and in-flight messages, and `send_message` reads the
attributes four times). With 2,000 messages in a FIFO queue a send took about 0.2 s on a
2-core machine, and the local pipeline drained at 2 messages a second. The clock below
returns the same value (seconds since the Unix epoch, UTC) from `time.time()`: about 15
times faster at that backlog, with the same answers.

Run by `remedios_emulators::moto` as `python -c <this file> -H HOST -p PORT`.
"""

import sys
import time

import moto.sqs.models as sqs_models
from moto.server import main

_unix_time = sqs_models.unix_time


def unix_time(dt=None):
    return time.time() if dt is None else _unix_time(dt)


def unix_time_millis(dt=None):
    return unix_time(dt) * 1000.0


sqs_models.unix_time = unix_time
sqs_models.unix_time_millis = unix_time_millis

sys.argv[0] = "moto_server"
sys.exit(main())
