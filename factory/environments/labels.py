"""Factory sets every label a container of an environment ends up with that anyone reads.

A container's labels are its image's labels overlaid with the compose file's; an image
is the agent's (a Dockerfile `LABEL`), so a `traefik.*` or `factory.*` label it carries
would otherwise reach Traefik (routing another task's host) or Factory (the preview URL
it announces). After building and pulling, Factory reads each service's image labels and
writes a value of its own over every reserved key the image carries.

What this trusts: Factory's own record (task id, preview domain); nothing the image says.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

RESERVED = ("traefik.", "factory.", "com.docker.compose.")
_HTTP_RULE = re.compile(r"^traefik\.http\.routers\.[^.]+\.rule$")


def override(
    labels: Mapping[str, str], image_labels: Mapping[str, str], *, routed: bool, url_label: str
) -> dict[str, str]:
    """`labels` (Factory's, for one service) plus Factory's value for each reserved image label.

    Args:
        labels: the service's labels as Factory wrote them (its own `factory.*`, and Traefik's for
            the routed service).
        image_labels: the labels of the image the service runs (the agent's).
        routed: whether this is the preview's routed service.
        url_label: the label naming the announced URL (always Factory's value, "" when not routed).
    """
    out = dict(labels)
    out.setdefault(url_label, "")
    if not routed:
        out["traefik.enable"] = "false"  # Traefik skips the container before reading any other label
    for key in image_labels:
        if not key.startswith(RESERVED) or key in out or key.startswith("com.docker.compose."):
            continue  # compose writes its own com.docker.compose.* labels over the image's
        out[key] = _factory_value(key, out) if routed else ""
    if routed:  # an image's TCP/UDP router (its rule now empty) makes Traefik want a port for that protocol too
        router = next((k.split(".")[3] for k in out if k.startswith("traefik.http.routers.factory-")), "")
        port = next((v for k, v in out.items() if k.endswith(".loadbalancer.server.port")), "")
        for proto in ("tcp", "udp"):
            if router and any(k.startswith(f"traefik.{proto}.") for k in image_labels):
                out[f"traefik.{proto}.services.{router}.loadbalancer.server.port"] = port
    return out


def _factory_value(key: str, labels: Mapping[str, str]) -> str:
    """Factory's value for a reserved key an image carries on the routed service.

    An HTTP router may only ever match this task's host and lead to Factory's service on
    Factory's port; anything else is emptied (an empty TCP/UDP rule is an error for which
    Traefik drops that router). A value Traefik cannot parse makes it skip the container:
    the task's own preview goes unrouted, no one else's.
    """
    mine = {k.split(".")[-1]: v for k, v in labels.items() if k.startswith("traefik.http.routers.factory-")}
    port = next((v for k, v in labels.items() if k.endswith(".loadbalancer.server.port")), "")
    if _HTTP_RULE.match(key):
        return mine.get("rule", "")
    if key.startswith("traefik.http.routers.") and key.rsplit(".", 1)[-1] in ("service", "entrypoints"):
        return mine.get(key.rsplit(".", 1)[-1], "")
    if key.startswith("traefik.http.services.") and key.endswith(".loadbalancer.server.port"):
        return port
    return ""


def image_labels_of(inspect: list[dict[str, Any]]) -> dict[str, str]:
    """The labels of an inspected image (`docker image inspect` output)."""
    if not inspect:
        return {}
    return dict(((inspect[0].get("Config") or {}).get("Labels")) or {})
