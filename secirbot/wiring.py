"""The top of the object graph: `build` wires one `Bot` from the configuration. Only the entry points (cli,
daemon, demo, explain) import it."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from .authenticity import make_dnsfunc
from .bot import Bot
from .compose import Templates
from .config import Config
from .dmarc_policy import build_policies
from .iana.resolver import IanaResolver
from .ledger import Ledger
from .mailman_rest import MailmanRest
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
    rest = MailmanRest(config.mailman) if config.mailman.rest_url else None
    outbox = Outbox(store, templates, config, rules.outbox, now, rest=rest)
    return Bot(
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
