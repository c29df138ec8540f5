"""The relay forwards its events as stored: the claim returns each payload's JSON text (not
parsed by the driver), and the Timeback sink posts the texts spliced into the envelope through
the official transport (its token and headers), not validated, dumped and encoded again; the
stand-in validates every event with the official models, so what it accepts Timeback would."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from timeback_jupyter import caliper
from timeback_jupyter.config import Credentials
from timeback_jupyter.delivery import Drainer, RejectedError, TimebackSink
from timeback_jupyter.relay.schema import outbox
from timeback_jupyter.testing.standin import EVENT_PATH, SENSOR, StandIn, time_spent_events

from .conftest import ADA, T0, Wall, completion, envelope, run_id, tse

CLIENT_ID, SECRET = "relay-texts-client", "relay-texts-secret"


@pytest.fixture
def api():
    with StandIn(CLIENT_ID, SECRET) as server:
        yield server


def sink_for(api: StandIn) -> TimebackSink:
    return TimebackSink(Credentials(CLIENT_ID, SECRET), base_url=api.url, auth_url=api.token_url)


async def bodies_of(sink: TimebackSink) -> list[tuple[dict[str, str], bytes]]:
    """The headers and body of each request the official client sends from now on."""
    sink._caliper()
    client = await sink._transport._get_client()
    seen: list[tuple[dict[str, str], bytes]] = []

    async def note(request: httpx.Request) -> None:
        seen.append((dict(request.headers), request.content))

    client.event_hooks["request"].append(note)
    return seen


@pytest.mark.asyncio
async def test_the_relay_posts_its_events_as_stored_and_timeback_takes_them(api, relay, wall: Wall):
    run = run_id()
    events = [tse(run, T0 + 15 * i) for i in range(1, 4)] + [completion(run, T0 + 50)]
    result = await relay.ingest(ADA, envelope(*events))
    assert result.to_dict()["accepted"] == 4, result.to_dict()
    with relay.db.read() as conn:
        texts = list(
            conn.execute(
                sa.select(sa.cast(outbox.c.payload, sa.Text)).order_by(outbox.c.seq)
            ).scalars()
        )
    sink = sink_for(api)
    seen = await bodies_of(sink)
    drainer = Drainer(relay.outbox, sink, batch_size=10, job_poll_initial=0.05, wall=wall)
    report = await drainer.flush(timeout=20)
    assert (report.sent, report.remaining) == (4, 0)
    [(headers, body)] = [(h, b) for h, b in seen if b]
    # the stored texts themselves, spliced in: no event was parsed and dumped again
    assert body.decode().endswith('"data":[' + ",".join(texts) + "]}")
    assert headers["content-type"] == "application/json"
    assert headers["authorization"].startswith("Bearer ")
    # ...and the envelope is the one the dict path builds of the same events
    [posted] = [r.body for r in api.requests if r.path == EVENT_PATH]
    forwarded = relay.outbox.events()
    assert posted == caliper.envelope(forwarded, posted["sensor"], wall()) | {
        "sendTime": posted["sendTime"]
    }
    assert api.received == forwarded
    await sink.aclose()
    await drainer.stop()


@pytest.mark.asyncio
async def test_a_stored_event_no_builder_of_ours_made_is_checked_before_it_is_posted(api):
    sink = sink_for(api)
    good = [json.dumps(e) for e in time_spent_events(run_id(), 2)]
    stored = caliper.stored_envelope([*good, '{"id": "x"}'], SENSOR, T0, [2])
    with pytest.raises(RejectedError, match=r"envelope.data\[2\]"):
        await sink.send_stored(stored)
    with pytest.raises(RejectedError, match=r"envelope.data\[0\]"):
        await sink.send_stored(caliper.stored_envelope(["not json"], SENSOR, T0, [0]))
    assert [r for r in api.requests if r.path == EVENT_PATH] == []  # nothing was posted
    job: Any = await sink.send_stored(caliper.stored_envelope(good, SENSOR, T0, [0, 1]))
    assert job and [r.event_ids for r in api.requests if r.path == EVENT_PATH] == [
        [json.loads(t)["id"] for t in good]
    ]
    await sink.aclose()
