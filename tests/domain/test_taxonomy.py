"""The canonical crime taxonomy and the shipped source mappings."""

from __future__ import annotations

import csv
import gzip
import re
import time
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

import pytest

from urbansec.domain import taxonomy
from urbansec.domain.taxonomy import CATEGORIES, CategoryMapper, TaxonomyDataError
from urbansec.errors import UsageError

SHARED_DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
CHICAGO_DIR = SHARED_DATA / "chicago"
CHICAGO_YEARS = [CHICAGO_DIR / f"crimes_{year}.csv.gz" for year in (2015, 2016, 2017)]
IUCR_CODES = CHICAGO_DIR / "iucr-codes.csv"
BERLIN_ATLAS = SHARED_DATA / "berlin-crime-atlas" / "berlin_crimes_by_district.csv"

BERLIN_GROUPS = [
    "Robbery", "Street_robbery", "Injury", "Agg_assault", "Threat", "Theft", "Car", "From_car",
    "Bike", "Burglary", "Fire", "Arson", "Damage", "Graffiti", "Drugs", "Local",
]  # fmt: skip
UK_CRIME_TYPES = [
    "Anti-social behaviour", "Bicycle theft", "Burglary", "Criminal damage and arson", "Drugs",
    "Other crime", "Other theft", "Possession of weapons", "Public order", "Robbery",
    "Shoplifting", "Theft from the person", "Vehicle crime", "Violence and sexual offences",
    "Violent crime", "Public disorder and weapons",
]  # fmt: skip


def _shipped_rows(filename: str) -> list[dict[str, str]]:
    """A shipped mapping file read independently of the module under test."""
    text = (resources.files("urbansec.domain") / "mappings" / filename).read_text("utf-8")
    lines = [line for line in text.splitlines() if line.strip() and not line.startswith("#")]
    return list(csv.DictReader(lines))


# ------------------------------------------------------------------------------------------
# The canonical list


def test_every_parent_exists_and_levels_nest() -> None:
    assert CATEGORIES, "iccs.csv loaded no categories"
    for code, cat in CATEGORIES.items():
        assert cat.code == code
        if cat.parent is None:
            assert cat.level == 1, f"{code} has no parent but is level {cat.level}"
        else:
            parent = CATEGORIES.get(cat.parent)
            assert parent is not None, f"{code}: parent {cat.parent} is not a category"
            assert cat.level == parent.level + 1, f"{code}: level {cat.level} under {parent}"
            assert code.startswith(cat.parent), f"{code} does not extend its parent's code"


def test_iccs_codes_have_the_iccs_shape_and_extensions_are_marked() -> None:
    sections = [c.code for c in CATEGORIES.values() if c.level == 1 and not c.is_extension]
    assert sections == [f"{n:02d}" for n in range(1, 12)]
    for cat in CATEGORIES.values():
        if cat.is_extension:
            assert re.fullmatch(r"X\d\d", cat.code) and cat.level == 1 and cat.parent is None
        elif cat.level == 1:
            assert re.fullmatch(r"\d\d", cat.code)
        else:
            assert cat.level == 2 and re.fullmatch(r"\d{4}", cat.code)
    extensions = {c.code for c in CATEGORIES.values() if c.is_extension}
    assert extensions == {"X01", "X02", "X03", "X04"}


@pytest.mark.parametrize(
    ("code", "name"),
    [
        ("01", "Acts leading to death or intending to cause death"),
        ("0101", "Intentional homicide"),
        ("0103", "Non-intentional homicide"),
        ("02", "Acts leading to harm or intending to cause harm to the person"),
        ("0201", "Assaults and threats"),
        ("03", "Injurious acts of a sexual nature"),
        ("0301", "Sexual violence"),
        ("04", "Acts against property involving violence or threat against a person"),
        ("0401", "Robbery"),
        ("05", "Acts against property only"),
        ("0501", "Burglary"),
        ("0502", "Theft"),
        ("0504", "Property damage"),
        ("07", "Acts involving fraud, deception or corruption"),
        ("08", "Acts against public order, authority and provisions of the State"),
        ("09", "Acts against public safety and state security"),
        ("10", "Acts against the natural environment"),
        ("11", "Other criminal acts not elsewhere classified"),
        ("X01", "Anti-social behaviour"),
    ],
)
def test_iccs_names(code: str, name: str) -> None:
    assert taxonomy.category(code).name == name


_HEADER = "code,name,level,parent\n"


def test_loader_accepts_a_consistent_list() -> None:
    good = _HEADER + "05,Acts against property only,1,\n0501,Burglary,2,05\n"
    assert list(taxonomy._parse_categories(good)) == ["05", "0501"]


@pytest.mark.parametrize(
    "text",
    [
        pytest.param(_HEADER + "0501,Burglary,2,05\n", id="orphan"),
        pytest.param(_HEADER + "05,Property,1,\n0501,Burglary,3,05\n", id="wrong-level"),
        pytest.param(_HEADER + "05,Property,1,\n05,Property again,1,\n", id="duplicate"),
        pytest.param(_HEADER + "05,Property,2,\n", id="root-not-level-1"),
        pytest.param(_HEADER + "05,Property,1,\n0601,Drugs,2,05\n", id="not-nested"),
        pytest.param("code,name\n05,Property\n", id="bad-header"),
    ],
)
def test_loader_rejects_inconsistent_lists(text: str) -> None:
    with pytest.raises(TaxonomyDataError):
        taxonomy._parse_categories(text)


# ------------------------------------------------------------------------------------------
# category / descendants / resolve_filter


def test_category_normalises_and_rejects_unknown_codes_with_a_hint() -> None:
    assert taxonomy.category(" x01 ").code == "X01"
    assert taxonomy.category("0501").name == "Burglary"
    with pytest.raises(UsageError) as caught:
        taxonomy.category("99")
    assert not isinstance(caught.value, KeyError)
    assert "01" in caught.value.message and "X01" in caught.value.message
    assert "0501" in caught.value.details["known_codes"]


def test_descendants_and_children() -> None:
    property_only = taxonomy.descendants("05")
    assert property_only[0] == "05"
    assert {"0501", "0502", "0503", "0504", "0509"} == set(property_only[1:])
    assert taxonomy.children("05") == property_only[1:]
    assert taxonomy.descendants("0501") == ["0501"]
    assert taxonomy.children("0501") == []
    assert taxonomy.descendants("X01") == ["X01"]
    assert taxonomy.section_of("0502") == "05"
    assert taxonomy.section_of("X04") == "X04"
    with pytest.raises(UsageError):
        taxonomy.descendants("0599")


def test_resolve_filter_burglary_is_the_burglary_division() -> None:
    assert taxonomy.resolve_filter("burglary") == ["0501"]
    assert taxonomy.resolve_filter("  BURGLARY ") == ["0501"]
    assert taxonomy.resolve_filter("0501") == ["0501"]


def test_resolve_filter_codes_names_and_aliases() -> None:
    assert taxonomy.resolve_filter("05") == taxonomy.descendants("05")
    assert taxonomy.resolve_filter("acts against PROPERTY only") == taxonomy.descendants("05")
    assert taxonomy.resolve_filter("robbery") == ["0401"]
    assert taxonomy.resolve_filter("theft") == ["0502"]
    assert taxonomy.resolve_filter("assault") == ["0201"]
    assert taxonomy.resolve_filter("drugs") == taxonomy.descendants("06")
    assert taxonomy.resolve_filter("asb") == ["X01"]
    violence = taxonomy.resolve_filter("violence")
    assert {"01", "0101", "02", "0201", "03", "0301", "04", "0401"} <= set(violence)
    assert len(violence) == len(set(violence))


def test_every_code_and_name_resolves_to_itself_or_an_ancestor() -> None:
    for code, cat in CATEGORIES.items():
        assert taxonomy.resolve_filter(code) == taxonomy.descendants(code)
        assert code in taxonomy.resolve_filter(cat.name)


def test_resolve_filter_unknown_raises_with_suggestions() -> None:
    with pytest.raises(UsageError) as caught:
        taxonomy.resolve_filter("burglery")
    assert "burglary" in caught.value.details["suggestions"]
    assert "burglary" in caught.value.message
    with pytest.raises(UsageError):
        taxonomy.resolve_filter("   ")


# ------------------------------------------------------------------------------------------
# Mappers


def test_schemes_and_unknown_scheme() -> None:
    assert taxonomy.SCHEMES == ("chicago", "uk-police", "berlin-atlas")
    for scheme in taxonomy.SCHEMES:
        assert CategoryMapper(scheme).scheme == scheme
    with pytest.raises(UsageError) as caught:
        CategoryMapper("nypd")
    assert "chicago" in caught.value.message


@pytest.mark.parametrize(
    ("filename", "column"),
    [("chicago.csv", "iccs"), ("uk-police.csv", "iccs"), ("berlin-atlas.csv", "iccs")],
)
def test_every_shipped_mapping_target_is_a_category(filename: str, column: str) -> None:
    rows = _shipped_rows(filename)
    assert rows
    unknown = {row[column] for row in rows} - set(CATEGORIES)
    assert not unknown, f"{filename} maps to codes missing from iccs.csv: {sorted(unknown)}"


def test_all_berlin_groups_map() -> None:
    mapper = CategoryMapper("berlin-atlas")
    for group in BERLIN_GROUPS:
        assert mapper.map(group) in CATEGORIES, group
    assert mapper.map("Burglary") == "0501"
    assert mapper.map("Street_robbery") == mapper.map("street robbery") == "0401"
    assert mapper.map("Graffiti") == "0504"
    assert mapper.map("Local") == "05"


def test_berlin_real_columns_all_map() -> None:
    if not BERLIN_ATLAS.exists():
        pytest.skip(f"real Berlin atlas data not found at {BERLIN_ATLAS}")
    with BERLIN_ATLAS.open(encoding="utf-8") as handle:
        header = next(csv.reader(handle))
    groups = header[4:]
    assert groups == BERLIN_GROUPS
    mapper = CategoryMapper("berlin-atlas")
    assert [g for g in groups if mapper.map(g) is None] == []


def test_all_uk_crime_types_map() -> None:
    mapper = CategoryMapper("uk-police")
    for crime_type in UK_CRIME_TYPES:
        assert mapper.map(crime_type) in CATEGORIES, crime_type
    assert mapper.map("Anti-social behaviour") == "X01"
    assert mapper.map("  SHOPLIFTING ") == "0502"
    assert mapper.map("Burglary") == "0501"
    assert mapper.map("Violence and sexual offences") == "02"
    assert mapper.map("Possession of weapons") == "0901"


def test_unknown_categories_are_none() -> None:
    chicago = CategoryMapper("chicago")
    assert chicago.map("NOT A PRIMARY TYPE") is None
    assert chicago.map("NOT A PRIMARY TYPE", "0110") is None
    assert chicago.map("") is None
    assert chicago.map(None) is None  # type: ignore[arg-type]
    assert CategoryMapper("uk-police").map("Cattle rustling") is None
    assert CategoryMapper("berlin-atlas").map("Robbery2") is None
    # An IUCR code without its own row falls back to the primary type's default.
    assert chicago.map("THEFT", "9999") == "0502"


def test_chicago_homicide_split() -> None:
    mapper = CategoryMapper("chicago")
    assert mapper.map("HOMICIDE", "0110") == "0101"  # first degree murder
    assert mapper.map("HOMICIDE", "130") == "0101"  # second degree murder, unpadded
    assert mapper.map("HOMICIDE", "0141") == "0103"  # involuntary manslaughter
    assert mapper.map(" homicide ", " 142 ") == "0103"  # reckless homicide
    assert mapper.map("HOMICIDE") == "0101"


def test_chicago_offense_involving_children_split() -> None:
    mapper = CategoryMapper("chicago")
    for iucr in ("1751", "1752", "1753", "1754"):  # sexual abuse/assault of a child
        assert mapper.map("OFFENSE INVOLVING CHILDREN", iucr) == "0301", iucr
    assert mapper.map("OFFENSE INVOLVING CHILDREN", "1582") == "0302"  # child pornography
    assert mapper.map("OFFENSE INVOLVING CHILDREN", "1750") == "0201"  # child abuse
    assert mapper.map("OFFENSE INVOLVING CHILDREN", "1755") == "0206"  # child abandonment
    assert mapper.map("OFFENSE INVOLVING CHILDREN", "1710") == "0206"  # endangering a child
    for iucr in ("1750", "1755", "1710"):
        assert taxonomy.section_of(mapper.map("OFFENSE INVOLVING CHILDREN", iucr) or "") == "02"


def test_chicago_other_splits_and_normalisation() -> None:
    mapper = CategoryMapper("chicago")
    assert mapper.map("MOTOR VEHICLE THEFT", "0910") == "0502"
    assert mapper.map("robbery", "31a") == "0401"
    assert mapper.map("INTERFERENCE WITH PUBLIC OFFICER", "3910") == "0703"  # bribery
    assert mapper.map("INTERFERENCE WITH PUBLIC OFFICER", "3710") == "0806"
    assert mapper.map("NON - CRIMINAL", "5114") == "X04"
    assert mapper.map("NON-CRIMINAL (SUBJECT SPECIFIED)", "5073") == "X04"
    assert mapper.map("CRIMINAL SEXUAL ASSAULT", "0281") == "0301"


def test_mapper_is_fast_enough_for_an_import() -> None:
    mapper = CategoryMapper("chicago")
    rows = [("THEFT", "0820"), ("BATTERY", "0486"), ("HOMICIDE", "0110"), ("NOPE", "1")] * 75_000
    started = time.perf_counter()
    results = [mapper.map(primary, iucr) for primary, iucr in rows]
    elapsed = time.perf_counter() - started
    assert results[:4] == ["0502", "0201", "0101", None]
    assert elapsed < 1.0, f"300k map() calls took {elapsed:.2f}s"


# ------------------------------------------------------------------------------------------
# Real Chicago data


def _iter_chicago_rows() -> Iterator[tuple[str, str, str]]:
    for path in CHICAGO_YEARS:
        with gzip.open(path, "rt", encoding="utf-8", newline="") as handle:
            for row in csv.DictReader(handle):
                yield row["Primary Type"], row["IUCR"], row["Description"]


@pytest.fixture(scope="module")
def chicago_combinations() -> dict[tuple[str, str], str]:
    """Every (primary type, IUCR) pair in the three real years, with one description."""
    missing = [str(path) for path in CHICAGO_YEARS if not path.exists()]
    if missing:
        pytest.skip(f"real Chicago crime data not found: {', '.join(missing)}")
    combos: dict[tuple[str, str], str] = {}
    for primary, iucr, description in _iter_chicago_rows():
        combos.setdefault((primary, iucr), description)
    return combos


@pytest.mark.slow
def test_every_real_chicago_primary_type_and_iucr_maps(
    chicago_combinations: dict[tuple[str, str], str],
) -> None:
    mapper = CategoryMapper("chicago")
    primary_types = {primary for primary, _ in chicago_combinations}
    assert len(primary_types) >= 30, sorted(primary_types)
    unmapped_types = sorted(p for p in primary_types if mapper.map(p) not in CATEGORIES)
    assert unmapped_types == []
    unmapped_pairs = sorted(
        pair for pair in chicago_combinations if mapper.map(*pair) not in CATEGORIES
    )
    assert unmapped_pairs == []


@pytest.mark.slow
def test_real_chicago_splits_follow_the_descriptions(
    chicago_combinations: dict[tuple[str, str], str],
) -> None:
    mapper = CategoryMapper("chicago")
    checked = 0
    for (primary, iucr), description in chicago_combinations.items():
        code = mapper.map(primary, iucr)
        if primary == "HOMICIDE":
            expected = "0101" if "MURDER" in description else "0103"
            assert code == expected, (primary, iucr, description)
            checked += 1
        elif primary == "OFFENSE INVOLVING CHILDREN" and "SEX" in description:
            assert code == "0301", (primary, iucr, description)
            checked += 1
        elif primary == "OFFENSE INVOLVING CHILDREN" and description == "CHILD ABUSE":
            assert code is not None and taxonomy.section_of(code) == "02"
            checked += 1
        elif primary in ("MOTOR VEHICLE THEFT", "THEFT"):
            assert code == "0502", (primary, iucr, description)
    assert checked >= 6


def test_every_reference_iucr_code_maps() -> None:
    if not IUCR_CODES.exists():
        pytest.skip(f"IUCR code list not found at {IUCR_CODES}")
    mapper = CategoryMapper("chicago")
    with IUCR_CODES.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert rows
    unmapped = []
    for row in rows:
        code = mapper.map(row["PRIMARY DESCRIPTION"], row["IUCR"])
        if code not in CATEGORIES:
            unmapped.append((row["PRIMARY DESCRIPTION"], row["IUCR"]))
        # The reference list writes codes unpadded ("110"); the crime files pad them ("0110").
        padded = row["IUCR"].strip().zfill(4)
        assert mapper.map(row["PRIMARY DESCRIPTION"], padded) == code
    assert unmapped == []
