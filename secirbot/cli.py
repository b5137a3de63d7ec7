"""The commands the Secretariat types: run, check, lookup, requests, show, approve, deny, and more.

Exit status (README.md "Operating it" has the table per command): 0 ok, 1 failed at run time, 2 bad
configuration or usage, 3 not a ccTLD, 4 IANA cannot answer now, 5 the store or a lock file cannot be used,
75 `run --once` left mail queued because the SMTP server could not be reached; `check --health` only 0/1.
Errors are one clear line on stderr; secrets never appear in any output.
"""

from __future__ import annotations

import argparse
import contextlib
import getpass
import json
import logging
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from .config import Config, ConfigError, config_named_explicitly, find_config_file, load_config
from .iana.names import NotACcTLD, normalize_tld
from .ledger import RequestState
from .rules import Rules, load_rules
from .store import Store, StoreError

if TYPE_CHECKING:
    from .daemon import InstanceLock

log = logging.getLogger("secirbot.cli")

EXIT_OK, EXIT_FAILED, EXIT_CONFIG, EXIT_NOT_CCTLD, EXIT_UNRESOLVED = 0, 1, 2, 3, 4
# The store (or a lock file beside it) is unusable: read-only, not a database, damaged, from a newer
# secirbot. Its own status because only the operator can fix it, on the disk; retrying cannot.
EXIT_STORE = 5
# sysexits.h EX_TEMPFAIL: what cron wrappers and supervisors already read as "temporary, try again later".
# `run --once` worked, but mail stays queued because the SMTP server could not be reached; 75 is far from
# our own 0-5, so it can never be confused with them.
EXIT_TEMPFAIL = 75


REQUEST_STATES = tuple(str(s) for s in RequestState)
EXIT_EPILOG = (
    "exit status: 0 ok; 1 failed at run time (see README.md 'Operating it' per command); 2 bad configuration, "
    "rules or usage; 3 not a ccTLD; 4 IANA cannot answer now; 5 the store cannot be used; "
    "75 (run --once) mail stays queued"
)


def package_version() -> str:
    """The installed distribution's version; a source checkout that was never installed says so."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("secirbot")
    except PackageNotFoundError:
        return "0+source"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="secirbot", description=__doc__.splitlines()[0], epilog=EXIT_EPILOG)
    parser.add_argument("--version", action="version", version=f"%(prog)s {package_version()}")
    parser.add_argument(
        "--config",
        metavar="FILE",
        help="configuration file (default: $SECIRBOT_CONFIG or "
        "./secirbot.yaml; without one, embedded defaults and a local sandbox mailbox)",
    )
    parser.add_argument(
        "--log-format", choices=("text", "json"), default="text", help="log lines as text or as one JSON object each"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug detail")
    # `secirbot check --config F` must work as well as `secirbot --config F check`: the sub-command copy
    # defaults to SUPPRESS so that, when absent, it does not overwrite the value given before the command.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", metavar="FILE", default=argparse.SUPPRESS, help="configuration file (as above)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    real_add_parser = sub.add_parser

    def add_parser(name: str, **kwargs: Any) -> argparse.ArgumentParser:
        kwargs.setdefault("epilog", EXIT_EPILOG)
        kwargs.setdefault("description", kwargs.get("help"))
        return real_add_parser(name, parents=[common], **kwargs)

    sub.add_parser = add_parser  # type: ignore[method-assign]

    p = sub.add_parser("run", help="run the bot until SIGTERM/SIGINT")
    p.add_argument("--once", action="store_true", help="process what waits, deliver the outbox, exit")

    p = sub.add_parser("check", help="validate the configuration, rules.yaml and templates")
    p.add_argument(
        "--connect",
        action="store_true",
        help="also probe, in parallel, IMAP, SMTP, a probe mail to bot+probe@, Mailman REST, IANA whois/RDAP, DNS",
    )
    p.add_argument(
        "--timeout",
        type=positive_seconds,
        default=5,
        metavar="SECONDS",
        help="with --connect: per network operation (default 5; the probe mail may take 3 times as long)",
    )
    p.add_argument("--health", action="store_true", help="container health check of a running bot")

    p = sub.add_parser("lookup", help="the IANA contacts of a ccTLD")
    p.add_argument("names", nargs="*", metavar="CCTLD", help="ccTLDs, as nl, .nl, .рф or xn--p1ai")
    p.add_argument("--all", action="store_true", help="refresh every ccTLD (politely: 1 query a second)")
    p.add_argument("--json", action="store_true", help="the same as JSON, for scripts")

    p = sub.add_parser("requests", help="list requests")
    p.add_argument("--state", choices=REQUEST_STATES, help="only requests in this state")
    p.add_argument("--json", action="store_true", help="the same as JSON, for scripts")

    p = sub.add_parser("show", help="one request with its whole timeline")
    p.add_argument("id", type=int, help="the request's number (see `secirbot requests`)")
    p.add_argument("--json", action="store_true", help="the same as JSON, for scripts")

    p = sub.add_parser("approve", help="approve a request as the Secretariat")
    p.add_argument("id", type=int, help="the request's number (see `secirbot requests`)")
    p.add_argument("--reason", default="", help="why, for the audit and the notices")
    p.add_argument("--by", metavar="NAME", help="who decides (default: $SECIRBOT_OPERATOR, else the Unix user)")
    p.add_argument("--force", action="store_true", help="approve even though no IANA contact was asked yet")

    p = sub.add_parser("deny", help="deny a request as the Secretariat")
    p.add_argument("id", type=int, help="the request's number (see `secirbot requests`)")
    p.add_argument("--reason", required=True, help="why, for the audit and the notices")
    p.add_argument("--by", metavar="NAME", help="who decides (default: $SECIRBOT_OPERATOR, else the Unix user)")

    p = sub.add_parser(
        "invite",
        help="mail the IANA administrative contacts of ccTLDs an invitation (only pilot ccTLDs while the pilot is on)",
    )
    p.add_argument("names", nargs="+", metavar="CCTLD", help="ccTLDs, as nl, .nl, .рф or xn--p1ai")
    p.add_argument("--dry-run", action="store_true", help="say who would get what; send and record nothing")
    p.add_argument(
        "--again", action="store_true", help="invite even if invited within rules.yaml invitations.min_interval"
    )

    p = sub.add_parser("report", help="per ccTLD: invited when, requests, members; who has not joined")
    p.add_argument("--json", action="store_true", help="the same as JSON, for scripts")

    p = sub.add_parser("export", help="the membership roster with how each member was vetted")
    p.add_argument("--format", choices=("csv", "json"), default="csv")
    p.add_argument("--output", metavar="FILE", help="write here instead of standard output")

    p = sub.add_parser("members", help="the roster: who is on the list for which ccTLD, since when, approved by whom")
    p.add_argument("--cctld", metavar="CCTLD", help="only this ccTLD (as nl, .nl, .рф or xn--p1ai)")
    p.add_argument("--json", action="store_true", help="the same as JSON, for scripts")
    p.add_argument("--all", action="store_true", help="also members who left or were removed")
    members_sub = p.add_subparsers(dest="members_command", metavar="ACTION")
    q = members_sub.add_parser(
        "import",
        parents=[common],
        help="take over an existing list: put its members on the roster as imported",
        description="Put the members of an existing list on the roster as imported, from Mailman 3 over REST "
        "or from a CSV file (address,cctld[,name]); an address whose ccTLD cannot be inferred is listed, "
        "not guessed.",
        epilog=EXIT_EPILOG,
    )
    source = q.add_mutually_exclusive_group(required=True)
    source.add_argument("--csv", metavar="FILE", type=Path, help="lines of address,cctld[,name] (cctld may be empty)")
    source.add_argument("--from-mailman", action="store_true", help="the list's members over Mailman 3 REST")
    q.add_argument("--dry-run", action="store_true", help="say what would be imported; change nothing")
    q.add_argument("--by", metavar="NAME", help="who imports (default: $SECIRBOT_OPERATOR, else the Unix user)")

    p = sub.add_parser("remove", help="take a member off the list as the Secretariat")
    p.add_argument("address", help="the member's address (see `secirbot members`)")
    p.add_argument("--reason", help="why, for the audit and the member's notice (required unless --done)")
    p.add_argument("--by", metavar="NAME", help="who removes (default: $SECIRBOT_OPERATOR, else the Unix user)")
    p.add_argument(
        "--done", action="store_true", help="the removal was already made in Mailman: only record it on the roster"
    )

    p = sub.add_parser("explain", help="dry run: what the bot would do with one mail (nothing is changed or sent)")
    p.add_argument("file", type=Path, metavar="FILE.eml", help="the mail, as raw RFC 5322 bytes")
    p.add_argument("--json", action="store_true", help="the same as JSON, for scripts")
    p.add_argument("--no-lookup", action="store_true", help="do not ask IANA for a new request's contacts")

    p = sub.add_parser("init", help="write a commented secirbot.yaml and copy rules.yaml and templates/ to edit")
    p.add_argument("dir", nargs="?", type=Path, default=Path("."), help="where (default: here); never overwrites")

    p = sub.add_parser("demo", help="the whole procedure on local servers, with a transcript of every mail")
    p.add_argument("--keep", action="store_true", help="keep the demo's folder (store, config) afterwards")
    return parser


def positive_seconds(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of seconds, at least 1, got {text!r}")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.log_format, args.verbose)
    handler = COMMANDS[args.command]
    try:
        return handler(args)
    except BrokenPipeError:
        # `secirbot show 1 --json | head -1`: the reader left, which is no error of ours. Point stdout at
        # /dev/null so that the interpreter's final flush does not raise (and print) a second time.
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except ConfigError as exc:
        print("configuration error:", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return EXIT_CONFIG
    except StoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_STORE
    except KeyboardInterrupt:
        return EXIT_FAILED


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        item = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            item["exception"] = self.formatException(record.exc_info)
        return json.dumps(item, ensure_ascii=False)


def setup_logging(fmt: str, verbose: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JsonFormatter() if fmt == "json" else logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    for noisy in ("imapclient", "urllib3", "apscheduler", "mail.log", "flufl.bounce"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def load(args: argparse.Namespace) -> tuple[Config, Rules]:
    config = load_configuration(args)
    return config, load_rules(config.rules)


def load_configuration(args: argparse.Namespace) -> Config:
    """The configuration the command uses. When the operator did not name it (--config, $SECIRBOT_CONFIG)
    one INFO line says which file was found, or that none was (sandbox), and which store it means: a
    command run from the wrong folder must not look like one run against the real store."""
    explicit = config_named_explicitly(args.config)
    path = find_config_file(args.config)
    config = load_config(path, explicit=explicit)
    if not explicit:
        found = f"configuration {path.resolve()}" if path is not None else "no configuration found (sandbox mode)"
        log.info("%s; store %s", found, config.store.path)
    return config


def take_lock(config: Config) -> InstanceLock:
    """InstanceLock.acquire, with a lock file that cannot be created or written (read-only folder, a path
    under a regular file, another user's file) reported as one StoreError line instead of an OSError.
    InstanceLocked (another bot runs) passes through: that is not the operator's disk to fix."""
    from .daemon import InstanceLock

    try:
        return InstanceLock.acquire(config)
    except OSError as exc:
        store_lock = config.store.path.with_name(config.store.path.name + ".lock")
        failed = Path(exc.filename) if exc.filename else store_lock
        # The folder's creation fails for a store path under a regular file: name the lock file anyway.
        lock = store_lock if failed in (store_lock, store_lock.parent) else failed
        reason = exc.strerror or str(exc)
        if failed != lock:
            reason = f"{failed}: {reason}"
        raise StoreError(
            f"cannot create the lock file {lock} ({reason}): secirbot must be able to create and "
            "write it in a writable folder (check store.path, owner, mode, `lsattr`/`chattr -i`)"
        ) from None


# --- run -----------------------------------------------------------------------------------------


def cmd_run(args: argparse.Namespace) -> int:
    from .daemon import Daemon, InstanceLocked
    from .health import smtp_outage
    from .lease import LeaseHeld
    from .mailbox import MailboxAuthError, MailboxError
    from .wiring import build

    config, rules = load(args)
    loaded = config  # before the sandbox rewrites imap and smtp: what a SIGHUP compares against
    for warning in config.warnings():
        log.warning("%s", warning)
    sandbox = None
    if config.sandbox:
        from .sandbox.local import Sandbox, SandboxError

        try:
            sandbox = Sandbox.start(config)
        except SandboxError as exc:
            log.error("%s", exc)
            return EXIT_FAILED
        config = sandbox.config
        log.info("%s", sandbox.describe())
    try:
        lock = take_lock(config)
    except InstanceLocked as exc:
        log.error("%s", exc)
        if sandbox:
            sandbox.stop()
        return EXIT_FAILED
    except StoreError:
        if sandbox:
            sandbox.stop()
        raise
    try:
        bot = build(config, rules)
        daemon = Daemon(bot)
        if args.once:
            try:
                report = daemon.run_once()
            except MailboxAuthError:
                # login_refused() logged the one ERROR line saying what to check; no retries: exit 1.
                return EXIT_FAILED
            except (MailboxError, LeaseHeld) as exc:
                log.error("%s", exc)
                return EXIT_FAILED
            log.info(
                "processed %d message(s), %d quarantined; %d mail(s) still queued",
                report.processed,
                report.failed,
                bot.outbox.pending_count(),
            )
            outage = smtp_outage(bot.store)
            if outage is not None:
                log.error("%s", outage)
                return EXIT_TEMPFAIL
            return EXIT_OK
        daemon.loaded_config = loaded
        daemon.loader = lambda: reload_configuration(args)
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, daemon.signal_handler)
        signal.signal(signal.SIGHUP, daemon.reload_handler)
        try:
            daemon.run()
        except LeaseHeld as exc:
            log.error("%s", exc)
            return EXIT_FAILED
        return EXIT_OK
    finally:
        lock.release()
        if sandbox:
            sandbox.stop()


def reload_configuration(args: argparse.Namespace) -> tuple[Config, Rules]:
    """What SIGHUP reads: the configuration and rules as `run` found them, the templates checked as
    `secirbot check` does. ConfigError (file:line of each problem) if anything is invalid."""
    config = load_config(find_config_file(args.config), explicit=config_named_explicitly(args.config))
    rules = load_rules(config.rules)
    problems = [*check_rules_names(rules), *check_templates(config)]
    if problems:
        raise ConfigError(problems)
    return config, rules


# --- check ---------------------------------------------------------------------------------------


def cmd_check(args: argparse.Namespace) -> int:
    if args.health:
        from .health import health_check

        return health_check(load_configuration(args), sys.stdout)
    config, rules = load(args)
    problems = [*check_rules_names(rules), *check_templates(config)]
    for warning in config.warnings():
        print(f"warning: {warning}")
    from .dmarc_policy import print_authentication_warnings  # lazy, as the other heavy imports here

    print_authentication_warnings(config, rules)
    if problems:
        print("configuration error:", file=sys.stderr)
        for problem in problems:
            print(f"  {problem}", file=sys.stderr)
        return EXIT_CONFIG
    where = config.source or "embedded defaults"
    print(f"ok: {where}, {config.rules}, {config.templates}")
    if config.sandbox:
        print("note: no imap.host configured: `secirbot run` starts a local sandbox mailbox")
    store_problem = check_store(config, sys.stdout)
    if store_problem:
        print(f"error: {store_problem}", file=sys.stderr)
        return EXIT_STORE
    if args.connect:
        return check_connect(config, rules, sys.stdout, args.timeout)
    return EXIT_OK


def check_store(config: Config, out: TextIO) -> str | None:
    """Look at the store without changing it: prints one line when it is fine, returns the problem
    otherwise. A store that does not exist yet is fine (the bot creates it)."""
    path = config.store.path
    if not path.exists():
        print(f"store: none yet at {path}; `secirbot run` creates it", file=out)
        return None
    try:
        store = Store(path, readonly=True)
    except StoreError as exc:
        return str(exc)
    try:
        damage = store.integrity_problem()
        version = store.version
    except StoreError as exc:
        return str(exc)
    finally:
        store.close()
    if damage is not None:
        return (
            f"the store {path} is damaged (SQLite quick_check: {damage}): restore it from a backup, or "
            "move it away and the bot starts an empty one"
        )
    try:
        # Opening for writing changes nothing, and is refused for a read-only file even to root (chattr +i,
        # a read-only mount), where os.access() would say yes.
        os.close(os.open(path, os.O_RDWR))
    except OSError as exc:
        return (
            f"the store {path} cannot be written ({exc.strerror or exc}): the user running secirbot must be "
            "able to write it (check owner, mode, `lsattr`/`chattr -i`, read-only mounts)"
        )
    print(f"store: ok, {path} (schema version {version})", file=out)
    return None


def check_rules_names(rules: Rules) -> list[str]:
    from .iana.names import NotACcTLD, normalize_tld

    problems = []
    for name in rules.pilot.cctlds:
        try:
            normalize_tld(name)
        except NotACcTLD as exc:
            problems.append(f"rules.yaml: pilot.cctlds: {name!r}: {exc}")
    return problems


def check_templates(config: Config) -> list[str]:
    from .compose import Templates
    from .samples import sample_contexts

    templates = Templates(config.templates)
    if not config.templates.is_dir():
        return [f"templates: folder not found: {config.templates}"]
    contexts = sample_contexts(config)
    missing = [
        f"templates: {name} is missing in {config.templates}" for name in contexts if name not in templates.names()
    ]
    return missing + templates.check({n: c for n, c in contexts.items() if n in templates.names()})


def check_connect(config: Config, rules: Rules, out: TextIO, timeout: int) -> int:
    """Every probe of secirbot.probes, one line each; EXIT_FAILED if any failed (a skip is no failure)."""
    from .probes import report, run_probes

    return EXIT_OK if report(config, rules, run_probes(config, rules, timeout), out) else EXIT_FAILED


# --- lookup --------------------------------------------------------------------------------------


def cmd_lookup(args: argparse.Namespace) -> int:
    from .iana.lookup_cmd import lookup_command

    config = load_configuration(args)
    if not args.names and not args.all:
        print("error: name a ccTLD (secirbot lookup nl) or use --all", file=sys.stderr)
        return EXIT_CONFIG
    store = open_store(config)
    return lookup_command(config, store, args.names, args.all, args.json)


# --- requests, show, approve, deny -----------------------------------------------------------------


def open_store(config: Config, *, readonly: bool = False) -> Store:
    """The store; `readonly` for the commands that only read (requests, show, report, export): they never
    create one, so a missing store is one StoreError line naming the path (exit 5), not "no requests"."""
    path = config.store.path
    if readonly:
        if not path.exists():
            raise StoreError(
                f"no store at {path}: is this the right configuration ({config.source or 'none: sandbox mode'})? "
                "Name it with --config or $SECIRBOT_CONFIG; `secirbot run` creates the store"
            )
        return Store(path, readonly=True)
    return Store(path)


def cmd_requests(args: argparse.Namespace) -> int:
    from .reports import list_requests

    config = load_configuration(args)
    rows = list_requests(open_store(config, readonly=True), args.state)
    if args.json:
        json.dump(rows, sys.stdout, ensure_ascii=False, indent=2)
        print()
        return EXIT_OK
    if not rows:
        print("no requests" + (f" in state {args.state}" if args.state else ""))
        return EXIT_OK
    print(f"{'ID':>5}  {'STATE':<9} {'CCTLD':<14} {'REQUESTER':<36} {'CREATED':<20} DECIDED BY")
    for row in rows:
        print(
            f"{row['id']:>5}  {row['state']:<9} {row['cctld_display']:<14} {row['requester']:<36} "
            f"{row['created_at']:<20} {row['decided_by'] or ''}"
        )
    return EXIT_OK


def cmd_show(args: argparse.Namespace) -> int:
    from .reports import render_timeline, show_request

    config = load_configuration(args)
    data = show_request(open_store(config, readonly=True), args.id)
    if data is None:
        print(f"error: no request {args.id}", file=sys.stderr)
        return EXIT_FAILED
    if args.json:
        json.dump(data, sys.stdout, ensure_ascii=False, indent=2, default=str)
        print()
    else:
        print(render_timeline(data))
    return EXIT_OK


def cli_actor(by: str | None = None) -> str:
    """The name recorded as deciding: `--by`, else $SECIRBOT_OPERATOR, else the Unix user (behind sudo)."""
    named = (by or os.environ.get("SECIRBOT_OPERATOR") or "").strip()
    if named:
        return f"cli:{named}"
    user = os.environ.get("SUDO_USER") or os.environ.get("USER")
    if not user:
        try:
            user = getpass.getuser()
        except (KeyError, OSError):
            user = "unknown"
    return f"cli:{user}"


def cmd_decide(args: argparse.Namespace) -> int:
    from .replies import Verdict
    from .wiring import build
    from .workflow import DECIDED_STATES, decide, get_request

    config, rules = load(args)
    bot = build(config, rules)
    verdict = Verdict.APPROVE if args.command == "approve" else Verdict.DENY
    actor = cli_actor(getattr(args, "by", None))
    with bot.store.transaction():
        try:
            request = get_request(bot, args.id)
        except KeyError:
            print(f"error: no request {args.id}", file=sys.stderr)
            return EXIT_FAILED
        if request.state in DECIDED_STATES:
            print(
                f"error: request {args.id} was already decided: {request.decision} by "
                f"{request.decided_by} at {request.decided_at}",
                file=sys.stderr,
            )
            return EXIT_FAILED
        if not request.is_open:
            print(f"error: request {args.id} is {request.state}; only open requests can be decided", file=sys.stderr)
            return EXIT_FAILED
        # Approving while IANA was never asked (the request still waits for its lookup) skips the one check
        # the list is built on: allowed (a paper application, IANA down for days), but only on purpose. A
        # request IANA answered but where nobody could be asked (the requester is the only contact) is the
        # Secretariat's ordinary case and needs no --force.
        if verdict is Verdict.APPROVE and request.state == "resolving" and not args.force:
            print(
                f"error: request {args.id}: no IANA contact of {request.cctld} was asked yet; "
                "approve with --force to decide without them",
                file=sys.stderr,
            )
            return EXIT_FAILED
        decide(
            bot,
            request,
            verdict,
            decided_by=actor,
            via="cli",
            reason=args.reason,
            approver_id=None,
            message_row=None,
            checks={"operator": actor},
            rule="secretariat-cli",
            actor=actor,
        )
    print(f"request {args.id}: {verdict.value} recorded by {actor}")
    deliver_if_idle(bot, config)
    return EXIT_OK


def deliver_if_idle(bot: Any, config: Config) -> None:
    """Send the queued notices now unless a running bot holds the lock (it will send them itself)."""
    from .daemon import InstanceLocked
    from .settle import settle

    try:
        lock = take_lock(config)
    except InstanceLocked:
        print("the running bot will send the notices", file=sys.stderr)
        return
    try:
        if not config.sandbox:
            report = bot.outbox.deliver()
            settle(bot)
            print(f"notices: {report.sent} sent, {report.deferred} deferred, {report.failed} failed", file=sys.stderr)
            if report.sent:
                # A Mailman REST call that went through queues the notices about it: send those too.
                again = bot.outbox.deliver()
                settle(bot)
                if again.sent or again.deferred or again.failed:
                    print(
                        f"notices: {again.sent} sent, {again.deferred} deferred, {again.failed} failed", file=sys.stderr
                    )
    finally:
        lock.release()


def cmd_invite(args: argparse.Namespace) -> int:
    from .invitations import invite
    from .wiring import build

    config, rules = load(args)
    bot = build(config, rules)
    results = invite(bot, args.names, cli_actor(), dry_run=args.dry_run, again=args.again)
    for result in results:
        print(result.message, file=sys.stdout if result.ok else sys.stderr)
    if any(r.ok for r in results) and not args.dry_run:
        deliver_if_idle(bot, config)
    if any(r.kind in ("refused", "outside-pilot") for r in results):
        return EXIT_FAILED
    if any(r.kind == "not-cctld" for r in results):
        return EXIT_NOT_CCTLD
    if any(r.kind == "unresolved" for r in results):
        return EXIT_UNRESOLVED
    return EXIT_OK


def cmd_report(args: argparse.Namespace) -> int:
    from .intake import pilot_cctlds
    from .reports import cctld_report, render_report

    config, rules = load(args)
    report = cctld_report(open_store(config, readonly=True), sorted(pilot_cctlds(rules)) if rules.pilot.enabled else [])
    if args.json:
        json.dump(report, sys.stdout, ensure_ascii=False, indent=2)
        print()
    else:
        print(render_report(report))
    return EXIT_OK


def cmd_export(args: argparse.Namespace) -> int:
    import csv

    from .reports import EXPORT_FIELDS, roster

    config = load_configuration(args)
    rows = roster(open_store(config, readonly=True))
    with contextlib.ExitStack() as stack:
        try:
            out = (
                stack.enter_context(open(args.output, "w", encoding="utf-8", newline="")) if args.output else sys.stdout
            )
        except OSError as exc:
            print(f"error: cannot write {args.output}: {exc.strerror or exc}", file=sys.stderr)
            return EXIT_FAILED
        if args.format == "json":
            json.dump(rows, out, ensure_ascii=False, indent=2)
            out.write("\n")
        else:
            writer = csv.DictWriter(out, fieldnames=EXPORT_FIELDS)
            writer.writeheader()
            writer.writerows(rows)
    if args.output:
        print(f"{len(rows)} member(s) written to {args.output}", file=sys.stderr)
    return EXIT_OK


def cmd_members(args: argparse.Namespace) -> int:
    if getattr(args, "members_command", None) == "import":
        return cmd_members_import(args)
    from .roster import members

    config = load_configuration(args)
    cctld = None
    if args.cctld:
        try:
            cctld = normalize_tld(args.cctld).ascii
        except NotACcTLD as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_NOT_CCTLD
    rows = [m.as_json() for m in members(open_store(config, readonly=True), cctld, include_removed=args.all)]
    if args.json:
        json.dump(rows, sys.stdout, ensure_ascii=False, indent=2)
        print()
        return EXIT_OK
    if not rows:
        print("no members" + (f" for {args.cctld}" if cctld else ""))
        return EXIT_OK
    print(f"{'ADDRESS':<36} {'CCTLD':<10} {'STATE':<8} {'SINCE':<20} APPROVED BY")
    for row in rows:
        print(
            f"{row['address']:<36} {row['cctld_unicode']:<10} {row['state']:<8} {row['since']:<20} {row['approved_by']}"
        )
    return EXIT_OK


def cmd_members_import(args: argparse.Namespace) -> int:
    from .mailman import list_id
    from .mailman_rest import MailmanRest, RestUnavailable
    from .roster import ImportEntry, import_members, read_csv
    from .wiring import build

    config, rules = load(args)
    if args.csv is not None:
        try:
            entries = read_csv(args.csv.read_text(encoding="utf-8-sig"))
        except (OSError, UnicodeDecodeError) as exc:
            print(f"error: cannot read {args.csv}: {getattr(exc, 'strerror', None) or exc}", file=sys.stderr)
            return EXIT_FAILED
        origin = f"CSV {args.csv.name}"
    else:
        if not config.mailman.rest_url:
            print("error: --from-mailman needs mailman.rest_url (and rest_user, rest_password)", file=sys.stderr)
            return EXIT_CONFIG
        try:
            found = MailmanRest(config.mailman).member_addresses(list_id(config.mailman.list))
        except RestUnavailable as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_TEMPFAIL
        entries = [ImportEntry(address, None, name) for address, name in found]
        origin = f"Mailman {config.mailman.list}"
    bot = build(config, rules)
    actor = cli_actor(args.by)
    with bot.store.transaction():
        result = import_members(bot.store, entries, now=bot.now(), actor=actor, origin=origin, dry_run=args.dry_run)
    verb = "would import" if args.dry_run else "imported"
    print(f"{verb} {len(result.added)} member(s) from {origin}; {len(result.already)} already on the roster")
    for address in result.added:
        print(f"  + {address}")
    if result.unplaced:
        print(f"{len(result.unplaced)} address(es) not imported, for the Secretariat to place by hand:")
        for address, why in result.unplaced:
            print(f"  ? {address}: {why}")
    return EXIT_OK


def cmd_remove(args: argparse.Namespace) -> int:
    from .membership import confirmed, remove
    from .roster import on_list
    from .wiring import build

    if not args.done and not (args.reason or "").strip():
        print("error: --reason is required (it is audited and told to the member); or --done", file=sys.stderr)
        return EXIT_FAILED
    config, rules = load(args)
    bot = build(config, rules)
    actor = cli_actor(args.by)
    with bot.store.transaction():
        member = on_list(bot.store, args.address)
        if member is None:
            print(f"error: {args.address} is not on the roster as a member (see `secirbot members`)", file=sys.stderr)
            return EXIT_FAILED
        if args.done:
            confirmed(bot, member, how=f"recorded by {actor}: made in Mailman", actor=actor, reason=args.reason)
            print(f"{member.address}: removal recorded by {actor}")
        else:
            removal = remove(
                bot, member, actor=actor, reason=args.reason.strip(), asked_by="The Secretariat", cause_message=None
            )
            print(
                {
                    "rest": f"{member.address}: leaving; the bot removes it over Mailman REST",
                    "secretariat": f"{member.address}: leaving; make the removal in Mailman (the mail to "
                    f"{bot.secretariat} says how), then `secirbot remove {member.address} --done`",
                    "already-leaving": f"{member.address} is already leaving",
                }[removal.how]
            )
    deliver_if_idle(bot, config)
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo(keep=args.keep)


def cmd_explain(args: argparse.Namespace) -> int:
    from .explain import explain_command

    config, rules = load(args)
    return explain_command(
        config, rules, args.file, as_json=args.json, lookup=not args.no_lookup, out=sys.stdout, err=sys.stderr
    )


def cmd_init(args: argparse.Namespace) -> int:
    from .init_cmd import init_command

    return init_command(args.dir, sys.stdout, sys.stderr)


COMMANDS = {
    "run": cmd_run,
    "explain": cmd_explain,
    "init": cmd_init,
    "check": cmd_check,
    "lookup": cmd_lookup,
    "requests": cmd_requests,
    "show": cmd_show,
    "approve": cmd_decide,
    "deny": cmd_decide,
    "invite": cmd_invite,
    "report": cmd_report,
    "export": cmd_export,
    "members": cmd_members,
    "remove": cmd_remove,
    "demo": cmd_demo,
}
