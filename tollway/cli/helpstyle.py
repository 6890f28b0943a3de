"""Help boxes that name values, not Python types: `--api-port PORT`, never `<int>`.

Typer prints each parameter's Python type (`<int>`, `<str>`, `<bool>`) unless it has a
metavar. Rather than a metavar on every one of ~100 options, the finished click tree is
walked once: flags get none, values get a word for what they are (PORT, URL, FORMAT,
PATH, DURATION, N) or their own name in capitals, and arguments drop the type column.
Duck-typed: recent Typer vendors its own click, so `isinstance(x, click.Option)` fails.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

# Words by option name (click's param.name): what a user types there.
_WORDS = {
    "server": "URL", "control_plane": "URL", "output": "FORMAT", "namespace": "NAMESPACE",
    "files": "PATH", "filename": "PATH", "config": "PATH", "state_dir": "DIR",
    "cert_ttl": "DURATION", "duration": "DURATION", "actor": "NAME", "reason": "TEXT",
    "header": "NAME:VALUE", "env": "NAME=VALUE", "label": "KEY=VALUE", "via": "HOST:PORT",
    "rps": "N", "workers": "N", "weight": "PERCENT", "method": "METHOD", "path": "PATH",
    "host": "HOST", "source": "PRINCIPAL", "source_ip": "IP", "address": "IP",
}


def _commands(command: Any) -> Iterator[Any]:
    yield command
    for sub in (getattr(command, "commands", None) or {}).values():
        yield from _commands(sub)


def _word(param: Any) -> str:
    name = param.name or ""
    if name in _WORDS:
        return _WORDS[name]
    if name.endswith("port") or name.endswith("_port"):
        return "PORT"
    if name.endswith("offset"):
        return "N"
    return name.upper()


def _no_type(ctx: Any = None) -> None:
    return None


def tidy(root: Any) -> Any:
    for command in _commands(root):
        help_option = command.get_help_option(command.context_class(command))
        for param in [*command.params, *([help_option] if help_option else [])]:
            option = param.param_type_name == "option"
            if option and (param.is_flag or param.count):
                param.metavar = ""
            elif param.metavar is None:
                param.metavar = _word(param) if option else (param.name or "").upper()
            if not option and hasattr(param, "display_type_rich"):  # an argument: its name
                # says what it is; no `<str>` beside it
                param.display_type_rich = _no_type
    return root
