"""Runs Factory's real egress proxy in a process of its own, so attacks on it run against it as root and
as an unprivileged user (under `setpriv`).

Usage: `python3 proxy_host.py '<spec json>'`; prints one JSON line `{"paths": [...]}` (each channel's
socket) once listening, and serves until its stdin closes. The spec: `limits` (the `Limits` fields)
and `channels`, each `{"task": N, "allowed": [[host, port], ...]}`.

An unprivileged user cannot read the site-packages under /root, so this loads the proxy's own
modules (the standard library only: proxy, addresses, wire) without running the `factory` and
`factory.sandbox` package initialisers, which import the config and pydantic. The code under
attack is the same file either way.
"""

from __future__ import annotations

import asyncio
import json
import sys
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _load() -> types.ModuleType:
    for name, path in (("factory", ROOT / "factory"), ("factory.sandbox", ROOT / "factory" / "sandbox")):
        if name not in sys.modules:
            pkg = types.ModuleType(name)
            pkg.__path__ = [str(path)]
            sys.modules[name] = pkg
    sys.path.insert(0, str(ROOT))
    import factory.sandbox.proxy as proxy

    return proxy


async def main(spec: dict) -> None:
    proxy = _load()
    p = proxy.EgressProxy(limits=proxy.Limits(**spec.get("limits", {})))
    paths = []
    for ch in spec["channels"]:
        allowed = [proxy.Destination(h, port) for h, port in ch["allowed"]]
        paths.append(str((await p.open(ch["task"], allowed)).path))
    print(json.dumps({"paths": paths}), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await p.close()


if __name__ == "__main__":
    asyncio.run(main(json.loads(sys.argv[1])))
