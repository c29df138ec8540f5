"""Background work in slices: the loop is left to requests for a real pause between them."""

import pytest

from timeback_jupyter.server.pacing import in_slices


class Work:
    """``units`` of work, each taking ``cost`` seconds of a fake clock."""

    def __init__(self, units: int, cost: float) -> None:
        self.units, self.cost, self.t = units, cost, 0.0
        self.slices: list[int] = [0]
        self.pauses: list[float] = []

    def clock(self) -> float:
        return self.t

    def step(self) -> int:
        self.t += self.cost
        self.units -= 1
        self.slices[-1] += 1
        return self.units

    async def sleep(self, seconds: float) -> None:
        self.pauses.append(seconds)
        self.t += seconds
        self.slices.append(0)


@pytest.mark.asyncio
async def test_work_is_cut_into_slices_within_the_budget_with_pauses_between():
    work = Work(units=10, cost=0.0007)
    pauses = await in_slices(
        work.step, budget=0.002, pause=0.01, clock=work.clock, sleep=work.sleep
    )
    # 0.7 ms a unit: the third unit crosses 2 ms, so three units a slice
    assert work.slices == [3, 3, 3, 1]
    assert pauses == 3 and work.pauses == [0.01] * 3
    assert work.units == 0


@pytest.mark.asyncio
async def test_a_unit_longer_than_the_budget_still_makes_progress():
    work = Work(units=3, cost=0.05)
    await in_slices(work.step, budget=0.002, pause=0.01, clock=work.clock, sleep=work.sleep)
    assert work.slices == [1, 1, 1] and work.units == 0


@pytest.mark.asyncio
async def test_no_pause_when_the_work_fits_one_slice():
    work = Work(units=2, cost=0.0001)
    assert await in_slices(work.step, clock=work.clock, sleep=work.sleep) == 0
    assert work.pauses == []


@pytest.mark.asyncio
async def test_a_failing_step_stops_the_slices_and_is_raised():
    def step() -> int:
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        await in_slices(step)
