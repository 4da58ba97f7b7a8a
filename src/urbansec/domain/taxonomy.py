"""The canonical crime taxonomy of urbansec, and the mappings from each source's own categories.

Canonical codes are levels 1 and 2 of the UNODC *International Classification of Crime for
Statistical Purposes* (ICCS, version 1.0, 2015): eleven **sections** with two-digit codes
(``"05"`` Acts against property only) and their **divisions** with four-digit codes whose first
two digits are the section (``"0501"`` Burglary, ``"0502"`` Theft). ICCS is behaviour-based and
jurisdiction-neutral, which is what lets Chicago's IUCR codes, the UK's open-data crime types and
Berlin's atlas groups be compared on one axis. Levels 3 and 4 are deliberately not used: none of
the sources urbansec imports is detailed enough to fill them consistently.

**urbansec extensions.** ICCS classifies crimes only, but urban-security work also receives
things that are not crimes: the UK publishes anti-social behaviour alongside crime, citizens
report feeling unsafe or a dark underpass, and police data carries non-criminal records (lost
passports, licence revocations). These get a small set of extension codes with the prefix ``"X"``
(:data:`EXTENSION_PREFIX`): level 1, no parent, no divisions, never confusable with an ICCS code.

- ``X01`` Anti-social behaviour
- ``X02`` Feeling unsafe / perceived insecurity
- ``X03`` Poor lighting / environmental disorder
- ``X04`` Non-criminal / other police matter

Keep this list short: anything that is a criminal offence somewhere belongs in an ICCS division.

**Data files** (shipped as package data under ``urbansec/domain/mappings/``; lines starting with
``#`` are comments and carry the documentation of every judgement call):

- ``iccs.csv`` ``code,name,level,parent``: the canonical list, loaded once into
  :data:`CATEGORIES`.
- ``chicago.csv`` ``primary_type,iucr,iccs``: Chicago ``Primary Type``, optionally refined by
  the IUCR code (an empty ``iucr`` is the primary type's default; a row with one overrides it).
- ``uk-police.csv`` ``crime_type,iccs``: data.police.uk ``Crime type``.
- ``berlin-atlas.csv`` ``group,iccs``: the Berlin Kriminalitätsatlas offence groups.

A mapped code may be a section (e.g. the UK's mixed "Violence and sexual offences" -> ``"02"``)
when the source does not distinguish divisions; filters should therefore use
:func:`descendants` / :func:`resolve_filter`, which include a section together with its
divisions.

:class:`CategoryMapper` is called once per imported row, so it precomputes dictionaries,
normalises each distinct input once and caches the answer per raw ``(category, code)`` pair.
"""

from __future__ import annotations

import csv
import difflib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from types import MappingProxyType
from typing import Final

from urbansec.errors import UsageError

__all__ = [
    "CATEGORIES",
    "EXTENSION_PREFIX",
    "SCHEMES",
    "Category",
    "CategoryMapper",
    "TaxonomyDataError",
    "category",
    "children",
    "descendants",
    "resolve_filter",
    "section_of",
]

EXTENSION_PREFIX: Final = "X"
"""Prefix of urbansec's own (non-ICCS) category codes."""

SCHEMES: tuple[str, ...] = ("chicago", "uk-police", "berlin-atlas")
"""Source category schemes with a shipped mapping, as accepted by :class:`CategoryMapper`."""

_PACKAGE: Final = "urbansec.domain"
_MAPPINGS_DIR: Final = "mappings"
_MAPPER_CACHE_LIMIT: Final = 100_000


class TaxonomyDataError(ValueError):
    """A shipped taxonomy or mapping file is malformed: a packaging bug, not a user error."""


@dataclass(frozen=True, slots=True)
class Category:
    """One canonical crime category: an ICCS section or division, or an urbansec extension."""

    code: str
    name: str
    level: int
    parent: str | None

    @property
    def is_extension(self) -> bool:
        """True for urbansec's own ``X..`` codes, which are not part of ICCS."""
        return self.code.startswith(EXTENSION_PREFIX)


# --------------------------------------------------------------------------------------------
# Reading the shipped files


def _key(text: str) -> str:
    """Normalise a name for lookup: case-insensitive, whitespace collapsed, '_' as a space."""
    return " ".join(text.replace("_", " ").split()).casefold()


def _read_resource(filename: str) -> str:
    return (resources.files(_PACKAGE) / _MAPPINGS_DIR / filename).read_text(encoding="utf-8")


def _csv_rows(text: str, header: Iterable[str], source: str) -> list[tuple[int, dict[str, str]]]:
    """Rows of a commented CSV as ``(line number, {column: stripped value})``.

    Blank lines and lines whose first non-blank character is ``#`` are skipped. The first
    remaining line must be exactly ``header``.
    """
    expected = list(header)
    numbered = [
        (number, line)
        for number, line in enumerate(text.splitlines(), start=1)
        if line.strip() and not line.lstrip().startswith("#")
    ]
    if not numbered:
        raise TaxonomyDataError(f"{source}: no header line")
    parsed = csv.reader([line for _, line in numbered])
    first = [cell.strip() for cell in next(parsed)]
    if first != expected:
        raise TaxonomyDataError(f"{source}: header is {first}, expected {expected}")
    rows: list[tuple[int, dict[str, str]]] = []
    for (number, _), cells in zip(numbered[1:], parsed, strict=True):
        if len(cells) != len(expected):
            raise TaxonomyDataError(
                f"{source}:{number}: {len(cells)} fields, expected {len(expected)}"
            )
        values = {column: cell.strip() for column, cell in zip(expected, cells, strict=True)}
        rows.append((number, values))
    return rows


def _parse_categories(text: str, source: str = "iccs.csv") -> dict[str, Category]:
    """Parse and check the canonical list: unique codes, parents listed first, levels nested."""
    result: dict[str, Category] = {}
    for number, row in _csv_rows(text, ("code", "name", "level", "parent"), source):
        where = f"{source}:{number}"
        code, name, parent = row["code"], row["name"], row["parent"] or None
        if not code or not name:
            raise TaxonomyDataError(f"{where}: empty code or name")
        if code != code.upper() or code in result:
            raise TaxonomyDataError(f"{where}: code {code!r} is duplicated or not upper case")
        try:
            level = int(row["level"])
        except ValueError:
            raise TaxonomyDataError(f"{where}: level {row['level']!r} is not a number") from None
        if parent is None:
            if level != 1:
                raise TaxonomyDataError(f"{where}: {code} has no parent but level {level}")
        else:
            parent_category = result.get(parent)
            if parent_category is None:
                raise TaxonomyDataError(f"{where}: parent {parent!r} of {code} not listed before")
            if level != parent_category.level + 1 or not code.startswith(parent):
                raise TaxonomyDataError(f"{where}: {code} does not nest under {parent}")
        result[code] = Category(code=code, name=name, level=level, parent=parent)
    if not result:
        raise TaxonomyDataError(f"{source}: no categories")
    return result


CATEGORIES: Mapping[str, Category] = MappingProxyType(_parse_categories(_read_resource("iccs.csv")))
"""Every canonical category by code, in classification order (sections before their divisions)."""


def _build_children() -> dict[str, tuple[str, ...]]:
    kids: dict[str, list[str]] = {code: [] for code in CATEGORIES}
    for cat in CATEGORIES.values():
        if cat.parent is not None:
            kids[cat.parent].append(cat.code)
    return {code: tuple(codes) for code, codes in kids.items()}


_CHILDREN: Final = _build_children()


def _build_name_index() -> dict[str, str]:
    # The first (shallowest) category wins a shared name, e.g. section 11 and division 1109
    # "Other criminal acts not elsewhere classified": the section includes the division anyway.
    index: dict[str, str] = {}
    for cat in CATEGORIES.values():
        index.setdefault(_key(cat.name), cat.code)
    return index


_BY_NAME: Final = _build_name_index()

# Everyday words people filter by, beyond codes and canonical names. Each maps to one or more
# canonical codes; the result of a filter always includes their descendants.
_ALIAS_TABLE: Final[dict[str, tuple[str, ...]]] = {
    "homicide": ("0101", "0103"),
    "murder": ("0101",),
    "violence": ("01", "02", "03", "04"),
    "violent crime": ("01", "02", "03", "04"),
    "assault": ("0201",),
    "battery": ("0201",),
    "threat": ("0201",),
    "threats": ("0201",),
    "kidnapping": ("0202",),
    "abduction": ("0202",),
    "trafficking": ("0204",),
    "human trafficking": ("0204",),
    "extortion": ("0205",),
    "intimidation": ("0205",),
    "harassment": ("0208",),
    "stalking": ("0208",),
    "sexual offences": ("03",),
    "sex offences": ("03",),
    "sexual": ("03",),
    "rape": ("0301",),
    "sexual assault": ("0301",),
    "robbery": ("0401",),
    "mugging": ("0401",),
    "street robbery": ("0401",),
    "property crime": ("05",),
    "burglary": ("0501",),
    "break-in": ("0501",),
    "theft": ("0502",),
    "larceny": ("0502",),
    "shoplifting": ("0502",),
    "pickpocketing": ("0502",),
    "vehicle theft": ("0502",),
    "car theft": ("0502",),
    "bicycle theft": ("0502",),
    "bike theft": ("0502",),
    "criminal damage": ("0504",),
    "damage": ("0504",),
    "vandalism": ("0504",),
    "graffiti": ("0504",),
    "arson": ("0504",),
    "drugs": ("06",),
    "drug offences": ("06",),
    "narcotics": ("06",),
    "alcohol": ("0602",),
    "liquor": ("0602",),
    "fraud": ("0701",),
    "scam": ("0701",),
    "forgery": ("0702",),
    "counterfeiting": ("0702",),
    "corruption": ("0703",),
    "bribery": ("0703",),
    "public order": ("0801",),
    "disorder": ("0801",),
    "prostitution": ("0802",),
    "weapons": ("0901",),
    "weapon": ("0901",),
    "firearms": ("0901",),
    "guns": ("0901",),
    "cybercrime": ("0903",),
    "hacking": ("0903",),
    "traffic": ("0907",),
    "asb": ("X01",),
    "antisocial behaviour": ("X01",),
    "anti-social behavior": ("X01",),
    "antisocial behavior": ("X01",),
    "feeling unsafe": ("X02",),
    "unsafe": ("X02",),
    "insecurity": ("X02",),
    "perceived insecurity": ("X02",),
    "poor lighting": ("X03",),
    "lighting": ("X03",),
    "environmental disorder": ("X03",),
    "non-criminal": ("X04",),
    "non criminal": ("X04",),
}


def _build_aliases() -> dict[str, tuple[str, ...]]:
    aliases: dict[str, tuple[str, ...]] = {}
    for alias, codes in _ALIAS_TABLE.items():
        unknown = [code for code in codes if code not in CATEGORIES]
        if unknown:
            raise TaxonomyDataError(f"alias {alias!r} points to unknown codes {unknown}")
        aliases[_key(alias)] = codes
    return aliases


_ALIASES: Final = _build_aliases()


# --------------------------------------------------------------------------------------------
# Looking categories up


def _known_codes_hint() -> str:
    sections = [c.code for c in CATEGORIES.values() if c.level == 1 and not c.is_extension]
    extensions = [c.code for c in CATEGORIES.values() if c.is_extension]
    return (
        f"known codes are the ICCS sections {sections[0]}-{sections[-1]}, their four-digit "
        f"divisions (e.g. 0501 Burglary) and the urbansec extensions {', '.join(extensions)}"
    )


def category(code: str) -> Category:
    """The category with this code (surrounding spaces and case are ignored).

    Raises :class:`~urbansec.errors.UsageError` naming the known codes if there is none.
    """
    found = CATEGORIES.get(code) if isinstance(code, str) else None
    if found is not None:
        return found
    normalised = str(code).strip().upper()
    found = CATEGORIES.get(normalised)
    if found is not None:
        return found
    close = difflib.get_close_matches(normalised, list(CATEGORIES), n=5, cutoff=0.6)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    raise UsageError(
        f"Unknown crime category code {code!r}: {_known_codes_hint()}.{hint}",
        details={"code": code, "suggestions": close, "known_codes": list(CATEGORIES)},
    )


def children(code: str) -> list[str]:
    """The codes directly under ``code`` (a section's divisions; empty for a division)."""
    return list(_CHILDREN[category(code).code])


@cache
def _descendants(code: str) -> tuple[str, ...]:
    found = [code]
    for child in _CHILDREN[code]:
        found.extend(_descendants(child))
    return tuple(found)


def descendants(code: str) -> list[str]:
    """``code`` itself followed by every code below it, e.g. ``"05"`` -> 05, 0501, 0502, ..."""
    return list(_descendants(category(code).code))


def section_of(code: str) -> str:
    """The level-1 code a category belongs to (itself for a section or an extension)."""
    found = category(code)
    while found.parent is not None:
        found = CATEGORIES[found.parent]
    return found.code


def _expand(roots: Iterable[str]) -> list[str]:
    seen: dict[str, None] = {}
    for root in roots:
        for code in _descendants(root):
            seen.setdefault(code, None)
    return list(seen)


def _filter_suggestions(key: str) -> list[str]:
    vocabulary: dict[str, str] = {}
    for cat in CATEGORIES.values():
        vocabulary.setdefault(cat.code.casefold(), cat.code)
        vocabulary.setdefault(_key(cat.name), cat.name.lower())
    for alias in _ALIASES:
        vocabulary.setdefault(alias, alias)
    picks = difflib.get_close_matches(key, list(vocabulary), n=5, cutoff=0.6)
    picks += [word for word in vocabulary if len(key) >= 3 and key in word and word not in picks]
    return [vocabulary[word] for word in picks][:8]


def resolve_filter(text: str) -> list[str]:
    """Canonical codes (with all their descendants) matching a user's category filter.

    Accepts a code (``"0501"``, ``"05"``, ``"x01"``), a canonical name in any case
    (``"burglary"``, ``"Acts against property only"``) or a well-known alias (``"robbery"``,
    ``"theft"``, ``"assault"``, ``"drugs"``, ``"asb"``...). Raises
    :class:`~urbansec.errors.UsageError` with suggestions when nothing matches.
    """
    key = _key(text) if isinstance(text, str) else ""
    if not key:
        raise UsageError(
            "Empty crime category filter: give a code such as '0501', a name such as 'burglary' "
            "or an alias such as 'drugs'.",
            details={"filter": text, "suggestions": []},
        )
    code = key.upper()
    if code in CATEGORIES:
        return _expand((code,))
    if key in _BY_NAME:
        return _expand((_BY_NAME[key],))
    if key in _ALIASES:
        return _expand(_ALIASES[key])
    suggestions = _filter_suggestions(key)
    hint = f" Did you mean: {', '.join(suggestions)}?" if suggestions else ""
    raise UsageError(
        f"Unknown crime category {text!r}.{hint} Use an ICCS code (e.g. '05', '0501'), a "
        "category name, or an alias such as 'theft', 'assault', 'robbery' or 'drugs'.",
        details={"filter": text, "suggestions": suggestions},
    )


# --------------------------------------------------------------------------------------------
# Source schemes


@dataclass(frozen=True, slots=True)
class _SchemeTable:
    defaults: Mapping[str, str]  # normalised source category -> code
    overrides: Mapping[tuple[str, str], str]  # (normalised category, normalised code) -> code
    source_categories: tuple[str, ...]  # as spelled in the mapping file
    uses_codes: bool


_SCHEME_COLUMNS: Final[dict[str, tuple[str, ...]]] = {
    "chicago": ("primary_type", "iucr", "iccs"),
    "uk-police": ("crime_type", "iccs"),
    "berlin-atlas": ("group", "iccs"),
}


def _normalise_source_code(code: object) -> str:
    """Chicago IUCR: zero-padded to four characters, upper case ("110" -> "0110")."""
    text = str(code).strip().upper() if code is not None else ""
    return text.zfill(4) if text else ""


def _parse_scheme(text: str, columns: tuple[str, ...], source: str) -> _SchemeTable:
    category_column, iccs_column = columns[0], columns[-1]
    code_column = columns[1] if len(columns) == 3 else None
    defaults: dict[str, str] = {}
    overrides: dict[tuple[str, str], str] = {}
    spelled: dict[str, str] = {}
    for number, row in _csv_rows(text, columns, source):
        where = f"{source}:{number}"
        name, target = row[category_column], row[iccs_column]
        if not name:
            raise TaxonomyDataError(f"{where}: empty {category_column}")
        if target not in CATEGORIES:
            raise TaxonomyDataError(f"{where}: {target!r} is not a canonical category code")
        key = _key(name)
        spelled.setdefault(key, name)
        source_code = row[code_column] if code_column else ""
        if source_code:
            pair = (key, _normalise_source_code(source_code))
            if pair in overrides:
                raise TaxonomyDataError(f"{where}: {name} {source_code} mapped twice")
            overrides[pair] = target
        else:
            if key in defaults:
                raise TaxonomyDataError(f"{where}: {name} mapped twice")
            defaults[key] = target
    return _SchemeTable(
        defaults=MappingProxyType(defaults),
        overrides=MappingProxyType(overrides),
        source_categories=tuple(spelled.values()),
        uses_codes=code_column is not None,
    )


@cache
def _load_scheme(scheme: str) -> _SchemeTable:
    filename = f"{scheme}.csv"
    return _parse_scheme(_read_resource(filename), _SCHEME_COLUMNS[scheme], filename)


_MISSING: Final = object()


class CategoryMapper:
    """Maps a source's own categories to canonical codes for one scheme ("chicago", "uk-police",
    "berlin-atlas").

    ``map()`` returns ``None`` for a category the scheme does not know: callers keep such rows
    and report them rather than guessing. Matching ignores case and surrounding/repeated
    whitespace. For ``"chicago"`` the optional ``source_code`` is the IUCR code, which refines
    the primary type where it splits across divisions (e.g. HOMICIDE 0110 -> 0101 but 0142 ->
    0103); an IUCR code without its own row falls back to the primary type's default. Other
    schemes ignore ``source_code``. ``source_categories`` lists every source category the mapping
    file names, as spelled there.
    """

    __slots__ = ("_cache", "_defaults", "_overrides", "_uses_codes", "scheme", "source_categories")

    def __init__(self, scheme: str) -> None:
        key = _key(scheme) if isinstance(scheme, str) else ""
        if key not in SCHEMES:
            raise UsageError(
                f"Unknown category scheme {scheme!r}; known schemes: {', '.join(SCHEMES)}.",
                details={"scheme": scheme, "known_schemes": list(SCHEMES)},
            )
        table = _load_scheme(key)
        self.scheme: str = key
        self.source_categories: tuple[str, ...] = table.source_categories
        self._defaults = table.defaults
        self._overrides = table.overrides
        self._uses_codes = table.uses_codes
        self._cache: dict[tuple[object, object], str | None] = {}

    def __repr__(self) -> str:
        return f"CategoryMapper({self.scheme!r})"

    def map(self, source_category: str, source_code: str | None = None) -> str | None:
        """The canonical code for a source category (and, for Chicago, IUCR code), or None."""
        cache_key = (source_category, source_code if self._uses_codes else None)
        hit = self._cache.get(cache_key, _MISSING)
        if hit is not _MISSING:
            return hit  # type: ignore[return-value]
        result = self._lookup(source_category, source_code)
        if len(self._cache) >= _MAPPER_CACHE_LIMIT:
            self._cache.clear()
        self._cache[cache_key] = result
        return result

    def _lookup(self, source_category: object, source_code: object) -> str | None:
        if not isinstance(source_category, str):
            return None
        key = _key(source_category)
        if not key:
            return None
        if self._uses_codes and source_code is not None:
            code = _normalise_source_code(source_code)
            if code:
                found = self._overrides.get((key, code))
                if found is not None:
                    return found
        return self._defaults.get(key)
