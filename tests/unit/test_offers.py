"""Who a paid booking is offered to: nearest online runners whose crates fit, widening rounds."""

from __future__ import annotations

from domain import offers
from domain.booking import crate_requirement

PICKUP = (3.1390, 101.6869)  # Kuala Lumpur
CAT = crate_requirement("cat", 4.0)        # small, 4.8 kg capacity, ventilated
DOG = crate_requirement("dog", 20.0)       # large, 24 kg capacity
REPTILE = crate_requirement("reptile", 1)  # needs temperature control
SMALL = {"size": "small", "pet_types": ["cat", "dog"], "max_weight_kg": 8, "ventilated": True,
         "temperature_controlled": False}
LARGE = {"size": "large", "pet_types": [], "max_weight_kg": 40, "ventilated": True,
         "temperature_controlled": False}


def runner(rid: str, km_north: float, crates=(SMALL,), online=True) -> dict:
    return {"runner_id": rid, "online": online, "latitude": PICKUP[0] + km_north / 111.195,
            "longitude": PICKUP[1], "updated_at": 0.0, "crates": list(crates)}


def test_crate_fit_rules() -> None:
    assert offers.crate_fits(SMALL, "cat", CAT)
    assert not offers.crate_fits(SMALL, "dog", DOG)           # too small
    assert offers.crate_fits(LARGE, "dog", DOG)               # any pet type
    assert not offers.crate_fits({**LARGE, "max_weight_kg": 20}, "dog", DOG)  # too weak
    assert not offers.crate_fits({**SMALL, "ventilated": False}, "cat", CAT)
    assert not offers.crate_fits(SMALL, "rabbit", crate_requirement("rabbit", 2))  # not for it
    assert not offers.crate_fits(SMALL, "reptile", REPTILE)
    assert offers.crate_fits({**SMALL, "pet_types": ["Reptile"], "temperature_controlled": True},
                             "reptile", REPTILE)


def test_the_five_nearest_fitting_online_runners_within_the_radius() -> None:
    runners = [runner(f"r{i}", i) for i in range(1, 9)]            # 1..8 km away
    runners += [runner("far", 12), runner("off", 0.5, online=False),
                runner("nocrate", 0.2, crates=()), runner("small-only", 0.3)]
    got = offers.nearest_fitting(runners, PICKUP, "dog", DOG, 10.0, set())
    assert got == []  # nobody has a large crate
    runners[6]["crates"] = [LARGE]
    assert [c.runner_id for c in offers.nearest_fitting(runners, PICKUP, "dog", DOG, 10, set())
            ] == ["r7"]
    got = offers.nearest_fitting(runners, PICKUP, "cat", CAT, 10.0, set())
    assert [c.runner_id for c in got] == ["small-only", "r1", "r2", "r3", "r4"]
    assert abs(got[1].distance_km - 1.0) < 0.01
    # Already offered runners are left out; the next ones come.
    got = offers.nearest_fitting(runners, PICKUP, "cat", CAT, 10.0,
                                 {"small-only", "r1", "r2", "r3", "r4"})
    assert [c.runner_id for c in got] == ["r5", "r6", "r7", "r8"]
    got = offers.nearest_fitting(runners, PICKUP, "cat", CAT, 20.0,
                                 {"small-only", "r1", "r2", "r3", "r4", "r5", "r6", "r7", "r8"})
    assert [c.runner_id for c in got] == ["far"]


def test_radius_widens_each_round_up_to_the_cap() -> None:
    assert [offers.radius_for_round(n) for n in (1, 2, 3, 4)] == [10.0, 20.0, 40.0, 40.0]
    assert not offers.last_round(2) and offers.last_round(3)


def test_offer_ids_are_one_per_booking_and_runner() -> None:
    assert offers.offer_event_id("b", "r") == offers.offer_event_id("b", "r")
    assert offers.offer_event_id("b", "r") != offers.offer_event_id("b", "r2")
    assert offers.distance_text(0.84) == "0.8" and offers.distance_text(12.4) == "12"


def test_availability_follows_runner_events() -> None:
    e = offers.apply_runner_event(None, "r", "runner.online",
                                  {"latitude": 3.0, "longitude": 101.0, "crates": [SMALL]}, 10.0)
    assert e == {"runner_id": "r", "online": True, "latitude": 3.0, "longitude": 101.0,
                 "updated_at": 10.0, "crates": [SMALL]}
    # A fix a few metres away changes nothing worth writing; one 200 m away moves the runner.
    assert offers.apply_runner_event(e, "r", "runner.location_update",
                                     {"latitude": 3.0002, "longitude": 101.0}, 11.0) is None
    moved = offers.apply_runner_event(e, "r", "runner.location_update",
                                      {"latitude": 3.002, "longitude": 101.0}, 12.0)
    assert moved is not None and moved["latitude"] == 3.002
    off = offers.apply_runner_event(moved, "r", "runner.offline", {}, 13.0)
    assert off is not None and off["online"] is False
    # A fix from a runner marked offline (the online event was missed) brings them back.
    back = offers.apply_runner_event(off, "r", "runner.location_update",
                                     {"latitude": 3.002, "longitude": 101.0}, 14.0)
    assert back is not None and back["online"] is True
    crates = offers.apply_runner_event(back, "r", "runner.crates_updated",
                                       {"crates": [SMALL, LARGE]}, 15.0)
    assert crates is not None and crates["crates"] == [SMALL, LARGE]
    assert offers.apply_runner_event(back, "r", "runner.assigned", {}, 16.0) is None
