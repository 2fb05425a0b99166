"""The language registry: codes, names, scripts and which data sources have each language.

The registry lives in ``languages/languages.toml`` (see the comment at its top for the
fields). :class:`LanguageRegistry` loads and validates it, looks languages up, and
resolves user language specs such as ``"xtremedistil41,sw"`` or ``"all"`` against the
languages for which data is actually available.
"""

from __future__ import annotations

import difflib
import re
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any

from xdistill.errors import ConfigError, UnknownLanguageError

__all__ = [
    "SOURCES",
    "Language",
    "LanguageRegistry",
    "default_registry_path",
    "unlabeled_files",
]

#: The data sources a registry entry may list in ``sources``.
SOURCES: tuple[str, ...] = ("wikiann", "leipzig", "tatoeba")

_ALL = "all"
_CODE_RE = re.compile(r"^[a-z]{2,3}(-[a-z0-9]+)*$")
_GROUP_RE = re.compile(r"^[a-z][a-z0-9_\-]*$")
_SCRIPT_RE = re.compile(r"^[A-Z][a-z]{3}$")
_ISO3_RE = re.compile(r"^[a-z]{3}$")

# key -> (required, expected type, description of the type)
_LANG_FIELDS: dict[str, tuple[bool, type, str]] = {
    "name": (True, str, "a string"),
    "script": (True, str, "an ISO 15924 script code such as \"Latn\""),
    "iso639_3": (True, str, "a three-letter ISO 639-3 code"),
    "tatoeba": (False, str, "a string (the code in the Tatoeba file name)"),
    "leipzig": (False, str, "a string (the stem of the Leipzig file name)"),
    "sources": (True, list, f"a list of strings drawn from {list(SOURCES)}"),
}


@dataclass(frozen=True)
class Language:
    """One registry entry.

    Attributes:
        code: ISO 639-1 code (the registry key), e.g. ``"de"``.
        name: English name.
        script: main script, ISO 15924 (``"Latn"``, ``"Cyrl"``, ...).
        iso639_3: ISO 639-3 code.
        tatoeba: the code in the Tatoeba file name (``tatoeba.<c>-eng.<c>``), or
            ``None`` if there is no Tatoeba file for the language.
        sources: the sources that have the language (subset of :data:`SOURCES`).
        leipzig: stem of the Leipzig file (``<stem>.txt``) if ``"leipzig"`` is in
            ``sources`` (usually the code; ``"nb"`` for ``"no"``), else ``None``.
    """

    code: str
    name: str
    script: str
    iso639_3: str
    tatoeba: str | None
    sources: frozenset[str]
    leipzig: str | None = None


def default_registry_path() -> Path:
    """Return the path of the packaged ``languages.toml``.

    Looks first beside the source tree (``<repo>/languages/languages.toml``: a source
    checkout or an editable install), then in the installed package data
    (``xdistill._languages``). Raises :class:`ConfigError` if neither exists.
    """
    beside = Path(__file__).resolve().parents[2] / "languages" / "languages.toml"
    if beside.is_file():
        return beside
    try:
        packaged = Path(str(files("xdistill._languages") / "languages.toml"))
    except (ModuleNotFoundError, TypeError) as exc:
        raise ConfigError(
            f"language registry not found: {beside} does not exist and the package "
            f"xdistill._languages is not installed ({exc})"
        ) from None
    if not packaged.is_file():
        raise ConfigError(f"language registry not found: neither {beside} nor {packaged} exists")
    return packaged


def _type_name(value: Any) -> str:
    return type(value).__name__


def _parse_language(where: str, code: str, table: Any) -> Language:
    key = f"languages.{code}"
    if not _CODE_RE.match(code):
        raise ConfigError(f"{where}: {key}: invalid language code {code!r}; expected lowercase ISO 639-1 such as \"de\"")
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: {key}: expected a table, got {_type_name(table)}")
    for k in table:
        if k not in _LANG_FIELDS:
            raise ConfigError(
                f"{where}: {key}.{k}: unknown key; expected one of {sorted(_LANG_FIELDS)}"
            )
    for k, (required, typ, desc) in _LANG_FIELDS.items():
        if k not in table:
            if required:
                raise ConfigError(f"{where}: {key}.{k}: missing; expected {desc}")
            continue
        if not isinstance(table[k], typ):
            raise ConfigError(f"{where}: {key}.{k}: expected {desc}, got {_type_name(table[k])} {table[k]!r}")
    if not table["name"].strip():
        raise ConfigError(f"{where}: {key}.name: empty; expected the language's name")
    if not _SCRIPT_RE.match(table["script"]):
        raise ConfigError(f"{where}: {key}.script: {table['script']!r}; expected an ISO 15924 code such as \"Latn\"")
    for k in ("iso639_3", "tatoeba"):
        if k in table and not _ISO3_RE.match(table[k]):
            raise ConfigError(f"{where}: {key}.{k}: {table[k]!r}; expected a three-letter lowercase code")
    sources = table["sources"]
    for s in sources:
        if not isinstance(s, str) or s not in SOURCES:
            raise ConfigError(f"{where}: {key}.sources: unknown source {s!r}; expected values from {list(SOURCES)}")
    if len(set(sources)) != len(sources):
        raise ConfigError(f"{where}: {key}.sources: duplicate entries in {sources}")
    if ("tatoeba" in sources) != ("tatoeba" in table):
        raise ConfigError(
            f"{where}: {key}.tatoeba: must be given if and only if \"tatoeba\" is in sources"
        )
    if "leipzig" in table:
        if "leipzig" not in sources:
            raise ConfigError(f"{where}: {key}.leipzig: given but \"leipzig\" is not in sources")
        if not _CODE_RE.match(table["leipzig"]):
            raise ConfigError(f"{where}: {key}.leipzig: {table['leipzig']!r}; expected a language code")
    leipzig = table.get("leipzig", code) if "leipzig" in sources else None
    return Language(
        code=code,
        name=table["name"],
        script=table["script"],
        iso639_3=table["iso639_3"],
        tatoeba=table.get("tatoeba"),
        sources=frozenset(sources),
        leipzig=leipzig,
    )


class LanguageRegistry:
    """All known languages and named groups of them.

    Attributes:
        languages: code -> :class:`Language`, in file order.
        groups: group name -> tuple of language codes.

    Build one with :meth:`load`.
    """

    def __init__(self, languages: dict[str, Language], groups: dict[str, tuple[str, ...]]):
        """Wrap already-validated ``languages`` and ``groups`` (use :meth:`load` to read a file)."""
        self.languages = languages
        self.groups = groups

    def __contains__(self, code: object) -> bool:
        return code in self.languages

    def __len__(self) -> int:
        return len(self.languages)

    def __repr__(self) -> str:
        return f"LanguageRegistry({len(self.languages)} languages, groups={sorted(self.groups)})"

    @classmethod
    def load(cls, path: str | Path | None = None) -> LanguageRegistry:
        """Read and validate a registry TOML file (default: :func:`default_registry_path`).

        Raises :class:`ConfigError`, naming the file and the offending key, if the file is
        missing or is not valid TOML, has an unknown key, a value of the wrong type, an
        unknown source, a group member that is not a registered language, or a group
        named like a language (or ``"all"``).
        """
        p = Path(path) if path is not None else default_registry_path()
        where = str(p)
        try:
            with open(p, "rb") as fh:
                data = tomllib.load(fh)
        except FileNotFoundError:
            raise ConfigError(f"{where}: language registry file not found") from None
        except OSError as exc:
            raise ConfigError(f"{where}: cannot read language registry: {exc}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{where}: invalid TOML: {exc}") from None

        for k in data:
            if k not in ("languages", "groups"):
                raise ConfigError(f"{where}: {k}: unknown key; expected only [languages] and [groups]")
        raw_langs = data.get("languages")
        if not isinstance(raw_langs, dict) or not raw_langs:
            raise ConfigError(f"{where}: languages: expected a non-empty table of [languages.<code>] tables")
        languages = {code: _parse_language(where, code, table) for code, table in raw_langs.items()}

        raw_groups = data.get("groups", {})
        if not isinstance(raw_groups, dict):
            raise ConfigError(f"{where}: groups: expected a table, got {_type_name(raw_groups)}")
        groups: dict[str, tuple[str, ...]] = {}
        for name, members in raw_groups.items():
            key = f"groups.{name}"
            if not _GROUP_RE.match(name) or name == _ALL or name in languages:
                raise ConfigError(
                    f"{where}: {key}: invalid group name; it must be lowercase and not "
                    f"\"{_ALL}\" or a language code"
                )
            if not isinstance(members, list) or not all(isinstance(m, str) for m in members):
                raise ConfigError(f"{where}: {key}: expected a list of language codes, got {members!r}")
            if not members:
                raise ConfigError(f"{where}: {key}: empty group")
            unknown = [m for m in members if m not in languages]
            if unknown:
                raise ConfigError(f"{where}: {key}: not registered languages: {', '.join(unknown)}")
            if len(set(members)) != len(members):
                dups = sorted({m for m in members if members.count(m) > 1})
                raise ConfigError(f"{where}: {key}: duplicate members: {', '.join(dups)}")
            groups[name] = tuple(members)
        return cls(languages, groups)

    def _suggest(self, token: str) -> list[str]:
        """Close matches for ``token`` among codes, group names and language names."""
        token = token.lower()
        by_name = {lang.name.lower(): code for code, lang in self.languages.items()}
        out = [by_name[n] for n in difflib.get_close_matches(token, list(by_name), n=2, cutoff=0.75)]
        # Codes are two or three letters: compare them only with short tokens.
        candidates = (list(self.languages) if len(token) <= 3 else []) + list(self.groups) + [_ALL]
        for c in difflib.get_close_matches(token, candidates, n=3, cutoff=0.5):
            if c not in out:
                out.append(c)
        return out[:4]

    def _unknown_message(self, tokens: list[str]) -> str:
        parts = []
        for t in tokens:
            sugg = self._suggest(t)
            hint = f" (did you mean {', '.join(repr(s) for s in sugg)}?)" if sugg else ""
            parts.append(f"{t!r}{hint}")
        noun = "language code" if len(tokens) == 1 else "language codes"
        return (
            f"unknown {noun} {'; '.join(parts)}; use ISO 639-1 codes (e.g. de, sw), "
            f"a group ({', '.join(sorted(self.groups))}) or \"{_ALL}\""
        )

    def get(self, code: str) -> Language:
        """Return the language with this code.

        Raises :class:`UnknownLanguageError` naming the code, with close suggestions.
        """
        try:
            return self.languages[code]
        except (KeyError, TypeError):
            raise UnknownLanguageError(self._unknown_message([str(code)])) from None

    def with_source(self, source: str) -> list[str]:
        """Codes of the languages whose ``sources`` include ``source`` (file order).

        Raises :class:`ConfigError` if ``source`` is not one of :data:`SOURCES`.
        """
        if source not in SOURCES:
            raise ConfigError(f"unknown source {source!r}; expected one of {list(SOURCES)}")
        return [c for c, lang in self.languages.items() if source in lang.sources]

    def resolve(
        self,
        spec: str,
        available: Iterable[str] | None = None,
        source: str = "local data",
    ) -> tuple[list[str], list[str]]:
        """Expand a language spec into ``(selected, missing)`` codes.

        ``spec`` is a comma-separated list of language codes, group names and/or
        ``"all"`` (case-insensitive, blanks ignored). ``available`` is the set of codes
        that have data in ``source`` (``None``: everything in the registry is available).

        * ``"all"`` adds ``sorted(available)``; it needs ``available``.
        * A group adds its members; members not in ``available`` go to ``missing``
          (for the caller to warn about).
        * An explicit code adds itself.

        Both lists keep first-seen order and have no duplicates; a code that is
        selected is never also reported missing.

        Raises:
            UnknownLanguageError: a listed code or name is neither a registered
                language nor a group (the message names it, with suggestions), or an
                explicitly listed code is not in ``available`` (the message names the
                code(s) and says ``source`` has no labeled data for them).
            ConfigError: ``"all"`` without ``available``, or nothing is selected.
        """
        avail: set[str] | None = None if available is None else set(available)
        tokens = [t.strip().lower() for t in str(spec).split(",")]
        tokens = [t for t in tokens if t]
        if not tokens:
            raise ConfigError(f"empty language spec {spec!r}; give codes, group names or \"{_ALL}\"")

        selected: dict[str, None] = {}
        missing: dict[str, None] = {}
        unknown: list[str] = []
        unavailable: list[str] = []
        for tok in tokens:
            if tok == _ALL:
                if avail is None:
                    raise ConfigError(
                        f"language spec \"{_ALL}\" needs the list of available languages "
                        f"(none was given for {source})"
                    )
                for c in sorted(avail):
                    selected.setdefault(c)
            elif tok in self.groups:
                for c in self.groups[tok]:
                    if avail is None or c in avail:
                        selected.setdefault(c)
                    else:
                        missing.setdefault(c)
            elif tok in self.languages:
                if avail is None or tok in avail:
                    selected.setdefault(tok)
                elif tok not in unavailable:
                    unavailable.append(tok)
            elif tok not in unknown:
                unknown.append(tok)

        if unknown:
            raise UnknownLanguageError(self._unknown_message(unknown))
        if unavailable:
            names = ", ".join(f"{c} ({self.languages[c].name})" for c in unavailable)
            raise UnknownLanguageError(
                f"{source} has no labeled data for {names}; "
                f"available: {', '.join(sorted(avail or ())) or 'none'}"
            )
        missing_list = [c for c in missing if c not in selected]
        if not selected:
            extra = f" (without data: {', '.join(missing_list)})" if missing_list else ""
            raise ConfigError(f"language spec {spec!r} selects no language with data in {source}{extra}")
        return list(selected), missing_list


def unlabeled_files(data_dir: Path, lang: Language) -> list[Path]:
    """Return the existing unlabeled text files for ``lang`` under ``data_dir``.

    Looks for ``unlabeled/leipzig/<stem>.txt`` (stem: ``lang.leipzig``, else the code)
    and ``unlabeled/tatoeba/tatoeba.<c>-eng.<c>`` (c: ``lang.tatoeba``, else
    ``lang.iso639_3``), Leipzig first. Files that do not exist are left out, so the
    result may be empty. Raises nothing.
    """
    root = Path(data_dir) / "unlabeled"
    stem = lang.leipzig or lang.code
    tcode = lang.tatoeba or lang.iso639_3
    candidates = [
        root / "leipzig" / f"{stem}.txt",
        root / "tatoeba" / f"tatoeba.{tcode}-eng.{tcode}",
    ]
    return [p for p in candidates if p.is_file()]
