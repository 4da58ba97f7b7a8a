"""What residents can report: the service catalogue of citizen reports (and of Open311).

Each category maps to the canonical taxonomy where one exists, so reports and police records
can be counted side by side, and includes what police data misses (harassment, feeling
unsafe, poor lighting). ``attributes`` follow Open311 GeoReport v2 service definitions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ReportCategory:
    code: str  # Open311 service_code
    name: str  # service_name
    description: str
    group: str
    taxonomy: str | None  # canonical category code (urbansec.domain.taxonomy), if any
    keywords: tuple[str, ...] = ()
    attributes: tuple[dict[str, Any], ...] = field(default_factory=tuple)


_WHEN = {"variable": True, "code": "time_of_day", "datatype": "singlevaluelist",
         "required": False, "datatype_description": "When does it usually happen?", "order": 1,
         "description": "When does it usually happen?",
         "values": [{"key": "day", "name": "During the day"},
                    {"key": "evening", "name": "In the evening"},
                    {"key": "night", "name": "At night"}]}
_REPEAT = {"variable": True, "code": "repeated", "datatype": "singlevaluelist",
           "required": False, "datatype_description": "Has this happened before here?",
           "order": 2, "description": "Has this happened before here?",
           "values": [{"key": "first", "name": "First time"},
                      {"key": "repeated", "name": "It keeps happening"}]}

CATEGORIES: tuple[ReportCategory, ...] = (
    ReportCategory("harassment", "Harassment", "Verbal, sexual or other harassment in a public "
                   "place, on transport or online.", "personal safety", "0208",
                   ("harassment", "catcalling", "stalking"), (_WHEN, _REPEAT)),
    ReportCategory("feeling-unsafe", "Feeling unsafe", "A place where you do not feel safe, "
                   "even if nothing happened.", "personal safety", "X02",
                   ("unsafe", "fear", "insecure"), (_WHEN,)),
    ReportCategory("poor-lighting", "Poor lighting", "A street, path, park or stop that is "
                   "too dark or a broken street light.", "environment", "X03",
                   ("light", "dark", "lamp"), (_WHEN,)),
    ReportCategory("vandalism", "Vandalism or graffiti", "Damage to property, graffiti, "
                   "broken glass.", "property", "0504", ("vandalism", "graffiti", "damage"),
                   (_REPEAT,)),
    ReportCategory("drug-dealing", "Drug dealing", "Drug dealing or drug use in a public "
                   "place.", "public order", "0601", ("drugs", "dealing"), (_WHEN, _REPEAT)),
    ReportCategory("anti-social-behaviour", "Anti-social behaviour", "Noise, rowdy or "
                   "intimidating behaviour, street drinking.", "public order", "X01",
                   ("noise", "rowdy", "drinking"), (_WHEN, _REPEAT)),
    ReportCategory("online-fraud", "Suspected online fraud or phishing", "A fraudulent "
                   "website, message or call, including ones pretending to be city services.",
                   "cyber", "0701", ("phishing", "scam", "fraud"), ()),
    ReportCategory("other", "Something else", "Any other safety concern.", "other", None,
                   (), ()),
)

BY_CODE = {c.code: c for c in CATEGORIES}


def category(code: str) -> ReportCategory | None:
    return BY_CODE.get(code)
