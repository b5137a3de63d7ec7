"""ccTLD names: spellings, what is and is not a ccTLD, the packaged list and the script that rebuilds it."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from secirbot.iana.names import (
    NotACcTLD,
    NotDelegated,
    TldName,
    all_cctlds,
    cctld_status,
    is_cctld,
    normalize_tld,
    parse_cctld_table,
    parse_tld,
)

ROOT = Path(__file__).resolve().parents[2]
DATA = Path(__file__).resolve().parent / "data"
RF = TldName("xn--p1ai", "рф")


@pytest.mark.parametrize("text", [".рф", "рф", "РФ", "xn--p1ai", "XN--P1AI", ".xn--p1ai.", " .РФ. "])
def test_idn_spellings(text: str) -> None:
    assert normalize_tld(text) == RF


@pytest.mark.parametrize("text", ["nl", ".NL", "nl.", " nl ", ".nl.", "Nl", "ＮＬ"])
def test_ascii_spellings(text: str) -> None:
    assert normalize_tld(text) == TldName("nl", "nl")


def test_arabic_tld_pasted_with_bidi_marks_from_iana_page() -> None:
    # IANA's root db shows "&#x200f;.مصر&#x200e;": the marks must not make it unknown.
    assert normalize_tld("\u200f.مصر\u200e") == TldName("xn--wgbh1c", "مصر")


def test_cjk_ideographic_full_stop() -> None:
    assert normalize_tld("。中国") == TldName("xn--fiqs8s", "中国")


def test_display_shows_both_forms() -> None:
    assert RF.display() == ".рф (xn--p1ai)"
    assert TldName("nl", "nl").display() == ".nl"


@pytest.mark.parametrize(
    "text, words",
    [
        ("com", "not a country-code TLD"),
        ("example", "not a country-code TLD"),
        ("онлайн", "generic internationalised TLD"),  # a generic IDN (xn--80asehdb)
        ("xn--80asehdb", "generic internationalised TLD"),
        ("zz", "IANA has no country-code TLD"),
        ("", "no TLD given"),
        ("   ", "no TLD given"),
        (".", "no TLD given"),
        ("example.nl", "did you mean .nl"),
        ("n_l", "not a valid top-level domain"),
        ("xn--zz", "not a valid internationalised name"),
        ("-nl", "not a valid top-level domain"),
    ],
)
def test_not_a_cctld(text: str, words: str) -> None:
    with pytest.raises(NotACcTLD) as info:
        normalize_tld(text)
    assert not isinstance(info.value, NotDelegated)
    assert words in str(info.value)


@pytest.mark.parametrize(
    "text, status",
    [
        ("eh", "not-assigned"),
        ("bl", "not-assigned"),
        ("mf", "not-assigned"),
        ("bq", "not-assigned"),
        ("um", "not-assigned"),
        ("yu", "retired"),
        ("tp", "retired"),
        ("an", "retired"),
        (".EH", "not-assigned"),
    ],
)
def test_undelegated_and_retired_have_their_own_message(text: str, status: str) -> None:
    with pytest.raises(NotDelegated) as info:
        normalize_tld(text)
    assert info.value.status == status
    assert ("Not assigned" if status == "not-assigned" else "retired") in str(info.value)
    assert not is_cctld(info.value.name.ascii)


def test_packaged_list() -> None:
    names = all_cctlds()
    assert len(names) == 309
    assert sum(n.is_idn for n in names) == 61
    assert all(len(n.ascii) == 2 or n.is_idn for n in names)
    assert names == sorted(names)
    assert RF in names and TldName("nl", "nl") in names
    assert is_cctld("nl") and is_cctld("XN--P1AI") and not is_cctld("com") and not is_cctld("eh")
    assert cctld_status("xn--80asehdb") is None
    # Every IDN row's U-label is the decoding of its A-label.
    assert all(parse_tld(n.ascii) == n for n in names)


def test_table_format_errors_name_the_line() -> None:
    with pytest.raises(ValueError, match=r"cctlds.txt:2"):
        parse_cctld_table("# header\nnl nl delegated\n")


def _refresh_module():
    spec = importlib.util.spec_from_file_location("refresh_cctlds", ROOT / "scripts" / "refresh_cctlds.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_refresh_script_tells_idn_cctlds_from_generic_idns() -> None:
    """Rows cut verbatim from IANA's root db page: the Type column decides, not the script of the name."""
    refresh = _refresh_module()
    rows = refresh.parse_root_db((DATA / "rootdb-excerpt.html").read_text(encoding="utf-8"))
    version, delegated = refresh.parse_tld_list((DATA / "tlds-excerpt.txt").read_text(encoding="utf-8"))
    entries = refresh.build(rows, delegated)
    assert ("xn--p1ai", "рф", "delegated") in entries
    assert ("xn--mgberp4a5d4ar", "السعودية", "delegated") in entries
    assert ("eh", "eh", "not-assigned") in entries
    assert ("yu", "yu", "retired") in entries
    listed = {e[0] for e in entries}
    assert "xn--80asehdb" not in listed and "com" not in listed  # generic IDN, generic
    text = refresh.render(entries, version)
    table = parse_cctld_table(text)
    assert table["xn--p1ai"] == (RF, "delegated")
    assert version.startswith("Version 2026072401")


def test_packaged_file_has_refresh_instructions() -> None:
    head = (ROOT / "secirbot" / "data" / "cctlds.txt").read_text(encoding="utf-8").split("\n")[:8]
    assert any("refresh_cctlds.py" in line for line in head)
    assert any("country-code" in line for line in head)
