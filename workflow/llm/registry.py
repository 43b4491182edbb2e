"""Which transport answers a model string: the first path segment picks a registered transport (`local/<name>`
is the embedded model), anything else goes to litellm (`gpt-4o-mini`, `ollama/llama3.1`, `openai/<name>` with an
api_base...).

Other transports register a prefix with `register`, in-process, or through the `tnt.transports` entry-point
group (name: the prefix, value: a factory taking the api_base), which is how an installed `tnt` finds the test
models of workflow/testing/ in a subprocess without the product knowing them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import entry_points

from workflow.llm.base import Transport

ENTRY_POINT_GROUP = "tnt.transports"
Factory = Callable[[str | None], Transport]  # api_base -> a transport


@dataclass(frozen=True)
class Registration:
    factory: Factory
    per_api_base: bool  # one instance per api_base (a remote client) or one in all (an in-process model)


_registered: dict[str, Registration] = {}
_instances: dict[tuple[str, str | None], Transport] = {}
_plugins: dict[str, object] | None = None  # entry points by name, read once
_lock = threading.RLock()


def _local(api_base: str | None) -> Transport:
    from workflow.llm.local import LocalTransport

    return LocalTransport()


def _litellm(api_base: str | None) -> Transport:
    from workflow.llm.litellm_transport import LiteLLMTransport

    return LiteLLMTransport(api_base)


DEFAULT = Registration(_litellm, per_api_base=True)


def register(prefix: str, factory: Factory, *, per_api_base: bool = False) -> None:
    """Send model strings `<prefix>/<name>` to the transport `factory(api_base)` makes (once, then reused)."""
    with _lock:
        _registered[prefix] = Registration(factory, per_api_base)
        for key in [k for k in _instances if k[0] == prefix]:
            del _instances[key]


def _plugin_names() -> dict[str, object]:
    global _plugins
    if _plugins is None:
        _plugins = {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}
    return _plugins


def prefix_of(model: str) -> str | None:
    """The registered (or installed plugin) prefix that handles `model`; None when it goes to litellm."""
    prefix = model.split("/", 1)[0] if "/" in model else None
    with _lock:
        if prefix is not None and (prefix in _registered or prefix in _plugin_names()):
            return prefix
    return None


def _registration(prefix: str | None) -> Registration:
    if prefix is None:
        return DEFAULT
    if prefix not in _registered:
        factory = _plugin_names()[prefix].load()  # importing the plugin may register it itself
        _registered.setdefault(prefix, Registration(factory, per_api_base=False))
    return _registered[prefix]


def transport_for(model: str, api_base: str | None = None) -> Transport:
    """The transport for a model string (one instance per kind, so the local model loads once)."""
    prefix = prefix_of(model)
    with _lock:
        registration = _registration(prefix)
        key = (prefix or "", api_base if registration.per_api_base else None)
        if key not in _instances:
            _instances[key] = registration.factory(api_base)
        return _instances[key]


def close_transports() -> None:
    """Free in-process models before the interpreter exits (llama.cpp torn down during shutdown otherwise
    disturbs other extensions' cleanup)."""
    with _lock:
        for transport in _instances.values():
            close = getattr(transport, "close", None)
            if close:
                close()
        _instances.clear()


register("local", _local)
