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

Serialising makes a queue of waiting requests, and a queue that only grows
wedges the server: paused for 30 s, or offered more than it can take, it
came back with a thousand requests waiting whose clients had long gone,
each retried, and answered nothing for minutes. So it sheds load as a real
service does:
- a request that finds MAX_WAITING others already waiting for the lock is
  answered 503 ServiceUnavailable at once (the AWS SDKs back off and retry);
- one that waited MAX_WAIT seconds for the lock is answered 503 too;
- one whose client has hung up (its socket reads as closed) while it waited
  is dropped without being run (one that did not wait runs, as on SQS).
SWITCHYARD_SQS_MAX_WAITING (default 64) and SWITCHYARD_SQS_MAX_WAIT
(seconds, default 10) set the bounds.

It also makes moto's IAM enforcement (off unless asked for, with
INITIAL_NO_AUTH_ACTION_COUNT or POST /moto-api/reset-auth) decide SQS calls
as AWS does, in the two places where moto 5 differs:
- GetQueueUrl is authorised against the queue it names (moto looks for a
  QueueUrl parameter only, finds none, and checks the action against "*",
  which no queue-scoped policy allows);
- the batch calls need the permission of their single form
  (sqs:SendMessage for SendMessageBatch; moto asks for
  sqs:SendMessageBatch, an action IAM does not have).
"""
import io
import json
import os
import socket
import sys
import threading
import time

from moto import server
from moto.moto_server import werkzeug_app
from moto.iam import access_control
from moto.sqs.models import Queue
from moto.sqs.responses import SQSResponse

MAX_WAITING = int(os.environ.get("SWITCHYARD_SQS_MAX_WAITING", "64"))
MAX_WAIT = float(os.environ.get("SWITCHYARD_SQS_MAX_WAIT", "10"))

_lock = threading.Lock()
_dispatch = werkzeug_app.DomainDispatcherApplication.__call__
_wait = Queue.wait_for_messages

_waiting = 0
_waiting_lock = threading.Lock()
_shed = {"queue_full": 0, "waited_too_long": 0, "client_gone": 0}


def _client_gone(environ):
    """Whether the request's client has closed its connection."""
    sock = environ.get("werkzeug.socket")
    if sock is None:
        return False
    try:
        data = sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
    except (BlockingIOError, InterruptedError):
        return False  # connected, nothing more sent
    except OSError:
        return True
    return data == b""


def _unavailable(environ, start_response, reason):
    with _waiting_lock:
        _shed[reason] += 1
        counts = dict(_shed)
    if sum(counts.values()) % 100 == 1:
        sys.stderr.write("sqs stand-in shed a request (%s); shed so far: %s\n" % (reason, counts))
    message = "the SQS stand-in is overloaded (%s); retry later" % reason
    if "json" in environ.get("CONTENT_TYPE", ""):
        body = json.dumps({"__type": "com.amazonaws.sqs#ServiceUnavailable", "message": message}).encode()
        headers = [("Content-Type", "application/x-amz-json-1.0"), ("x-amzn-query-error", "ServiceUnavailable;Receiver")]
    else:
        body = ("<ErrorResponse><Error><Type>Receiver</Type><Code>ServiceUnavailable</Code><Message>%s</Message></Error>"
                "<RequestId>shed</RequestId></ErrorResponse>" % message).encode()
        headers = [("Content-Type", "text/xml")]
    headers += [("Content-Length", str(len(body))), ("Retry-After", "1")]
    start_response("503 Service Unavailable", headers)
    return [body]


def _acquire(environ):
    """Waits for the lock; returns None once held, else why not. A request
    that finds the lock free runs whatever its client does meanwhile, as
    SQS would run it (an abandoned long poll still takes messages)."""
    global _waiting
    if _lock.acquire(blocking=False):
        return None
    with _waiting_lock:
        if _waiting >= MAX_WAITING:
            return "queue_full"
        _waiting += 1
    try:
        deadline = time.monotonic() + MAX_WAIT
        while not _lock.acquire(timeout=0.1):
            if _client_gone(environ):
                return "client_gone"
            if time.monotonic() >= deadline:
                return "waited_too_long"
    finally:
        with _waiting_lock:
            _waiting -= 1
    if _client_gone(environ):
        _lock.release()
        return "client_gone"
    return None


def _read_body(environ):
    """Reads the request's body before it waits, so that the socket then
    holds nothing but, once the client hangs up, its end of file."""
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return
    if length > 0:
        environ["wsgi.input"] = io.BytesIO(environ["wsgi.input"].read(length))


def _serialised(self, environ, start_response):
    _read_body(environ)
    refused = _acquire(environ)
    if refused is not None:
        return _unavailable(environ, start_response, refused)
    try:
        result = _dispatch(self, environ, start_response)
        try:
            body = b"".join(result)
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
        return [body]
    finally:
        _lock.release()


def _wait_unlocked(self, timeout):
    # Called only from ReceiveMessage, inside a request holding _lock.
    _lock.release()
    try:
        _wait(self, timeout)
    finally:
        _lock.acquire()


werkzeug_app.DomainDispatcherApplication.__call__ = _serialised
Queue.wait_for_messages = _wait_unlocked


_BATCH_PERMISSIONS = {
    "sqs:SendMessageBatch": "sqs:SendMessage",
    "sqs:DeleteMessageBatch": "sqs:DeleteMessage",
    "sqs:ChangeMessageVisibilityBatch": "sqs:ChangeMessageVisibility",
}
_iam_request_init = access_control.IAMRequestBase.__init__
_queue_name = SQSResponse._get_queue_name


def _iam_request_init_as_aws(self, *args, **kwargs):
    _iam_request_init(self, *args, **kwargs)
    self._action = _BATCH_PERMISSIONS.get(self._action, self._action)


def _queue_name_as_aws(self):
    if self._get_action() == "GetQueueUrl":
        name = self._get_param("QueueName")
        if name:
            return name
    return _queue_name(self)


access_control.IAMRequestBase.__init__ = _iam_request_init_as_aws
SQSResponse._get_queue_name = _queue_name_as_aws

if __name__ == "__main__":
    server.main(sys.argv[1:])
