"""Sites and meters: validation, uniqueness, roles and the integration mapping table."""

import csv
import io

import pytest

from core.models import Role
from tests.factories import add_user, make_site, signup

SITES = "/api/v1/sites"


def test_site_and_meter_lifecycle(client):
    admin = signup(client)
    h = admin["headers"]
    r = client.post(
        SITES,
        json={"site_id": "site-22", "name": "Bologna Plant – Main", "timezone": "Europe/Rome"},
        headers=h,
    )
    assert r.status_code == 201
    assert r.json()["schedule"] == {"workdays": [0, 1, 2, 3, 4], "start": "06:00", "end": "22:00"}
    r = client.post(
        f"{SITES}/site-22/meters",
        json={"meter_id": "main-incomer", "name": "Main incomer MCC", "kind": "main_incomer"},
        headers=h,
    )
    assert r.status_code == 201
    assert r.json()["site_id"] == "site-22"
    client.post(
        f"{SITES}/site-22/meters",
        json={"meter_id": "compressor-bank", "name": "Compressor bank"},
        headers=h,
    )

    site = client.get(f"{SITES}/site-22", headers=h).json()
    assert site["meter_count"] == 2
    meters = client.get(f"{SITES}/site-22/meters", headers=h).json()
    assert [m["meter_id"] for m in meters["data"]] == ["compressor-bank", "main-incomer"]
    assert meters["data"][0]["kind"] == "sub_meter"

    r = client.patch(
        f"{SITES}/site-22",
        json={
            "timezone": "Europe/Berlin",
            "schedule": {"workdays": [0, 1, 2, 3, 4, 5], "start": "05:00", "end": "23:00"},
        },
        headers=h,
    )
    assert r.status_code == 200
    assert r.json()["timezone"] == "Europe/Berlin"
    assert r.json()["name"] == "Bologna Plant – Main"
    assert client.get(f"{SITES}/site-22", headers=h).json()["schedule"]["workdays"] == [
        0,
        1,
        2,
        3,
        4,
        5,
    ]

    r = client.patch(
        f"{SITES}/site-22/meters/compressor-bank", json={"name": "Compressors"}, headers=h
    )
    assert r.status_code == 200
    assert (
        client.get(f"{SITES}/site-22/meters/compressor-bank", headers=h).json()["name"]
        == "Compressors"
    )
    assert client.get(SITES, headers=h).json()["count"] == 1


@pytest.mark.parametrize(
    "body, key",
    [
        ({"site_id": "Site 22", "name": "x", "timezone": "UTC"}, "site_id"),
        ({"site_id": "-site", "name": "x", "timezone": "UTC"}, "site_id"),
        ({"site_id": "site-1", "name": "x", "timezone": "Mars/Olympus"}, "timezone"),
        ({"site_id": "site-1", "name": "x", "timezone": "+02:00"}, "timezone"),
        ({"site_id": "site-1", "name": "x", "timezone": "localtime"}, "timezone"),
        ({"site_id": "site-1", "name": "x", "timezone": "posix/Europe/Rome"}, "timezone"),
        ({"site_id": "site-1", "name": "", "timezone": "UTC"}, "name"),
        ({"site_id": "site-1", "name": "x"}, "timezone"),
        (
            {
                "site_id": "site-1",
                "name": "x",
                "timezone": "UTC",
                "schedule": {"workdays": [7], "start": "06:00", "end": "22:00"},
            },
            "schedule.workdays",
        ),
        (
            {
                "site_id": "site-1",
                "name": "x",
                "timezone": "UTC",
                "schedule": {"workdays": [0], "start": "6am", "end": "22:00"},
            },
            "schedule.start",
        ),
    ],
)
def test_invalid_site_is_400_naming_the_field(client, body, key):
    admin = signup(client)
    r = client.post(SITES, json=body, headers=admin["headers"])
    assert r.status_code == 400, r.text
    assert r.json()["code"] == "validation_error"
    assert key in {e.get("key") for e in r.json()["errors"]}


def test_site_id_is_unique_across_organisations(client):
    a = signup(client, org="A")
    b = signup(client, org="B")
    make_site(client, a["headers"], "site-22", meters=())
    r = client.post(
        SITES, json={"site_id": "site-22", "name": "x", "timezone": "UTC"}, headers=b["headers"]
    )
    assert r.status_code == 409
    assert r.json()["code"] == "site_id_taken"
    assert client.get(SITES, headers=b["headers"]).json()["count"] == 0


def test_meter_id_is_unique_within_a_site_but_not_across_sites(client):
    admin = signup(client)
    make_site(client, admin["headers"], "site-1")
    make_site(client, admin["headers"], "site-2")  # also has main-incomer: allowed
    r = client.post(
        f"{SITES}/site-1/meters",
        json={"meter_id": "main-incomer", "name": "again"},
        headers=admin["headers"],
    )
    assert r.status_code == 409
    assert r.json()["code"] == "meter_id_taken"


def test_invalid_meter_is_400(client):
    admin = signup(client)
    make_site(client, admin["headers"], "site-1", meters=())
    for body in (
        {"meter_id": "Main Incomer", "name": "x"},
        {"meter_id": "m1", "name": "x", "kind": "nuclear"},
    ):
        assert (
            client.post(f"{SITES}/site-1/meters", json=body, headers=admin["headers"]).status_code
            == 400
        )


def test_site_id_cannot_be_changed_by_patch(client):
    admin = signup(client)
    make_site(client, admin["headers"], "site-1", meters=())
    r = client.patch(f"{SITES}/site-1", json={"site_id": "site-2"}, headers=admin["headers"])
    assert r.status_code == 400
    assert client.get(f"{SITES}/site-1", headers=admin["headers"]).status_code == 200


def test_unknown_site_and_meter_are_404(client):
    admin = signup(client)
    make_site(client, admin["headers"], "site-1")
    assert client.get(f"{SITES}/nope", headers=admin["headers"]).json()["code"] == "unknown_site"
    r = client.get(f"{SITES}/site-1/meters/nope", headers=admin["headers"])
    assert r.status_code == 404
    assert r.json()["code"] == "unknown_meter"


@pytest.mark.parametrize("role", [Role.analyst, Role.viewer])
def test_non_admins_read_sites_but_cannot_change_them(client, role):
    admin = signup(client)
    make_site(client, admin["headers"], "site-1")
    other = add_user(client, org_id=admin["org_id"], role=role)
    h = other["headers"]
    assert client.get(SITES, headers=h).json()["count"] == 1
    assert client.get(f"{SITES}/site-1/meters", headers=h).status_code == 200
    assert (
        client.post(
            SITES, json={"site_id": "s2", "name": "x", "timezone": "UTC"}, headers=h
        ).status_code
        == 403
    )
    assert client.patch(f"{SITES}/site-1", json={"name": "y"}, headers=h).status_code == 403
    assert (
        client.post(
            f"{SITES}/site-1/meters", json={"meter_id": "m", "name": "m"}, headers=h
        ).status_code
        == 403
    )
    assert client.get(f"{SITES}/site-1", headers=h).json()["name"] == "Plant site-1"


def test_mapping_csv_lists_every_meter_and_empty_sites(client):
    admin = signup(client)
    make_site(client, admin["headers"], "site-22", meters=("main-incomer", "compressor-bank"))
    make_site(client, admin["headers"], "site-23", meters=())
    client.patch(f"{SITES}/site-23", json={"name": '=HYPERLINK("x")'}, headers=admin["headers"])
    r = client.get(f"{SITES}/mapping.csv", headers=admin["headers"])
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/csv")
    assert "attachment" in r.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert [(x["site_id"], x["meter_id"]) for x in rows] == [
        ("site-22", "compressor-bank"),
        ("site-22", "main-incomer"),
        ("site-23", ""),
    ]
    assert rows[1]["physical_meter_description"] == "Main Incomer"
    assert rows[2]["physical_site_name"].startswith("'=")  # not run as a formula


def test_org_tariff_update_rejects_nan_and_unknown_currency(client):
    admin = signup(client)
    h = admin["headers"]
    r = client.patch("/api/v1/org", json={"tariff_per_kwh": 0.18, "currency": "usd"}, headers=h)
    assert r.status_code == 200
    assert (r.json()["tariff_per_kwh"], r.json()["currency"]) == (0.18, "USD")
    for bad in (
        {"tariff_per_kwh": "NaN"},
        {"tariff_per_kwh": "Infinity"},
        {"tariff_per_kwh": -1},
        {"currency": "EURO"},
    ):
        assert client.patch("/api/v1/org", json=bad, headers=h).status_code == 400, bad
    assert client.get("/api/v1/org", headers=h).json()["tariff_per_kwh"] == 0.18
    viewer = add_user(client, org_id=admin["org_id"], role=Role.viewer)
    assert (
        client.patch(
            "/api/v1/org", json={"tariff_per_kwh": 1}, headers=viewer["headers"]
        ).status_code
        == 403
    )


def test_patch_clears_the_holiday_country_with_null_and_keeps_other_fields(client):
    user = signup(client)
    h = user["headers"]
    r = client.post(
        "/api/v1/sites",
        json={"site_id": "it-plant", "name": "IT", "timezone": "Europe/Rome", "country": "IT"},
        headers=h,
    )
    assert r.json()["country"] == "IT"
    r = client.patch("/api/v1/sites/it-plant", json={"country": None, "name": None}, headers=h)
    assert r.status_code == 200
    assert (r.json()["country"], r.json()["name"]) == (None, "IT")
