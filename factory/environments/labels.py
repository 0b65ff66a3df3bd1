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
    labels: Mapping[str, str], image_labels: Mapping[str, str], *, routed: bool, rule: str, url_label: str
) -> dict[str, str]:
    """`labels` (Factory's, for one service) plus Factory's value for each reserved image label.

    Args:
        labels: the service's labels as Factory wrote them (its own `factory.*`, and Traefik's for
            the routed service).
        image_labels: the labels of the image the service runs (the agent's).
        routed: whether this is the preview's routed service.
        rule: Factory's Traefik rule for the task's host (`Host(`task-<id>.<domain>`)`).
        url_label: the label naming the announced URL (always Factory's value, "" when not routed).
    """
    out = dict(labels)
    out.setdefault(url_label, "")
    if not routed:
        out["traefik.enable"] = "false"  # Traefik skips the container before reading any other label
    for key in image_labels:
        if not key.startswith(RESERVED) or key in out or key.startswith("com.docker.compose."):
            continue  # compose writes its own com.docker.compose.* labels over the image's
        # an image's HTTP router may only ever match this task's host; any other reserved key is emptied
        # (an empty TCP/UDP rule is an error Traefik drops the router for; an empty service is unused)
        out[key] = rule if routed and _HTTP_RULE.match(key) else ""
    return out


def image_labels_of(inspect: list[dict[str, Any]]) -> dict[str, str]:
    """The labels of an inspected image (`docker image inspect` output)."""
    if not inspect:
        return {}
    return dict(((inspect[0].get("Config") or {}).get("Labels")) or {})
