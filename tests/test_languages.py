"""Tests for the language registry (languages/languages.toml, xdistill/languages.py)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from xdistill.errors import ConfigError, UnknownLanguageError
from xdistill.data.languages import (
    SOURCES,
    Language,
    LanguageRegistry,
    default_registry_path,
    unlabeled_files,
)

NO_LOCAL_LABELED = {"bs", "ca", "cs", "da", "hr", "lv", "mk", "no", "sk", "sl", "sq", "sv"}


@pytest.fixture(scope="module")
def reg() -> LanguageRegistry:
    return LanguageRegistry.load()


# --------------------------------------------------------------------- registry file


def test_default_path_is_packaged_file():
    p = default_registry_path()
    assert p.name == "languages.toml" and p.is_file()
    assert (p.parent / "__init__.py").is_file()  # mapped to xdistill._languages in wheels


def test_registry_loads(reg):
    assert len(reg) >= 90
    de = reg.get("de")
    assert de == Language("de", "German", "Latn", "deu", "deu", frozenset(SOURCES), "de")
    assert reg.get("zh").tatoeba == "cmn"
    assert reg.get("en").tatoeba is None
    for code, lang in reg.languages.items():
        assert lang.code == code
        assert lang.sources <= set(SOURCES)
        assert ("tatoeba" in lang.sources) == (lang.tatoeba is not None)
        assert ("leipzig" in lang.sources) == (lang.leipzig is not None)


def test_xtremedistil41(reg):
    g = reg.groups["xtremedistil41"]
    assert len(g) == 41 and len(set(g)) == 41
    assert NO_LOCAL_LABELED <= set(g)
    assert all("wikiann" in reg.get(c).sources for c in g)


def test_groups_are_registered(reg):
    assert reg.groups["smoke"] == ("en", "sw")
    assert "all" not in reg.groups
    for name, members in reg.groups.items():
        assert name not in reg.languages
        for c in members:
            assert c in reg.languages, (name, c)


# --------------------------------------------------------------------- resolve


def test_resolve_explicit_codes(reg):
    assert reg.resolve("de, sw,EN") == (["de", "sw", "en"], [])
    assert reg.resolve("de,sw", available=["de", "sw", "fr"]) == (["de", "sw"], [])


def test_resolve_group_reports_missing(reg):
    sel, missing = reg.resolve("smoke", available=["en", "de"])
    assert sel == ["en"] and missing == ["sw"]
    # a missing group member listed explicitly too is an error, not a warning
    with pytest.raises(UnknownLanguageError, match="sw"):
        reg.resolve("smoke,sw", available=["en", "de"])


def test_resolve_all(reg):
    assert reg.resolve("all", available=["sw", "de", "en"]) == (["de", "en", "sw"], [])
    with pytest.raises(ConfigError, match="all"):
        reg.resolve("all")


def test_resolve_deduplicates(reg):
    sel, missing = reg.resolve("en,smoke,all,de,en", available=["en", "de", "fr"])
    assert sel == ["en", "de", "fr"]
    assert missing == ["sw"]
    # repeated groups do not repeat missing members
    sel, missing = reg.resolve("cjk,smoke,cjk", available=["zh", "sw"])
    assert sel == ["zh", "sw"] and missing == ["ja", "ko", "en"]


def test_resolve_unknown_code_suggests(reg):
    with pytest.raises(UnknownLanguageError) as ei:
        reg.resolve("en,dee")
    msg = str(ei.value)
    assert "'dee'" in msg and "'de'" in msg
    with pytest.raises(UnknownLanguageError, match="'de'"):
        reg.resolve("german")


def test_resolve_known_code_without_data(reg):
    with pytest.raises(UnknownLanguageError) as ei:
        reg.resolve("en,da,sv", available=["en"], source="wikiann (local)")
    msg = str(ei.value)
    assert "da" in msg and "sv" in msg and "wikiann (local)" in msg and "no labeled data" in msg


def test_resolve_empty_is_error(reg):
    with pytest.raises(ConfigError):
        reg.resolve(" , ")
    with pytest.raises(ConfigError, match="selects no language"):
        reg.resolve("smoke", available=["de"])


def test_get_unknown(reg):
    with pytest.raises(UnknownLanguageError, match=r"'xq'.*did you mean"):
        reg.get("xq")
    assert isinstance(UnknownLanguageError("x"), ConfigError)


# --------------------------------------------------------------------- malformed files

GOOD = """
[languages.de]
name = "German"
script = "Latn"
iso639_3 = "deu"
tatoeba = "deu"
sources = ["wikiann", "tatoeba"]

[groups]
g = ["de"]
"""


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "langs.toml"
    p.write_text(text, encoding="utf-8")
    return p


def test_minimal_file_loads(tmp_path):
    r = LanguageRegistry.load(_write(tmp_path, GOOD))
    assert list(r.languages) == ["de"] and r.groups == {"g": ("de",)}
    assert r.get("de").leipzig is None


@pytest.mark.parametrize(
    "old,new,key",
    [
        ('script = "Latn"', 'script = "Latn"\nfamily = "Germanic"', "languages.de.family"),
        ('script = "Latn"', "script = 5", "languages.de.script"),
        ('sources = ["wikiann", "tatoeba"]', 'sources = "wikiann"', "languages.de.sources"),
        ('sources = ["wikiann", "tatoeba"]', 'sources = ["wikiann", "web"]', "languages.de.sources"),
        ('name = "German"\n', "", "languages.de.name"),
        ('tatoeba = "deu"\n', "", "languages.de.tatoeba"),
        ('g = ["de"]', 'g = ["de", "fr"]', "groups.g"),
        ('g = ["de"]', 'g = "de"', "groups.g"),
        ('g = ["de"]', 'de = ["de"]', "groups.de"),
        ("[groups]", "[extra]\nx = 1\n[groups]", "extra"),
    ],
)
def test_malformed_file(tmp_path, old, new, key):
    assert old in GOOD
    p = _write(tmp_path, GOOD.replace(old, new, 1))
    with pytest.raises(ConfigError) as ei:
        LanguageRegistry.load(p)
    msg = str(ei.value)
    assert str(p) in msg and key in msg


def test_invalid_toml_and_missing_file(tmp_path):
    p = _write(tmp_path, "[languages.de\n")
    with pytest.raises(ConfigError, match=re.escape(str(p))):
        LanguageRegistry.load(p)
    with pytest.raises(ConfigError, match="not found"):
        LanguageRegistry.load(tmp_path / "nope.toml")


# --------------------------------------------------------------------- real data


def _wikiann_langs(data_dir: Path) -> set[str]:
    out = set()
    for f in (data_dir / "wikiann").glob("*.tsv"):
        m = re.fullmatch(r"(train|dev|test)-(.+)\.tsv", f.name)
        assert m, f.name
        out.add(m.group(2))
    return out


def test_every_wikiann_file_is_registered(reg, data_dir):
    langs = _wikiann_langs(data_dir)
    assert len(langs) == 47
    for c in sorted(langs):
        assert c in reg.languages, c
        assert "wikiann" in reg.get(c).sources, c


def test_every_leipzig_file_is_registered(reg, data_dir):
    stems = {f.stem for f in (data_dir / "unlabeled" / "leipzig").glob("*.txt")} - {"LICENSE"}
    assert len(stems) == 75
    by_stem = {lang.leipzig for lang in reg.languages.values() if lang.leipzig}
    for s in sorted(stems):
        assert s in reg.languages, s
        assert "leipzig" in reg.get(s).sources, s
    assert by_stem == stems


def test_registry_sources_match_files(reg, data_dir):
    tatoeba_codes = set()
    for f in (data_dir / "unlabeled" / "tatoeba").iterdir():
        m = re.fullmatch(r"tatoeba\.([a-z]+)-eng\.([a-z]+)", f.name)
        assert m and m.group(1) == m.group(2), f.name
        tatoeba_codes.add(m.group(1))
    for lang in reg.languages.values():
        files = unlabeled_files(data_dir, lang)
        names = [p.parent.name for p in files]
        assert names == [s for s in ("leipzig", "tatoeba") if s in lang.sources], lang.code
        if lang.tatoeba is None:
            assert lang.iso639_3 not in tatoeba_codes, lang.code
        else:
            assert lang.tatoeba in tatoeba_codes, lang.code


def test_unlabeled_files_for_norwegian(reg, data_dir):
    files = unlabeled_files(data_dir, reg.get("no"))
    assert [p.name for p in files] == ["nb.txt", "tatoeba.nob-eng.nob"]
    assert [p.name for p in unlabeled_files(data_dir, reg.get("en"))] == ["en.txt"]


def test_xtremedistil41_against_local_wikiann(reg, data_dir):
    sel, missing = reg.resolve("xtremedistil41", available=_wikiann_langs(data_dir), source="wikiann")
    assert len(sel) == 29
    assert set(missing) == NO_LOCAL_LABELED and len(missing) == 12
    assert sel == [c for c in reg.groups["xtremedistil41"] if c not in NO_LOCAL_LABELED]
