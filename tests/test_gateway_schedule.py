"""The gateway's scheduling arithmetic (vllm_launcher.gateway.schedule): pure, so examples and properties."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from vllm_launcher.base.units import GIB
from vllm_launcher.gateway.routes import build_routes, upstream_route
from vllm_launcher.gateway.schedule import Capacity, Loaded, Need, place_on_gpus, plan_start


def gpu(gib: float, index: int = 0, ram_gib: float = 2) -> Need:
    return Need({index: int(gib * GIB)}, int(ram_gib * GIB))


def test_it_fits_without_touching_anything():
    loaded = [Loaded("a", gpu(30), last_used=1)]
    assert plan_start("b", gpu(40), loaded, Capacity({0: 80 * GIB}, 64 * GIB)).fits
    assert plan_start("b", gpu(40), loaded, Capacity({0: 80 * GIB}, 64 * GIB)).stop == ()


def test_the_least_recently_used_goes_first_and_only_as_many_as_needed():
    loaded = [Loaded("old", gpu(30), last_used=1), Loaded("older", gpu(30), last_used=0),
              Loaded("new", gpu(10), last_used=5)]
    decision = plan_start("next", gpu(30), loaded, Capacity({0: 80 * GIB}, 64 * GIB))
    assert decision.fits and decision.stop == ("older",)


def test_busy_pinned_and_foreign_servers_stay_and_the_refusal_names_them():
    loaded = [Loaded("coder-32b", gpu(40), last_used=0, in_flight=2),
              Loaded("pinned", gpu(20), last_used=0, pinned=True),
              Loaded("theirs", gpu(13.9), last_used=0, ours=False)]
    decision = plan_start("big", gpu(15.2), loaded, Capacity({0: 80 * GIB}, 64 * GIB))
    assert not decision.fits
    assert decision.message == ("big needs 15.2 GiB on GPU 0, 6.1 GiB free; busy: coder-32b; pinned: pinned; "
                                "not started by the gateway: theirs")


def test_a_server_that_can_sleep_sleeps_when_the_host_takes_its_weights():
    awake = gpu(60, ram_gib=2)
    sleeper = Loaded("s", awake, last_used=0, sleep_need=awake.asleep(15 * GIB))
    decision = plan_start("t", gpu(60), [sleeper], Capacity({0: 80 * GIB}, 64 * GIB))
    assert decision.fits and decision.sleep == ("s",) and decision.stop == ()
    no_room_on_host = plan_start("t", gpu(60), [sleeper], Capacity({0: 80 * GIB}, 10 * GIB))
    assert no_room_on_host.fits and no_room_on_host.stop == ("s",) and no_room_on_host.sleep == ()


def test_a_sleeping_server_counts_its_host_ram():
    awake = gpu(60, ram_gib=2)
    asleep = Loaded("s", awake.asleep(15 * GIB), last_used=0, asleep=True)
    decision = plan_start("cpu-model", Need({}, 50 * GIB), [asleep], Capacity({0: 80 * GIB}, 60 * GIB))
    assert decision.fits and decision.stop == ("s",)  # 17 GiB held on the host: it must go


def test_servers_on_other_gpus_are_not_stopped_for_gpu_room():
    loaded = [Loaded("on1", gpu(70, index=1, ram_gib=0), last_used=0),
              Loaded("on0", gpu(70, index=0, ram_gib=0), last_used=1)]
    decision = plan_start("new", gpu(30, index=0, ram_gib=0), loaded, Capacity({0: 80 * GIB, 1: 80 * GIB}, 0))
    # Host RAM is not short, GPU 0 is: stopping on1 (least recently used) would not help, but the plan stops
    # LRU first only while something is short, so it must end with on0 stopped and a fitting plan.
    assert decision.fits and "on0" in decision.stop


def test_gpus_are_placed_on_the_freest_or_where_the_preset_says():
    loaded = [Loaded("a", gpu(70, index=0), last_used=0)]
    capacity = Capacity({0: 80 * GIB, 1: 80 * GIB, 2: 80 * GIB}, 64 * GIB)
    assert place_on_gpus(1, capacity, loaded, None) == [1]
    assert place_on_gpus(2, capacity, loaded, None) == [1, 2]
    assert place_on_gpus(1, capacity, loaded, [0]) == [0]


def test_upstream_specs_and_route_conflicts():
    import pytest

    from vllm_launcher.base.errors import ConfigError

    route = upstream_route("qwen=http://127.0.0.1:8000/")
    assert route.upstream == "http://127.0.0.1:8000" and route.names == ("qwen",)
    for bad in ("qwen", "qwen=ftp://x", "=http://x:1", "a b=http://x:1", "q=http://x:1/v1"):
        with pytest.raises(ConfigError):
            upstream_route(bad)
    with pytest.raises(ConfigError, match="route to both"):
        build_routes([upstream_route("m=http://a:1"), upstream_route("m=http://b:2")])


servers = st.lists(
    st.builds(lambda name, g, ram, used, busy, pinned, ours: Loaded(
        name, Need({0: g * GIB}, ram * GIB), float(used), busy, pinned, ours),
        st.sampled_from("abcdefgh"), st.integers(0, 40), st.integers(0, 16), st.integers(0, 100),
        st.integers(0, 2), st.booleans(), st.booleans()),
    max_size=6, unique_by=lambda s: s.name)


@settings(max_examples=300, derandomize=True, deadline=None)
@given(servers, st.integers(1, 80), st.integers(0, 32), st.integers(40, 160), st.integers(8, 64))
def test_a_plan_fits_touches_only_movable_servers_and_stops_lru_first(loaded, need_gpu, need_ram, cap_gpu,
                                                                      cap_ram):
    need = Need({0: need_gpu * GIB}, need_ram * GIB)
    capacity = Capacity({0: cap_gpu * GIB}, cap_ram * GIB)
    decision = plan_start("target", need, loaded, capacity)
    by_name = {s.name: s for s in loaded}
    touched = [by_name[n] for n in (*decision.sleep, *decision.stop)]
    assert all(s.ours and not s.pinned and s.in_flight == 0 for s in touched)
    if decision.fits:
        left = [s for s in loaded if s.name not in decision.stop]
        assert sum(s.need.gpu.get(0, 0) for s in left) + need.gpu[0] <= capacity.gpu[0]
        assert sum(s.need.ram for s in left) + need.ram <= capacity.ram
        stopped = [by_name[n].last_used for n in decision.stop]
        assert stopped == sorted(stopped)  # least recently used first
    else:
        movable = [s for s in loaded if s.ours and not s.pinned and s.in_flight == 0]
        fixed = [s for s in loaded if s not in movable]
        # Refused only when even stopping every movable server would not make room.
        assert (sum(s.need.gpu.get(0, 0) for s in fixed) + need.gpu[0] > capacity.gpu[0]
                or sum(s.need.ram for s in fixed) + need.ram > capacity.ram)
        assert decision.message.startswith("target needs ")
