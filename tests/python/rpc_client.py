"""Call a Rust service the way a Python Nameko 2.14 client does, for the Rust interop tests.

Usage:
    rpc_client.py <service>

Calls <service> through `ClusterRpcProxy` with context data (user_id `u-py`, language `fr`,
custom_key `c`) and checks what comes back. The service must offer `echo(a, b=None)` returning
{"a": a, "b": b}, `fail()` failing with ValueError('bad', 7), and `whoami()` returning
{"user_id", "language", "custom_key", "call_id_stack"} as its worker saw them.

Prints `ok <check>` for each check that passed and `done` at the end, exiting with status 0;
the first failed check prints `fail <check>: <detail>` and exits with status 1. Every call
times out after 10 seconds. The broker is taken from the environment variable AMQP_URI.
"""
import warnings

warnings.simplefilter("ignore")  # eventlet announces its deprecation on import

import eventlet  # noqa: E402

eventlet.monkey_patch()

import os  # noqa: E402
import sys  # noqa: E402

from nameko.exceptions import (  # noqa: E402
    IncorrectSignature,
    MethodNotFound,
    RemoteError,
)
from nameko.standalone.rpc import ClusterRpcProxy  # noqa: E402


def check(name, condition, detail=""):
    if not condition:
        print("fail {}: {}".format(name, detail), flush=True)
        sys.exit(1)
    print("ok {}".format(name), flush=True)


def raises(call, exc_type):
    try:
        call()
    except exc_type as exc:
        return exc
    except Exception as exc:  # noqa: BLE001
        return "wrong exception {!r}".format(exc)
    return "no exception"


def main():
    service = sys.argv[1]
    config = {"AMQP_URI": os.environ["AMQP_URI"]}
    context = {"user_id": "u-py", "language": "fr", "custom_key": "c"}
    with ClusterRpcProxy(config, context_data=context, timeout=10) as proxy:
        svc = proxy[service]

        got = svc.echo(1, [1, "x"])
        check("positional", got == {"a": 1, "b": [1, "x"]}, got)
        got = svc.echo(a="k", b=2)
        check("keyword", got == {"a": "k", "b": 2}, got)
        got = svc.echo(1, b=[1, "x"])
        check("mixed", got == {"a": 1, "b": [1, "x"]}, got)
        got = svc.echo("only")
        check("default", got == {"a": "only", "b": None}, got)

        first = svc.echo.call_async("first")
        second = svc.echo.call_async("second")
        got = (second.result(), first.result())
        check(
            "call_async",
            got == ({"a": "second", "b": None}, {"a": "first", "b": None}),
            got,
        )

        exc = raises(svc.fail, RemoteError)
        check(
            "remote_error",
            isinstance(exc, RemoteError)
            and exc.exc_type == "ValueError"
            and str(exc) == "ValueError ('bad', 7)",
            repr(exc),
        )
        exc = raises(svc.no_such_method, MethodNotFound)
        check(
            "method_not_found",
            isinstance(exc, MethodNotFound) and str(exc) == "no_such_method",
            repr(exc),
        )
        exc = raises(svc.echo, IncorrectSignature)
        check(
            "incorrect_signature",
            isinstance(exc, IncorrectSignature)
            and str(exc) == "echo() missing 1 required positional argument: 'a'",
            repr(exc),
        )
        exc = raises(lambda: svc.echo(1, 2, 3), IncorrectSignature)
        check("too_many_arguments", isinstance(exc, IncorrectSignature), repr(exc))

        got = svc.whoami()
        stack = got.get("call_id_stack") or []
        check(
            "context_data",
            got.get("user_id") == "u-py"
            and got.get("language") == "fr"
            and got.get("custom_key") == "c"
            and len(stack) == 2
            and stack[0].startswith("standalone_rpc_proxy.call.")
            and stack[1].startswith(service + ".whoami."),
            got,
        )
    print("done", flush=True)


if __name__ == "__main__":
    main()
