"""Object-name extraction and offline resolution (OpenNGC via pyongc)."""

import pytest

from pipeline.sky.extract import extract
from pipeline.sky.gazetteer import default
from pipeline.sky.resolve import objects_for


@pytest.fixture(scope="module")
def g():
    return default()


def keys(text, g):
    return [(m.name, m.key, m.kind) for m in extract(text, g)]


def test_messier_but_not_tanks(g):
    assert keys("An M1 Abrams tank drove past.", g) == []
    assert keys("M1 is the Crab; so is Messier 1, near M 31", g) == [
        ("M1", "M1", "catalogue"), ("Messier 1", "M1", "catalogue"), ("M 31", "M31", "catalogue")]
    assert keys("M200 does not exist", g) == []


def test_ngc_ranges_and_ic(g):
    got = keys("The Rosette (NGC 2237-9) and IC 434.", g)
    assert [k for _, k, _ in got] == ["NGC2237", "NGC2238", "NGC2239", "IC434"]


def test_common_names_across_line_breaks_and_possessives(g):
    got = keys("Inside the Horsehead\nNebula and the Orion Nebula's core; the Pleiades shine.", g)
    assert [(n.replace("\n", " "), kind) for n, _, kind in got] == [
        ("Horsehead Nebula", "common"), ("Orion Nebula", "common"), ("Pleiades", "common")]


def test_solar_system_bodies_are_not_sidereal(g):
    objs = objects_for("Jupiter and the Moon", "Comet Lovejoy passed M42.", g)
    bodies = [o for o in objs if o.resolver == "solar-system"]
    assert {o.name for o in bodies} >= {"Jupiter", "Moon", "Comet Lovejoy"}
    assert all(o.ra_deg is None for o in bodies)
    m42 = next(o for o in objs if o.canonical_id == "NGC1976")
    assert m42.is_primary and abs(m42.ra_deg - 83.82) < 0.01 and abs(m42.dec_deg + 5.39) < 0.01


def test_resolution_of_catalogue_aliases(g):
    assert g.resolve_key("M45").canonical_id == "Mel022"  # the Pleiades
    assert g.resolve_key("C63").canonical_id == "NGC7293"  # Caldwell 63 = Helix
    assert g.resolve_common("horsehead nebula").canonical_id == "B033"
    assert g.resolve_key("ABELL2218") is None  # not in OpenNGC: left for the online resolver


def test_primary_target_prefers_the_title(g):
    objs = objects_for("The Helix Nebula", "Not far from M31 on the sky? No.", g)
    primary = [o for o in objs if o.is_primary]
    assert len(primary) == 1 and primary[0].field == "title" and primary[0].canonical_id == "NGC7293"
