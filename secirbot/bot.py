"""The object graph: one `Bot` built from the configuration and handed down to every stage.

No module reaches for a global: the store, the outbox, the IANA resolver, the templates, the clock, the
DNS function for DKIM and the DMARC policy lookups of `authentication.require: adaptive` all come from
here, so tests build a Bot on their own servers and their own clock.
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
from .dmarc_policy import DmarcPolicies, Effective, build_policies
from .iana.resolver import IanaResolver
from .ledger import Ledger
from .mailman_rest import rest_attempt
from .outbox import Outbox
from .rules import Rules, load_rules
from .store import Store, utcnow


@dataclass
class Bot:
    config: Config
    rules: Rules
    store: Store
    ledger: Ledger
    templates: Templates
    outbox: Outbox
    iana: IanaResolver
    now: Callable[[], datetime]
    dnsfunc: Callable[[bytes], bytes] | None = None
    dmarc: DmarcPolicies | None = None  # set when authentication.require is adaptive
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def bot_address(self) -> str:
        return self.config.addresses.bot

    @property
    def secretariat(self) -> str:
        return self.config.addresses.secretariat

    def require_for(self, approver: str) -> Effective:
        """The authentication level a reply from `approver` is checked at, adaptive resolved by the domain's
        DMARC policy (may look it up in DNS). Adaptive with no resolver stays "adaptive", which
        check_sender refuses as an unknown level: fail closed."""
        require = self.rules.authentication.require
        return self.dmarc.effective(require, approver) if self.dmarc is not None else Effective(require)


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
