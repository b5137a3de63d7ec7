"""What every stage is handed: one `Bot`, the store, ledger, outbox, IANA resolver, templates and clock of one
configuration. `wiring.build` makes it; nothing here imports a stage, so no stage imports back up.

No module reaches for a global: the store, the outbox, the IANA resolver, the templates, the clock, the
DNS function for DKIM and the DMARC policy lookups of `authentication.require: adaptive` all come from
here, so tests build a Bot on their own servers and their own clock.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from .compose import Templates
from .config import Config
from .dmarc_policy import DmarcPolicies, Effective
from .iana.resolver import IanaResolver
from .ledger import Ledger
from .outbox import Outbox
from .rules import Rules
from .store import Store


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
