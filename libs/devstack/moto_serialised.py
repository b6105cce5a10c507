"""moto_server, one request at a time.

moto's threaded server mutates a queue's message list from request threads
without a common lock: DeleteMessage rebuilds the list while SendMessage
appends to it, and ReceiveMessage marks messages while either runs. Under
concurrent load that loses sent messages and brings deleted ones back (seen
in Switchyard's end-to-end test: one job of 2,000 never delivered). Real SQS
and LocalStack do not do this.

This launcher serialises requests with one lock, which costs little (moto's
work is bound by the GIL anyway), and releases it while a long poll waits
for messages, so a 20-second ReceiveMessage never blocks other requests.
Arguments are moto_server's.
"""
import sys
import threading

from moto import server
from moto.moto_server import werkzeug_app
from moto.sqs.models import Queue

_lock = threading.Lock()
_dispatch = werkzeug_app.DomainDispatcherApplication.__call__
_wait = Queue.wait_for_messages


def _serialised(self, environ, start_response):
    with _lock:
        result = _dispatch(self, environ, start_response)
        try:
            body = b"".join(result)
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
        return [body]


def _wait_unlocked(self, timeout):
    # Called only from ReceiveMessage, inside a request holding _lock.
    _lock.release()
    try:
        _wait(self, timeout)
    finally:
        _lock.acquire()


werkzeug_app.DomainDispatcherApplication.__call__ = _serialised
Queue.wait_for_messages = _wait_unlocked

if __name__ == "__main__":
    server.main(sys.argv[1:])
