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
import sys
import threading

from moto import server
from moto.moto_server import werkzeug_app
from moto.iam import access_control
from moto.sqs.models import Queue
from moto.sqs.responses import SQSResponse

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
