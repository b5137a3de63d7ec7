"""`secirbot init [DIR]`: a starting point for an operator's own deployment.

Writes a commented `secirbot.yaml` naming every section (values to fill in marked), and copies the shipped
`rules.yaml` and `templates/` beside it for editing. Refuses to overwrite anything: an operator's edited
rules or templates are never replaced by the shipped ones.
"""

from __future__ import annotations

import shutil
from importlib import resources
from pathlib import Path
from typing import TextIO

CONFIG_TEXT = """\
# secirbot configuration, written by `secirbot init`. Every key is documented in the README
# ("Configuration"); every key can also be set from the environment as SECIRBOT_<SECTION>_<KEY>
# (e.g. SECIRBOT_IMAP_PASSWORD), which is where secrets belong. Relative paths are relative to this file.

imap:
  host: mail.example.org        # FILL IN: the IMAP server of the bot's own mailbox (none = local sandbox)
  port: 993
  security: tls                 # tls | starttls | none (none only on loopback)
  username: join                # FILL IN
  # password: set SECIRBOT_IMAP_PASSWORD instead of writing it here
  folder: INBOX
  # envelope_header: Delivered-To   # the header your server writes with the envelope recipient: the
  #                                 # reply token is then read from its top copy only (recommended)

smtp:
  host: mail.example.org        # FILL IN
  port: 465
  security: tls

addresses:
  bot: join@lists.example.org             # FILL IN: must deliver join+anything@ to the same mailbox
  secretariat: secretariat@example.org    # FILL IN: the list administrators, told of every decision

mailman:
  dialect: mailman3             # mailman3 | mailman2 | mailman3-rest
  list: secir@lists.example.org # FILL IN
  # rest_url: http://localhost:8001/3.1   # with rest_user / SECIRBOT_MAILMAN_REST_PASSWORD

iana:
  whois: whois.iana.org:43
  rdap: https://rdap.iana.org

store:
  path: var/secirbot.sqlite3

rules: rules.yaml               # policy: pilot ccTLDs, approvers, authentication, limits
templates: templates            # every text the bot sends
"""


def shipped(name: str) -> Path:
    """The shipped copy of `rules.yaml` or `templates`: the installed package's, else the source tree's."""
    packaged = Path(str(resources.files("secirbot"))) / "defaults" / name
    if packaged.exists():
        return packaged
    return Path(__file__).resolve().parent.parent / name


def init_command(target: Path, out: TextIO, err: TextIO) -> int:
    """0 when written; 1 (nothing written) when any of the three already exists or a source is missing."""
    config, rules, templates = target / "secirbot.yaml", target / "rules.yaml", target / "templates"
    existing = [str(p) for p in (config, rules, templates) if p.exists()]
    if existing:
        print(f"error: not overwriting {', '.join(existing)}: move it away or init another folder", file=err)
        return 1
    sources = {"rules.yaml": shipped("rules.yaml"), "templates": shipped("templates")}
    missing = [str(p) for p in sources.values() if not p.exists()]
    if missing:
        print(f"error: the shipped defaults are missing ({', '.join(missing)}): reinstall secirbot", file=err)
        return 1
    target.mkdir(parents=True, exist_ok=True)
    config.write_text(CONFIG_TEXT, encoding="utf-8")
    shutil.copyfile(sources["rules.yaml"], rules)
    shutil.copytree(sources["templates"], templates)
    print(f"wrote {config} (fill in the values marked FILL IN), {rules} and {templates}/ for editing", file=out)
    print(f"next: secirbot --config {config} check --connect", file=out)
    return 0
