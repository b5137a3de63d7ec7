"""The configuration file: loading, environment overrides, validation with file and line.

Owns the pinned configuration contract (`imap`, `smtp`, `addresses`, `mailman`, `iana`, `store`, `rules`,
`templates`). Every key may be overridden by `SECIRBOT_<SECTION>_<KEY>`; relative paths are relative to the
config file. Errors name the file, the line and the dotted key, and never echo a secret.
`mailman.rest_url` is normalised here, once, to the API's base without its version (`normalize_rest_url`).
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib.resources
import os
import re
import types
import typing
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

import yaml

DEFAULT_CONFIG_FILE = "secirbot.yaml"
ENV_CONFIG = "SECIRBOT_CONFIG"
ENV_PREFIX = "SECIRBOT_"
SECRET_KEYS = frozenset({"password", "rest_password"})

Security = Literal["tls", "starttls", "none"]


class ConfigError(Exception):
    """One or more problems in a configuration or rules file; `problems` holds one line each."""

    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class ImapConfig:
    host: str | None = None
    port: int = 993
    security: Security = "tls"
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    folder: str = "INBOX"
    ca_file: Path | None = None
    tls_verify: bool = True
    processed_folder: str = "Processed"
    failed_folder: str = "Failed"
    batch_size: int = 50
    max_message_size: int = 10_000_000
    idle_renew_seconds: int = 600
    poll_seconds: int = 60
    timeout_seconds: int = 60
    lease_folder: str = "secirbot-lease"
    lease_seconds: int = 300  # one bot per mailbox across hosts; 0 = only the local lock files
    # The header our own receiving server writes with the envelope recipient (Delivered-To for Dovecot's
    # LDA/LMTP, X-Original-To for Postfix). When set, a reply's token is read from its top-most copy only;
    # when not, from To/Cc only, which a DKIM policy must then see signed.
    envelope_header: str | None = None


@dataclass(frozen=True)
class SmtpConfig:
    host: str | None = None
    port: int = 465
    security: Security = "tls"
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    ca_file: Path | None = None
    tls_verify: bool = True
    timeout_seconds: int = 60


@dataclass(frozen=True)
class AddressesConfig:
    bot: str = "join@lists.example.org"
    secretariat: str = "secretariat@example.org"
    bot_name: str = "ccTLD security list admission"


@dataclass(frozen=True)
class MailmanConfig:
    dialect: Literal["mailman3", "mailman2", "mailman3-rest"] = "mailman3"
    list: str = "secir@lists.example.org"
    rest_url: str | None = None  # base URL, normalised at load: no /3.1, no trailing slash
    rest_user: str | None = None
    rest_password: str | None = field(default=None, repr=False)
    rest_timeout_seconds: int = 30


@dataclass(frozen=True)
class IanaConfig:
    whois: str = "whois.iana.org:43"
    rdap: str = "https://rdap.iana.org"
    primary: Literal["whois", "rdap"] = "whois"
    timeout_seconds: int = 15
    cache_ttl_seconds: int = 24 * 3600
    rdap_ca_file: Path | None = None


@dataclass(frozen=True)
class DnsConfig:
    """Resolver used for the root-delegation sanity check and DKIM key lookups; empty = system resolver."""

    nameservers: tuple[str, ...] = ()
    port: int = 53
    timeout_seconds: int = 5
    enabled: bool = True


@dataclass(frozen=True)
class StoreConfig:
    path: Path = Path("var/secirbot.sqlite3")


@dataclass(frozen=True)
class Config:
    imap: ImapConfig = field(default_factory=ImapConfig)
    smtp: SmtpConfig = field(default_factory=SmtpConfig)
    addresses: AddressesConfig = field(default_factory=AddressesConfig)
    mailman: MailmanConfig = field(default_factory=MailmanConfig)
    iana: IanaConfig = field(default_factory=IanaConfig)
    dns: DnsConfig = field(default_factory=DnsConfig)
    store: StoreConfig = field(default_factory=StoreConfig)
    rules: Path = Path("rules.yaml")
    templates: Path = Path("templates")
    source: Path | None = None  # the file this was read from; None = embedded defaults

    @property
    def sandbox(self) -> bool:
        """No real mailbox configured: the bot runs against a throw-away local IMAP server and SMTP sink."""
        return not self.imap.host

    def warnings(self) -> list[str]:
        out = []
        for name, section in (("imap", self.imap), ("smtp", self.smtp)):
            if section.host and section.security == "none" and not _is_loopback(section.host):
                out.append(
                    f"{name}.security is 'none' for {section.host}: credentials and mail cross the "
                    "network unencrypted; 'none' only makes sense on loopback"
                )
            if section.host and not section.tls_verify:
                out.append(f"{name}.tls_verify is false: the server's certificate is not checked")
        return out


def _is_loopback(host: str) -> bool:
    return host in ("localhost", "::1") or host.startswith("127.")


# --- loading -------------------------------------------------------------------------------------


class YamlSource:
    """A parsed YAML file that remembers the line of every key, so errors can point at it."""

    def __init__(self, path: Path | None, data: dict[str, Any], lines: dict[tuple[str, ...], int]):
        self.path = path
        self.data = data
        self.lines = lines
        self.env: dict[tuple[str, ...], str] = {}  # key path -> the SECIRBOT_* variable that set it

    def where(self, key: tuple[str, ...]) -> str:
        for n in range(len(key), 0, -1):
            if key[:n] in self.env:
                return f"environment {self.env[key[:n]]}"
        name = str(self.path) if self.path else "<defaults>"
        for n in range(len(key), 0, -1):
            if key[:n] in self.lines:
                return f"{name}:{self.lines[key[:n]]}"
        return name

    def at(self, key: tuple[str, ...]) -> str:
        """Where the other key of a cross-key rule is set, for an error already naming this file: its line,
        the environment variable, or the default."""
        if key in self.env:
            return f"environment {self.env[key]}"
        if key in self.lines:
            return f"line {self.lines[key]}"
        return "the default"


def read_yaml(path: Path) -> YamlSource:
    """Read a YAML mapping, keeping the line number of each key path. Raises ConfigError."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read: {exc.strerror or exc}"]) from exc
    except UnicodeDecodeError as exc:
        raise ConfigError([f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})"]) from exc
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark else ""
        raise ConfigError([f"{path}{line}: not valid YAML: {getattr(exc, 'problem', exc)}"]) from exc
    if node is None:
        return YamlSource(path, {}, {})
    if not isinstance(node, yaml.MappingNode):
        raise ConfigError([f"{path}:{node.start_mark.line + 1}: the file must be a mapping of keys to values"])
    lines: dict[tuple[str, ...], int] = {}
    _collect_lines(node, (), lines)
    data = yaml.safe_load(text) or {}
    return YamlSource(path, data, lines)


def _collect_lines(node: yaml.Node, prefix: tuple[str, ...], lines: dict[tuple[str, ...], int]) -> None:
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = (*prefix, str(key_node.value))
            lines[key] = key_node.start_mark.line + 1
            _collect_lines(value_node, key, lines)


# Where a configuration is looked for when neither --config nor $SECIRBOT_CONFIG names one, in order.
# Without any of them the bot runs in sandbox mode: the only case where no configuration is not an error.
SYSTEM_CONFIG_FILE = Path("/etc/secirbot/secirbot.yaml")
USER_CONFIG_FILE = Path("~/.config/secirbot/secirbot.yaml")


def config_search_path() -> list[Path]:
    """The files tried when none is named: ./secirbot.yaml, /etc/secirbot/, ~/.config/secirbot/."""
    return [Path(DEFAULT_CONFIG_FILE), SYSTEM_CONFIG_FILE, USER_CONFIG_FILE.expanduser()]


def config_named_explicitly(explicit: str | None) -> bool:
    """The operator named the configuration (--config or $SECIRBOT_CONFIG), so it must exist and say something."""
    return bool(explicit or os.environ.get(ENV_CONFIG))


def find_config_file(explicit: str | None) -> Path | None:
    """--config, else $SECIRBOT_CONFIG, else the first of config_search_path() that exists, else None
    (embedded defaults: sandbox mode)."""
    if explicit:
        return Path(explicit)
    env = os.environ.get(ENV_CONFIG)
    if env:
        return Path(env)
    for candidate in config_search_path():
        if candidate.exists():
            return candidate
    return None


def load_config(path: Path | None, environ: Mapping[str, str] | None = None, *, explicit: bool = False) -> Config:
    """Load and validate; path None means embedded defaults (plus environment overrides). A file the
    operator named (`explicit`) that sets nothing is an error: taking it as sandbox mode would hide a
    truncated or wrongly mounted configuration."""
    environ = os.environ if environ is None else environ
    source = read_yaml(path) if path is not None else YamlSource(None, {}, {})
    if explicit and path is not None and not source.data:
        raise ConfigError(
            [
                f"{path}: the configuration file is empty: set at least imap.host (see `secirbot init`), "
                "or name no configuration at all for the local sandbox"
            ]
        )
    base_dir = path.resolve().parent if path is not None else Path.cwd()
    problems: list[str] = []
    data = _apply_env(dict(source.data), environ, problems, source.env)
    config = build_section(Config, data, (), source, base_dir, problems)
    if problems:
        raise ConfigError(problems)
    config = resolve_relative(dataclasses.replace(config, source=path))
    config = _normalize_mailman(config, source, problems)
    problems.extend(_check_semantics(config, source))
    if problems:
        raise ConfigError(problems)
    return config


def _apply_env(
    data: dict[str, Any], environ: Mapping[str, str], problems: list[str], origins: dict[tuple[str, ...], str]
) -> dict[str, Any]:
    sections = {name: tp for name, tp in _hints(Config).items() if name != "source"}
    for name, value in sorted(environ.items()):
        if not name.startswith(ENV_PREFIX) or name == ENV_CONFIG:
            continue
        rest = name[len(ENV_PREFIX) :].lower()
        for section, tp in sections.items():
            if rest == section and not dataclasses.is_dataclass(tp):
                data[section] = value
                origins[(section,)] = name
                break
            if rest.startswith(section + "_") and dataclasses.is_dataclass(tp):
                key = rest[len(section) + 1 :]
                known = {f.name for f in dataclasses.fields(tp)}
                if key not in known:
                    problems.append(f"environment {name}: {section} has no key '{key}'")
                    break
                current = data.get(section)
                merged = dict(current) if isinstance(current, dict) else {}
                merged[key] = value
                data[section] = merged
                origins[(section, key)] = name
                break
    return data


_HINTS_CACHE: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    if cls not in _HINTS_CACHE:
        _HINTS_CACHE[cls] = typing.get_type_hints(cls)
    return _HINTS_CACHE[cls]


def build_section(
    cls: type, data: Any, key: tuple[str, ...], source: YamlSource, base_dir: Path, problems: list[str]
) -> Any:
    if not isinstance(data, dict):
        problems.append(f"{source.where(key)}: {'.'.join(key)}: must be a mapping")
        return cls()
    hints = _hints(cls)
    names = {f.name for f in dataclasses.fields(cls)} - {"source"}
    values: dict[str, Any] = {}
    for name, raw in data.items():
        sub = (*key, str(name))
        if name not in names:
            near = difflib.get_close_matches(str(name), sorted(names), n=1)
            hint = f"; did you mean '{near[0]}'?" if near else ""
            problems.append(
                f"{source.where(sub)}: unknown key '{'.'.join(sub)}'{hint} (known: {', '.join(sorted(names))})"
            )
            continue
        values[name] = _convert(hints[name], raw, sub, source, base_dir, problems)
    return cls(**{k: v for k, v in values.items() if v is not _INVALID})


_INVALID = object()


def _convert(tp: Any, raw: Any, key: tuple[str, ...], source: YamlSource, base_dir: Path, problems: list[str]) -> Any:
    dotted = ".".join(key)
    where = source.where(key)
    shown = "<hidden>" if key[-1] in SECRET_KEYS else repr(raw)

    def bad(expected: str) -> object:
        problems.append(f"{where}: {dotted}: expected {expected}, got {shown}")
        return _INVALID

    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return build_section(tp, raw if raw is not None else {}, key, source, base_dir, problems)
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        empty = raw is None or (isinstance(raw, str) and raw.strip().lower() in ("", "null", "none"))
        if empty and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _convert(inner[0], raw, key, source, base_dir, problems)
    if origin is Literal:
        if raw in args:
            return raw
        return bad("one of " + " | ".join(str(a) for a in args))
    if origin is tuple:
        items = raw
        if isinstance(raw, str):
            items = [part.strip() for part in raw.split(",") if part.strip()]
        if not isinstance(items, list):
            return bad("a list")
        return tuple(str(item) for item in items)
    if tp is bool:
        if isinstance(raw, bool):
            return raw
        if isinstance(raw, str) and raw.strip().lower() in ("true", "yes", "1", "on", "false", "no", "0", "off"):
            return raw.strip().lower() in ("true", "yes", "1", "on")
        return bad("true or false")
    if tp is int:
        if isinstance(raw, bool):
            return bad("an integer")
        if isinstance(raw, int):
            value = raw
        elif isinstance(raw, str) and re.fullmatch(r"\s*-?\d+\s*", raw):
            value = int(raw)
        else:
            return bad("an integer")
        if key[-1] == "port" and not 0 < value < 65536:
            return bad("a port number 1-65535")
        if value < 0:
            return bad("a number >= 0")
        return value
    if tp is str:
        if isinstance(raw, (str, int)) and not isinstance(raw, bool):
            return str(raw)
        return bad("a string")
    if tp is timedelta:
        try:
            return parse_duration(raw)
        except ValueError:
            return bad("a duration such as 90s, 30m, 12h, 3d or 2w")
    if tp is Path:
        if not isinstance(raw, str) or not raw.strip():
            return bad("a path")
        path = Path(raw).expanduser()
        return path if path.is_absolute() else base_dir / path
    raise TypeError(f"unsupported config type {tp!r}")  # a programming error, not a user's


def resolve_relative(config: Config) -> Config:
    """Make the default relative paths absolute against the config file's folder (or the cwd)."""
    base = config.source.resolve().parent if config.source else Path.cwd()

    def fix(p: Path) -> Path:
        return p if p.is_absolute() else base / p

    def fix_default(p: Path, default: Path) -> Path:
        # An installed wheel carries rules.yaml and templates/ as secirbot/defaults: they stand in for the
        # default path only, never for one the operator configured.
        found = fix(p)
        packaged = Path(str(importlib.resources.files("secirbot"))) / "defaults" / default.name
        return packaged if p == default and not found.exists() and packaged.exists() else found

    return dataclasses.replace(
        config,
        rules=fix_default(config.rules, Path("rules.yaml")),
        templates=fix_default(config.templates, Path("templates")),
        store=dataclasses.replace(config.store, path=fix(config.store.path)),
    )


REST_API_VERSION = "3.1"


def normalize_rest_url(url: str) -> str:
    """Mailman core's REST base URL as the bot uses it: scheme://host[:port][/prefix], without the API
    version and without a trailing slash; the bot appends /3.1/ to it.

    Accepts the forms the Mailman docs and mailmanclient use: http://host:8001, http://host:8001/,
    http://host:8001/3.1 and http://host:8001/3.1/ all give http://host:8001 (a reverse proxy's prefix,
    http://host/mailman/api/3.1, stays). ValueError for anything else; its text never repeats the URL,
    which may hold a user:password@."""
    try:
        parts = urllib.parse.urlsplit(url.strip())
        parts.port  # noqa: B018 -- parsing the port is what raises ValueError for a bad one
    except ValueError:
        raise ValueError("not a valid URL (expected e.g. http://localhost:8001)") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("expected an http(s) URL such as http://localhost:8001")
    if parts.query or parts.fragment:
        raise ValueError("expected the API's base URL, without ?query or #fragment")
    path = parts.path.rstrip("/")
    head, _, last = path.rpartition("/")
    if last == REST_API_VERSION:
        path = head.rstrip("/")
    elif re.fullmatch(r"\d+\.\d+", last):
        raise ValueError(
            f"the bot speaks Mailman's REST API {REST_API_VERSION}, not {last}: end the URL in "
            f"/{REST_API_VERSION} or leave the version out"
        )
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, path, "", ""))


def _normalize_mailman(config: Config, source: YamlSource, problems: list[str]) -> Config:
    url = config.mailman.rest_url
    if not url:
        return config
    try:
        base = normalize_rest_url(url)
    except ValueError as exc:
        problems.append(f"{source.where(('mailman', 'rest_url'))}: mailman.rest_url: {exc}")
        return config
    return dataclasses.replace(config, mailman=dataclasses.replace(config.mailman, rest_url=base))


_EMAIL = re.compile(r"^[^@\s<>]+@[^@\s<>]+\.[^@\s<>]+$")


def _check_semantics(config: Config, source: YamlSource) -> list[str]:
    problems = []

    def need(cond: bool, key: tuple[str, ...], message: str) -> None:
        if not cond:
            problems.append(f"{source.where(key)}: {'.'.join(key)}: {message}")

    for name, section in (("imap", config.imap), ("smtp", config.smtp)):
        if section.host:
            need(
                section.ca_file is None or section.ca_file.exists(),
                (name, "ca_file"),
                f"file not found: {section.ca_file}",
            )
    # Cross-key rules: each message names the key that requires this one, where it is set, and the fix.
    if config.imap.host:
        host_at = f"imap.host is set ({source.at(('imap', 'host'))}), so this is the real mailbox"
        sandbox = "or remove imap.host to run on the local sandbox"
        need(
            bool(config.imap.username),
            ("imap", "username"),
            f"required because {host_at}: set the user the bot logs in as, {sandbox}",
        )
        need(
            config.imap.password is not None,
            ("imap", "password"),
            f"required because {host_at}: set SECIRBOT_IMAP_PASSWORD (or imap.password), {sandbox}",
        )
        need(
            bool(config.smtp.host),
            ("smtp", "host"),
            f"required because {host_at} and the bot's replies need a real SMTP server: set smtp.host, {sandbox}",
        )
    need(bool(_EMAIL.match(config.addresses.bot)), ("addresses", "bot"), "not an e-mail address")
    need(
        "+" not in config.addresses.bot.split("@")[0],
        ("addresses", "bot"),
        "must not contain '+': the bot adds its own +TOKEN sub-addresses",
    )
    need(bool(_EMAIL.match(config.addresses.secretariat)), ("addresses", "secretariat"), "not an e-mail address")
    need(bool(_EMAIL.match(config.mailman.list)), ("mailman", "list"), "not an e-mail address")
    if config.mailman.dialect == "mailman3-rest":
        rest = (
            f"required because mailman.dialect is mailman3-rest ({source.at(('mailman', 'dialect'))}), which"
            " subscribes over Mailman's REST API"
        )
        other = "or choose dialect mailman3 to send the e-mail command instead"
        need(
            bool(config.mailman.rest_url),
            ("mailman", "rest_url"),
            f"{rest}: set it to the API's URL, e.g. http://localhost:8001, {other}",
        )
        need(
            bool(config.mailman.rest_user),
            ("mailman", "rest_user"),
            f"{rest}: set the API's admin user (Mailman's [webservice] admin_user), {other}",
        )
        need(
            config.mailman.rest_password is not None,
            ("mailman", "rest_password"),
            f"{rest}: set SECIRBOT_MAILMAN_REST_PASSWORD (or mailman.rest_password), {other}",
        )
    need(bool(re.fullmatch(r"[^:\s]+(:\d+)?", config.iana.whois)), ("iana", "whois"), "expected host or host:port")
    need(config.iana.rdap.startswith(("http://", "https://")), ("iana", "rdap"), "expected an http(s) URL")
    return problems


def parse_duration(text: str | int | float) -> timedelta:
    """'90s', '30m', '12h', '3d', '2w' (or a bare number of seconds) -> timedelta; ValueError otherwise."""
    if isinstance(text, bool):
        raise ValueError(f"not a duration: {text!r}")
    if isinstance(text, (int, float)):
        return timedelta(seconds=text)
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*", str(text))
    if not match:
        raise ValueError(f"not a duration: {text!r} (use e.g. 90s, 30m, 12h, 3d, 2w)")
    number, unit = float(match.group(1)), match.group(2) or "s"
    seconds = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[unit]
    return timedelta(seconds=number * seconds)
