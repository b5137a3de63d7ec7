"""The object graph: one `Bot` built from the configuration and handed down to every stage.

No module reaches for a global: the store, the outbox, the IANA resolver, the templates, the clock and the
DNS function for DKIM all come from here, so tests build a Bot on their own servers and their own clock.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from . import workflow
from .authenticity import make_dnsfunc
from .compose import Templates
from .config import Config
from .iana.resolver import IanaResolver
from .mailman_rest import rest_attempt
from .outbox import Outbox
from .rules import Rules, load_rules
from .store import Store, utcnow


@dataclass
class Bot:
    config: Config
    rules: Rules
    store: Store
    templates: Templates
    outbox: Outbox
    iana: IanaResolver
    now: Callable[[], datetime]
    dnsfunc: Callable[[bytes], bytes] | None = None
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def bot_address(self) -> str:
        return self.config.addresses.bot

    @property
    def secretariat(self) -> str:
        return self.config.addresses.secretariat


def build(config: Config, rules: Rules | None = None, now: Callable[[], datetime] = utcnow,
          store: Store | None = None) -> Bot:
    """Wire a Bot. `now` is the one clock every stage reads (tests pass a controllable one)."""
    rules = rules if rules is not None else load_rules(config.rules)
    store = store if store is not None else Store(config.store.path)
    templates = Templates(config.templates)
    outbox = Outbox(store, templates, config, rules.outbox, now)
    bot = Bot(
        config=config,
        rules=rules,
        store=store,
        templates=templates,
        outbox=outbox,
        iana=IanaResolver(config, store, now=now),
        now=now,
        dnsfunc=make_dnsfunc(config.dns) if rules.authentication.require != "none" else None,
    )
    outbox.on_failure = lambda row, failed, error: workflow.delivery_failed(bot, row, failed, error)
    outbox.rest_handler = lambda row: rest_attempt(bot, row)
    return bot
