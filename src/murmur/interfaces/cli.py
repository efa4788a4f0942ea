"""The ``murmur`` command: ``main(argv) -> exit code``; a flag not given never overrides config.

Exit codes: 0 done; 1 done, but the run fell short (a testnet delivered less than everything);
2 a bad argument (argparse's own message) or an error reported on one line, ``murmur: ...``:
Murmur's own errors and the operating system's (a port in use, a path that is a file); 130
Ctrl-C and 128 + N for signal N that stopped a testnet (143 for SIGTERM), as a shell reports.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from murmur.base.errors import ConfigError, MurmurError
from murmur.interfaces.arguments import integer, real
from murmur.interfaces.signals import Terminated
from murmur.interfaces.simulate import add_simulate_parser
from murmur.interfaces.testnet import MIN_NODES, TESTNET_PATHS
from murmur.node.config import BootstrapPeer, HostPort, NodeConfig, TxRoute
from murmur.node.levels import LEVELS
from murmur.wire.gossip import MAX_MESSAGE_DATA_BYTES

EXIT_ERROR = 2


def _cmd_init(args: argparse.Namespace) -> int:
    from murmur.runtime.keystore import init_node_dir

    identity = init_node_dir(args.dir, force=args.force)
    print(f"node id {identity.node_id.hex()}")
    print(f"wrote {Path(args.dir) / 'identity.key'} (0600) and {Path(args.dir) / 'config.toml'}")
    return 0


def _node_config(args: argparse.Namespace) -> NodeConfig:
    from murmur.runtime.keystore import load_config

    config = load_config(args.dir)
    if args.listen is not None:
        config = replace(config, listen=HostPort.parse(args.listen))
    if args.peer:
        config = replace(config, bootstrap=tuple(BootstrapPeer.parse(p) for p in args.peer))
    if args.api_listen is not None:
        config = replace(config, api_listen=HostPort.parse(args.api_listen))
    return config


def _cmd_node(args: argparse.Namespace) -> int:
    from murmur.runtime.driver import run_node
    from murmur.runtime.keystore import load_identity

    identity = load_identity(args.dir)
    config = _node_config(args)
    logging.basicConfig(
        level=getattr(logging, config.log_level.name),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await run_node(Path(args.dir), config, identity, stop)

    _run(main())
    return 0


def _run(coro: Coroutine[Any, Any, None]) -> None:
    runner: Callable[[Coroutine[Any, Any, None]], None]
    try:
        import uvloop

        runner = uvloop.run
    except ImportError:  # pragma: no cover - uvloop is optional off Linux
        runner = asyncio.run
    runner(coro)


def _cmd_status(args: argparse.Namespace) -> int:
    from murmur.interfaces.api_client import ApiClient

    status = ApiClient.from_node_dir(args.dir).call("status")
    if args.json:
        print(json.dumps(status, indent=2))
        return 0
    from murmur.interfaces.render import print_status

    print_status(status)
    return 0


def _cmd_publish(args: argparse.Namespace) -> int:
    from murmur.interfaces.api_client import ApiClient

    data = _from_hex(args.data, "DATA (--hex)") if args.hex else args.data.encode()
    result = ApiClient.from_node_dir(args.dir).call(
        "publish", {"topic": args.topic, "data_hex": data.hex()}
    )
    print(result["message_id"])
    return 0


def _cmd_send_tx(args: argparse.Namespace) -> int:
    from murmur.interfaces.api_client import ApiClient

    data = _from_hex(args.tx_hex, "the transaction")
    params = {"topic": "transaction", "data_hex": data.hex()}
    if args.level is not None:
        params["level"] = args.level
    if args.route is not None:
        params["route"] = args.route
    result = ApiClient.from_node_dir(args.dir).call("publish", params)
    print(result["message_id"])
    return 0


def _from_hex(text: str, what: str) -> bytes:
    try:
        return bytes.fromhex(text)
    except ValueError:
        raise ConfigError(f"{what} must be hexadecimal") from None


def _cmd_sync(args: argparse.Namespace) -> int:
    from murmur.interfaces.api_client import ApiClient

    result = ApiClient.from_node_dir(args.dir).call(
        "sync", {"message_ids": args.message_ids}, timeout_s=60.0
    )
    print(json.dumps(result["messages"], indent=2))
    return 0


def _cmd_testnet(args: argparse.Namespace) -> int:
    from murmur.interfaces.testnet import run_testnet_command

    return run_testnet_command(args)


def _cmd_bench(args: argparse.Namespace) -> int:
    from murmur.interfaces.bench import run_bench_command

    return run_bench_command(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="murmur", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("init", help="create a node directory: identity key (0600) and config")
    p.add_argument("--dir", required=True)
    p.add_argument("--force", action="store_true", help="replace an existing identity")
    p.set_defaults(func=_cmd_init)

    p = sub.add_parser("node", help="run a node")
    p.add_argument("--dir", required=True)
    p.add_argument("--listen", help="HOST:PORT to accept peers on (default from config)")
    p.add_argument("--api-listen", help="HOST:PORT of the control API (loopback only)")
    p.add_argument("--peer", action="append", default=[], help="[NODEID@]HOST:PORT bootstrap peer")
    p.set_defaults(func=_cmd_node)

    p = sub.add_parser("status", help="show a running node's peers, topics and counters")
    p.add_argument("--dir", required=True)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_status)

    p = sub.add_parser("publish", help="publish a message on a fast-path topic")
    p.add_argument("--dir", required=True)
    p.add_argument("--topic", required=True)
    p.add_argument("--hex", action="store_true", help="DATA is hexadecimal")
    p.add_argument("data")
    p.set_defaults(func=_cmd_publish)

    p = sub.add_parser(
        "send-tx", help="send a transaction privately: an onion circuit or a Dandelion++ stem"
    )
    p.add_argument("--dir", required=True)
    p.add_argument(
        "--level",
        choices=tuple(LEVELS),
        help="privacy level for this transaction (default: the node's, from its config)",
    )
    p.add_argument(
        "--route",
        choices=tuple(route.value for route in TxRoute),
        help="how it leaves this node (default: privacy.routing from the node's config)",
    )
    p.add_argument("tx_hex", metavar="HEX")
    p.set_defaults(func=_cmd_send_tx)

    p = sub.add_parser("sync", help="fetch messages by id privately (reply through a circuit)")
    p.add_argument("--dir", required=True)
    p.add_argument("message_ids", nargs="+", metavar="ID")
    p.set_defaults(func=_cmd_sync)

    p = sub.add_parser("testnet", help="run N real nodes on loopback and report")
    p.add_argument("--nodes", type=integer(MIN_NODES), default=10)
    p.add_argument("--messages", type=integer(1), default=100, help="fast-path messages")
    p.add_argument(
        "--tx", type=integer(1), default=100, help="transactions (--path private or dandelion)"
    )
    p.add_argument("--path", choices=TESTNET_PATHS, default="fast")
    p.add_argument(
        "--level",
        choices=tuple(LEVELS),
        default="standard",
        help="privacy level of every node and transaction (--path private)",
    )
    p.add_argument(
        "--size",
        type=integer(1, MAX_MESSAGE_DATA_BYTES),
        default=512,
        help="message size in bytes",
    )
    p.add_argument("--rate", type=real(0.0, above=True), default=50.0, help="publishes per second")
    p.add_argument("--json", action="store_true")
    p.add_argument("--report", type=Path, help="write a Markdown report with plots here")
    p.add_argument("--seed", type=int, default=1)
    p.set_defaults(func=_cmd_testnet)

    p = sub.add_parser("bench", help="run the benchmarks and print their figures")
    p.add_argument("--json", action="store_true")
    p.add_argument("--quick", action="store_true", help="short runs (a smoke test)")
    p.set_defaults(func=_cmd_bench)

    add_simulate_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except MurmurError as exc:
        return _fail(str(exc))
    except OSError as exc:
        return _fail(_os_error_text(exc))
    except KeyboardInterrupt:
        return 130
    except Terminated as exc:
        return exc.exit_code


def _fail(message: str) -> int:
    print(f"murmur: {message}", file=sys.stderr)
    return EXIT_ERROR


def _os_error_text(exc: OSError) -> str:
    """``PATH: reason`` or the reason alone, without Python's ``[Errno N]`` prefix."""
    reason = exc.strerror or str(exc) or type(exc).__name__
    return reason if exc.filename is None else f"{exc.filename}: {reason}"


if __name__ == "__main__":
    sys.exit(main())
