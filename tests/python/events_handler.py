"""Handle events the way Python Nameko 2.14 does, for the Rust interop tests.

Usage:
    events_handler.py <service> <source> <event_type> <stop_event_type> [handler_type]

Runs the service <service> with the event handler method `handle` for <event_type> events
from <source> (handler type `service_pool` by default; `broadcast` runs without reliable
delivery, as Nameko requires for its default identifier) and the method `finish` for
<stop_event_type> events.

Prints `ready` once consuming, then one line per event handled by `handle`:
    event <payload-json> <context-json>
where the context is the worker's `context_data` plus its `call_id`. A <stop_event_type>
event makes it stop the service and exit with status 0; after 60 seconds without one it
exits with status 1. The broker is taken from the environment variable AMQP_URI.
"""
import warnings

warnings.simplefilter("ignore")  # eventlet announces its deprecation on import

import eventlet  # noqa: E402

eventlet.monkey_patch()

import json  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402

from eventlet.event import Event  # noqa: E402
from nameko.containers import ServiceContainer  # noqa: E402
from nameko.events import BROADCAST, SERVICE_POOL, SINGLETON, event_handler  # noqa: E402
from nameko.extensions import DependencyProvider  # noqa: E402

HANDLER_TYPES = {"service_pool": SERVICE_POOL, "singleton": SINGLETON, "broadcast": BROADCAST}


class WorkerContext(DependencyProvider):
    def get_dependency(self, worker_ctx):
        return worker_ctx


def main():
    service, source, event_type, stop_event_type = sys.argv[1:5]
    handler_type = HANDLER_TYPES[sys.argv[5] if len(sys.argv) > 5 else "service_pool"]
    reliable = handler_type is not BROADCAST
    done = Event()

    class Handler:
        name = service
        context = WorkerContext()

        @event_handler(source, event_type, handler_type=handler_type, reliable_delivery=reliable)
        def handle(self, payload):
            context = dict(self.context.context_data)
            context["call_id"] = self.context.call_id
            print("event {} {}".format(json.dumps(payload), json.dumps(context)), flush=True)

        @event_handler(source, stop_event_type, reliable_delivery=False)
        def finish(self, payload):
            if not done.ready():
                done.send(True)

    container = ServiceContainer(Handler, {"AMQP_URI": os.environ["AMQP_URI"]})
    container.start()
    print("ready", flush=True)
    stopped = done.wait(timeout=60)
    container.stop()
    sys.exit(0 if stopped else 1)


if __name__ == "__main__":
    main()
