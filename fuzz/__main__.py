"""``python -m fuzz HARNESS [libFuzzer flags] [corpus dirs]``: one harness under atheris.

Only Murmur and the harness are instrumented for coverage (atheris's ``instrument_all`` also
instruments the standard library and the crypto bindings, which made the node harness about
seven times slower than uninstrumented, for edges that say nothing about Murmur), which is why
the harness is imported here, inside the instrumentation, rather than run as a script.
"""

from __future__ import annotations

import importlib
import sys

HARNESSES = ("fuzz_wire", "fuzz_node", "fuzz_relay", "fuzz_control_api")


def main() -> None:
    import atheris

    if len(sys.argv) < 2 or sys.argv[1] not in HARNESSES:
        sys.exit(f"usage: python -m fuzz {{{','.join(HARNESSES)}}} [libFuzzer flags] [corpus]")
    harness = sys.argv[1]
    with atheris.instrument_imports(include=["murmur", "fuzz"]):
        module = importlib.import_module(f"fuzz.{harness}")
    # libFuzzer starts its -merge=1 and -fork workers through the shell as "argv[0] flags".
    argv = [f"{sys.executable} -m fuzz {harness}", *sys.argv[2:]]
    atheris.Setup(argv, module.one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
