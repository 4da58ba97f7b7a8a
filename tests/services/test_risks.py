"""The risk register's service: scoring matrix, validation, history, audit, area handling."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime

import pytest
from sqlalchemy import Engine, select

from urbansec.errors import NotFoundError, PermissionDeniedError, UsageError
from urbansec.services import audit, identity
from urbansec.services import risks as service
from urbansec.services.access import ANONYMOUS, Principal
from urbansec.store.collaboration import RiskHistory
from urbansec.store.engine import write_transaction
from urbansec.store.tables import Area

# the documented matrix, written out by hand (rows: likelihood 1..5, columns: impact 1..5)
EXPECTED_LEVELS = [
    ["low", "low", "low", "low", "medium"],
    ["low", "low", "medium", "medium", "high"],
    ["low", "medium", "medium", "high", "high"],
    ["low", "medium", "high", "high", "critical"],
    ["medium", "high", "high", "critical", "critical"],
]

SQUARE = {"type": "Polygon", "coordinates": [[[-87.65, 41.85], [-87.6, 41.85], [-87.6, 41.9],
                                              [-87.65, 41.9], [-87.65, 41.85]]]}


def test_score_and_level_matrix() -> None:
    for likelihood in range(1, 6):
        for impact in range(1, 6):
            score, level = service.score_and_level(likelihood, impact)
            assert score == likelihood * impact
            assert level == EXPECTED_LEVELS[likelihood - 1][impact - 1], (likelihood, impact)


@pytest.mark.parametrize(("score", "level"), [(1, "low"), (4, "low"), (5, "medium"),
                                              (9, "medium"), (10, "high"), (16, "high"),
                                              (20, "critical"), (25, "critical")])
def test_level_boundaries(score: int, level: str) -> None:
    assert service.level_for(score) == level


@pytest.mark.parametrize(("likelihood", "impact"), [(0, 3), (6, 1), (3, -1), (True, 2),
                                                    (2.5, 2), ("3", 3)])
def test_score_rejects_out_of_scale(likelihood: object, impact: object) -> None:
    with pytest.raises(UsageError):
        service.score_and_level(likelihood, impact)  # type: ignore[arg-type]


def test_levels_scores_cover_each_level_once() -> None:
    scores = [service._levels_scores([name]) for name in service.LEVELS]
    assert scores[0] == [1, 2, 3, 4]
    assert scores[1] == [5, 6, 8, 9]
    assert scores[2] == [10, 12, 15, 16]
    assert scores[3] == [20, 25]


@pytest.fixture
def setup(db: Engine) -> dict[str, Principal]:
    city = identity.create_organisation(db, "city", "City of Example", "city")
    police = identity.create_organisation(db, "police", "Police District 18", "police")
    analyst = identity.create_user(db, city, "ana@city.example", "Ana Lyst", "s3cret-pass-1",
                                   "analyst")
    partner = identity.create_user(db, police, "pat@police.example", "Pat Ner",
                                   "s3cret-pass-2", "partner")
    return {
        "analyst": Principal("user", analyst, city, "analyst", "Ana Lyst"),
        "partner": Principal("user", partner, police, "partner", "Pat Ner"),
        "viewer": Principal("user", None, city, "viewer", "view"),
    }


def _add_area(engine: Engine, kind: str, code: str, geometry: dict) -> None:
    from shapely.geometry import shape

    bounds = shape(geometry).bounds
    with write_transaction(engine) as connection:
        connection.execute(Area.__table__.insert().values(
            kind=kind, code=code, name=code, geometry=json.dumps(geometry), min_lon=bounds[0],
            min_lat=bounds[1], max_lon=bounds[2], max_lat=bounds[3], attributes={}))


def test_create_update_history_and_audit(db: Engine, setup: dict[str, Principal]) -> None:
    analyst = setup["analyst"]
    risk = service.create_risk(db, analyst, {
        "title": "  Ransomware on permit system ", "threat_type": "cyber_attack_city_services",
        "likelihood": 2, "impact": 5, "evidence": [{"type": "url",
                                                     "ref": "https://cert.example/adv/1"}]})
    assert risk["title"] == "Ransomware on permit system"
    assert (risk["score"], risk["level"]) == (10, "high")
    assert risk["owner_organisation_id"] == analyst.organisation_id
    assert risk["sharing"] == "organisation" and risk["status"] == "open"
    assert risk["evidence"] == [{"type": "url", "ref": "https://cert.example/adv/1",
                                 "note": ""}]

    updated = service.update_risk(db, analyst, risk["id"], {"likelihood": 4, "title":
                                                             "Ransomware on permits"})
    assert (updated["score"], updated["level"]) == (20, "critical")
    # an update that changes nothing writes nothing
    service.update_risk(db, analyst, risk["id"], {"likelihood": 4})

    history = service.risk_history(db, analyst, risk["id"])
    assert [h["event"] for h in history] == ["created", "updated"]
    assert history[1]["user_id"] == analyst.id and history[1]["actor"] == analyst.actor
    assert history[1]["fields"] == {
        "title": {"before": "Ransomware on permit system", "after": "Ransomware on permits"},
        "likelihood": {"before": 2, "after": 4}, "score": {"before": 10, "after": 20},
        "level": {"before": "high", "after": "critical"}}

    actions = [e["action"] for e in audit.entries(db, limit=10)]
    assert actions[:2] == ["risk.update", "risk.create"]
    assert audit.verify(db)["ok"]


def test_area_code_checked_against_imported_areas(db: Engine, setup: dict[str, Principal]
                                                  ) -> None:
    analyst = setup["analyst"]
    base = {"title": "Dealing near station", "threat_type": "drugs", "likelihood": 3,
            "impact": 3}
    # no district imported yet: any code is accepted
    service.create_risk(db, analyst, {**base, "area": {"kind": "district", "code": "099"}})
    _add_area(db, "district", "018", SQUARE)
    with pytest.raises(UsageError, match="no district area with code '099'"):
        service.create_risk(db, analyst, {**base, "area": {"kind": "district", "code": "099"}})
    ok = service.create_risk(db, analyst, {**base, "area": {"kind": "district", "code": "018"}})
    assert ok["area"] == {"kind": "district", "code": "018"}


BAD_POLYGONS = [
    ({"type": "Polygon", "coordinates": [[[0, 0], [1, 1], [1, 0], [0, 1], [0, 0]]]},
     "not a valid polygon"),  # a bow-tie: self-intersecting
    ({"type": "Polygon", "coordinates": [[[500000, 4600000], [500100, 4600000],
                                          [500100, 4600100], [500000, 4600000]]]},
     "WGS84"),  # projected metres, not degrees
    ({"type": "Polygon", "coordinates": [[[0, 0], [1, 1]]]}, "not a valid GeoJSON"),
    ({"type": "Polygon", "coordinates": [[[0, 0], [1, 1], [2, 2], [0, 0]]]},
     "not a valid polygon|no area"),
    ({"type": "Point", "coordinates": [0, 0]}, "Polygon or MultiPolygon"),
]


def test_polygon_validation(db: Engine, setup: dict[str, Principal]) -> None:
    # loops, not parametrize: each setup signs up people (argon2 is slow on purpose)
    for geometry, message in BAD_POLYGONS:
        with pytest.raises(UsageError, match=message):
            service.create_risk(db, setup["analyst"], {
                "title": "x", "threat_type": "other", "likelihood": 1, "impact": 1,
                "area": geometry})
    assert service.list_risks(db, setup["analyst"])["total"] == 0


def test_summary_generalises_polygon_to_outward_bbox(db: Engine, setup: dict[str, Principal]
                                                     ) -> None:
    polygon = {"type": "Polygon", "coordinates": [[[-87.65432, 41.85001], [-87.60049, 41.85001],
                                                   [-87.60049, 41.89999], [-87.65432, 41.85001]]]}
    risk = service.create_risk(db, setup["analyst"], {
        "title": "Crowd crush risk at festival", "threat_type": "crowd_safety",
        "likelihood": 2, "impact": 4, "sharing": "public", "area": polygon,
        "description": "secret details"})
    summary = service.get_risk(db, ANONYMOUS, risk["id"])
    assert summary == {"view": "summary", "id": risk["id"],
                       "title": "Crowd crush risk at festival", "threat_type": "crowd_safety",
                       "level": "medium", "status": "open",
                       "area": {"bbox": [-87.655, 41.85, -87.6, 41.9]}}


def test_area_filter_matches_codes_and_overlapping_polygons(db: Engine,
                                                            setup: dict[str, Principal]) -> None:
    analyst = setup["analyst"]
    _add_area(db, "district", "018", SQUARE)
    base = {"threat_type": "property", "likelihood": 2, "impact": 2}
    inside = service.create_risk(db, analyst, {**base, "title": "in", "area": {
        "type": "Polygon", "coordinates": [[[-87.62, 41.86], [-87.61, 41.86], [-87.61, 41.87],
                                            [-87.62, 41.86]]]}})
    outside = service.create_risk(db, analyst, {**base, "title": "out", "area": {
        "type": "Polygon", "coordinates": [[[-87.0, 41.0], [-86.9, 41.0], [-86.9, 41.1],
                                            [-87.0, 41.0]]]}})
    coded = service.create_risk(db, analyst, {**base, "title": "coded",
                                              "area": {"kind": "district", "code": "018"}})
    service.create_risk(db, analyst, {**base, "title": "city-wide"})
    found = service.list_risks(db, analyst, area="district:018")
    assert {r["id"] for r in found["items"]} == {inside["id"], coded["id"]}
    assert outside["id"] not in {r["id"] for r in found["items"]}
    with pytest.raises(UsageError, match="KIND:CODE"):
        service.list_risks(db, analyst, area="district")


def test_overdue_filter(db: Engine, setup: dict[str, Principal]) -> None:
    analyst = setup["analyst"]
    base = {"threat_type": "violence", "likelihood": 3, "impact": 4}
    late = service.create_risk(db, analyst, {**base, "title": "late",
                                             "review_date": "2024-01-31"})
    service.create_risk(db, analyst, {**base, "title": "closed", "status": "closed",
                                      "review_date": "2024-01-31"})
    service.create_risk(db, analyst, {**base, "title": "later", "review_date": "2024-03-01"})
    service.create_risk(db, analyst, {**base, "title": "no date"})
    found = service.list_risks(db, analyst, overdue=True, today=date(2024, 2, 1))
    assert [r["id"] for r in found["items"]] == [late["id"]]


def test_actions_and_comments_write_history(db: Engine, setup: dict[str, Principal]) -> None:
    analyst, partner = setup["analyst"], setup["partner"]
    risk = service.create_risk(db, analyst, {"title": "Phishing wave", "threat_type":
                                             "phishing_against_residents", "likelihood": 4,
                                             "impact": 3, "sharing": "partners"})
    action = service.add_action(db, analyst, risk["id"], {
        "title": "Warn residents", "owner_organisation_id": partner.organisation_id,
        "owner_user_id": partner.id, "due_date": "2030-01-01"})
    assert action["status"] == "planned" and action["due_date"] == "2030-01-01"
    # the action's own organisation may move it on, although it does not own the risk
    moved = service.update_action(db, partner, risk["id"], action["id"],
                                  {"status": "in_progress"})
    assert moved["status"] == "in_progress"
    with pytest.raises(PermissionDeniedError):
        service.update_risk(db, partner, risk["id"], {"status": "closed"})
    with pytest.raises(UsageError, match="owner organisation"):
        service.add_action(db, analyst, risk["id"], {"title": "x", "owner_user_id": partner.id})
    with pytest.raises(NotFoundError):
        service.update_action(db, analyst, risk["id"], 999, {"status": "done"})
    comment = service.add_comment(db, partner, risk["id"], "We saw 40 reports this week")
    assert comment["author"] == "Pat Ner"

    history = service.risk_history(db, analyst, risk["id"])
    assert [h["event"] for h in history] == ["created", "action_added", "action_updated",
                                            "comment_added"]
    assert history[2]["action_id"] == action["id"]
    assert history[2]["fields"] == {"status": {"before": "planned", "after": "in_progress"}}
    assert history[3]["comment_id"] == comment["id"]
    with db.connect() as connection:
        users = [r.user_id for r in connection.execute(select(RiskHistory.__table__))]
    assert users == [analyst.id, analyst.id, partner.id, partner.id]
    actions = [e["action"] for e in audit.entries(db, limit=3)]
    assert actions == ["risk.comment.create", "risk.action.update", "risk.action.create"]


BAD_FIELDS = [
    ({"threat_type": "aliens"}, "threat_type must be one of"),
    ({"title": "   "}, "title must not be empty"),
    ({"title": "a\x00b"}, "NUL"),
    ({"sharing": "world"}, "sharing must be one of"),
    ({"review_date": "31/12/2025"}, "review_date must be a date"),
    ({"evidence": [{"type": "url", "ref": "javascript:alert(1)"}]}, "http"),
    ({"evidence": [{"type": "report", "ref": "r1", "extra": 1}]}, "unknown fields"),
    ({"colour": "red"}, "unknown fields"),
    ({"owner_organisation_id": 12345}, "no organisation"),
]


def test_create_validation(db: Engine, setup: dict[str, Principal]) -> None:
    base = {"title": "t", "threat_type": "other", "likelihood": 1, "impact": 1}
    for data, message in BAD_FIELDS:
        with pytest.raises(UsageError, match=message):
            service.create_risk(db, setup["analyst"], {**base, **data})
    with pytest.raises(UsageError, match="title is required"):
        service.create_risk(db, setup["analyst"], {"threat_type": "other", "likelihood": 1,
                                                   "impact": 1})
    # anonymous and viewers cannot write; a hidden risk is not found, not forbidden
    from urbansec.errors import AuthenticationError

    with pytest.raises(AuthenticationError):
        service.create_risk(db, ANONYMOUS, base)
    with pytest.raises(PermissionDeniedError):
        service.create_risk(db, setup["viewer"], base)
    hidden = service.create_risk(db, setup["analyst"], base)
    with pytest.raises(NotFoundError):
        service.get_risk(db, setup["partner"], hidden["id"])


def test_timestamps_are_utc(db: Engine, setup: dict[str, Principal]) -> None:
    before = datetime.now(UTC)
    risk = service.create_risk(db, setup["analyst"], {"title": "t", "threat_type": "other",
                                                      "likelihood": 1, "impact": 1})
    assert datetime.fromisoformat(risk["created_at"]) >= before.replace(microsecond=0)
