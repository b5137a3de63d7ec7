"""The top of the object graph: `build` wires one `Bot` from the configuration, and sets the outbox's two
hooks into the stages (a delivery failure, a Mailman REST call). Only the entry points (cli, daemon, demo,
explain) import it."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from . import workflow
from .authenticity import make_dnsfunc
from .bot import Bot
from .compose import Templates
from .config import Config
from .dmarc_policy import build_policies
from .iana.resolver import IanaResolver
from .ledger import Ledger
from .mailman_rest import rest_attempt
from .outbox import Outbox
from .rules import Rules, load_rules
from .store import Store, utcnow


def build(
    config: Config, rules: Rules | None = None, now: Callable[[], datetime] = utcnow, store: Store | None = None
) -> Bot:
    """Wire a Bot. `now` is the one clock every stage reads (tests pass a controllable one)."""
    rules = rules if rules is not None else load_rules(config.rules)
    store = store if store is not None else Store(config.store.path)
    templates = Templates(config.templates)
    outbox = Outbox(store, templates, config, rules.outbox, now)
    bot = Bot(
        config=config,
        rules=rules,
        store=store,
        ledger=Ledger(store),
        templates=templates,
        outbox=outbox,
        iana=IanaResolver(config, store, now=now),
        now=now,
        # adaptive needs it too: DKIM is how a reply passes where the domain's DMARC policy asks for it.
        dnsfunc=make_dnsfunc(config.dns) if rules.authentication.require != "none" else None,
        dmarc=build_policies(config, rules, now),
    )
    outbox.on_failure = lambda row, failed, error: workflow.delivery_failed(bot, row, failed, error)
    outbox.rest_handler = lambda row: rest_attempt(bot, row)
    return bot
