"""The Python Nameko 2.14 target of the nameko-rs benchmarks.

Usage:
    bench_service.py <service> <source_service> <web_server_address> <max_workers>

Runs one service, <service>, with the same three entrypoints as the nameko-rs target
(`nameko-bench-service`) and the framework-free floor, so the same load generator drives all
three:
    @rpc echo(value)                          returns value
    @event_handler(<source_service>, "bench_event") on_event(payload)
                                              counts events; the one that brings the count to
                                              payload["until"] prints `done <count>`
    @http("GET", "/get/<int:value>") get_method(request, value)
                                              the seed's route: {"value": <value>} as text

`max_workers` is raised to <max_workers> to match the load in flight (in Nameko 2.x it is also
the consumer's prefetch). `starting services: <service>` is printed on stdout once the runner
has started, i.e. once the service consumes and listens. `nameko run` logs its line of the same
name *before* starting, so it would flatter start-up; printing it here after start measures the
same moment the nameko-rs target announces. The broker is taken from the environment variable
AMQP_URI. The names must match bench/src/lib.rs.
"""
import warnings

warnings.simplefilter("ignore")  # eventlet announces its deprecation on import

import eventlet  # noqa: E402

eventlet.monkey_patch()

import json  # noqa: E402
import logging  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402

from nameko.events import event_handler  # noqa: E402
from nameko.rpc import rpc  # noqa: E402
from nameko.runners import ServiceRunner  # noqa: E402
from nameko.web.handlers import http  # noqa: E402


def make_service(service_name, source_service):
    # A list rather than an int so that the handler can count without `global`.
    handled = [0]

    class BenchService:
        name = service_name

        @rpc
        def echo(self, value):
            return value

        @event_handler(source_service, "bench_event")
        def on_event(self, payload):
            handled[0] += 1
            if handled[0] == payload.get("until"):
                print("done {}".format(handled[0]), flush=True)

        @http("GET", "/get/<int:value>")
        def get_method(self, request, value):
            return json.dumps({"value": value})

    return BenchService


def main():
    service_name, source_service, address, max_workers = sys.argv[1:5]
    # The service logs nothing per call at WARNING, as a production deployment would run it.
    logging.basicConfig(level=logging.WARNING)
    config = {
        "AMQP_URI": os.environ["AMQP_URI"],
        "WEB_SERVER_ADDRESS": address,
        "max_workers": int(max_workers),
    }
    runner = ServiceRunner(config)
    runner.add_service(make_service(service_name, source_service))
    runner.start()
    print("starting services: {}".format(service_name), flush=True)
    runner.wait()


if __name__ == "__main__":
    main()
