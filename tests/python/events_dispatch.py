"""Dispatch events the way Python Nameko 2.14 does, for the Rust interop tests.

Usage:
    events_dispatch.py standalone <source> <event_type> <payload-json>
    events_dispatch.py service <source> <event_type> <payload-json> <context-json>

`standalone` uses `nameko.standalone.events.event_dispatcher`, which sends no headers.
`service` runs a service named <source> whose worker dispatches through `EventDispatcher`,
called through `entrypoint_hook` with the given context data, so the event carries `nameko.*`
headers and a `call_id_stack`.

Prints `dispatched <call_id>` (`-` for standalone) once the broker confirmed, then exits.
The broker is taken from the environment variable AMQP_URI.
"""
import warnings

warnings.simplefilter("ignore")  # eventlet announces its deprecation on import

import eventlet  # noqa: E402

eventlet.monkey_patch()

import json  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402

from nameko.containers import ServiceContainer  # noqa: E402
from nameko.events import EventDispatcher  # noqa: E402
from nameko.extensions import DependencyProvider  # noqa: E402
from nameko.standalone.events import event_dispatcher  # noqa: E402
from nameko.testing.services import dummy, entrypoint_hook  # noqa: E402


class WorkerContext(DependencyProvider):
    def get_dependency(self, worker_ctx):
        return worker_ctx


def main():
    mode, source, event_type, payload = sys.argv[1:5]
    payload = json.loads(payload)
    config = {"AMQP_URI": os.environ["AMQP_URI"]}

    if mode == "standalone":
        dispatch = event_dispatcher(config)
        dispatch(source, event_type, payload)
        print("dispatched -", flush=True)
        return

    context_data = json.loads(sys.argv[5])

    class Source:
        name = source
        dispatch = EventDispatcher()
        context = WorkerContext()

        @dummy
        def emit(self, event_type, payload):
            self.dispatch(event_type, payload)
            return self.context.call_id

    container = ServiceContainer(Source, config)
    container.start()
    try:
        with entrypoint_hook(container, "emit", context_data=context_data) as emit:
            call_id = emit(event_type, payload)
        print("dispatched {}".format(call_id), flush=True)
    finally:
        container.stop()


if __name__ == "__main__":
    main()
