"""Serve RPC the way Python Nameko 2.14 does, for the Rust interop tests.

Usage:
    rpc_service.py <service>

Runs the service <service> with these `@rpc` methods:
    echo(a, b=None)  returns {"a": a, "b": b}
    fail()           raises ValueError("bad", 7)
    whoami()         returns {"call_id_stack": [...], "context_data": {...}}, what the worker
                     saw of its caller
    shutdown()       stops the service; the script then exits with status 0

Prints `ready` once consuming. Without a `shutdown` call it stops after 60 seconds and exits
with status 1. The broker is taken from the environment variable AMQP_URI.
"""
import warnings

warnings.simplefilter("ignore")  # eventlet announces its deprecation on import

import eventlet  # noqa: E402

eventlet.monkey_patch()

import logging  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402

from eventlet.event import Event  # noqa: E402
from nameko.containers import ServiceContainer  # noqa: E402
from nameko.extensions import DependencyProvider  # noqa: E402
from nameko.rpc import rpc  # noqa: E402


class WorkerContext(DependencyProvider):
    def get_dependency(self, worker_ctx):
        return worker_ctx


def main():
    # `fail` raises on purpose; its traceback would only clutter the test output.
    logging.getLogger("nameko.containers").setLevel(logging.CRITICAL)
    service = sys.argv[1]
    done = Event()

    class Service:
        name = service
        context = WorkerContext()

        @rpc
        def echo(self, a, b=None):
            return {"a": a, "b": b}

        @rpc
        def fail(self):
            raise ValueError("bad", 7)

        @rpc
        def whoami(self):
            data = dict(self.context.data)
            return {
                "call_id_stack": list(self.context.call_id_stack),
                "context_data": data,
            }

        @rpc
        def shutdown(self):
            if not done.ready():
                done.send(True)

    container = ServiceContainer(Service, {"AMQP_URI": os.environ["AMQP_URI"]})
    container.start()
    print("ready", flush=True)
    stopped = done.wait(timeout=60)
    # Let the reply to `shutdown` go out before the service stops.
    eventlet.sleep(0.2)
    container.stop()
    sys.exit(0 if stopped else 1)


if __name__ == "__main__":
    main()
