"""Which IOPub messages are interaction: checked on real, signed jupyter_client messages."""

import json

import pytest
from jupyter_client.session import Session

from timeback_jupyter.server.kernels import KernelWatcher


@pytest.fixture(params=["json", "compact"])
def session(request):
    session = Session(key=b"secret-key")
    if request.param == "compact":  # as orjson writes it (ipykernel's packer when installed)
        session.pack = lambda obj: json.dumps(obj, separators=(",", ":"), default=str).encode()
    return session


def wire(session, msg_type, content, parent_type=None):
    parent = session.msg(parent_type, {}) if parent_type else {}
    msg = session.msg(msg_type, content, parent=parent)
    return session.serialize(msg)


@pytest.mark.parametrize(
    ("msg_type", "content", "parent", "kind"),
    [
        ("status", {"execution_state": "busy"}, "execute_request", "execute_start"),
        ("status", {"execution_state": "idle"}, "execute_request", "execute_end"),
        ("status", {"execution_state": "busy"}, "comm_msg", "comm"),
        ("status", {"execution_state": "idle"}, "comm_msg", None),
        ("status", {"execution_state": "busy"}, "complete_request", None),
        ("status", {"execution_state": "busy"}, "kernel_info_request", None),
        ("stream", {"name": "stdout", "text": '"status"'}, "execute_request", None),
        ("execute_input", {"code": "x = 1", "execution_count": 1}, "execute_request", None),
    ],
)
@pytest.mark.parametrize("verified", [False, True], ids=["own-subscription", "after-jupyter"])
def test_classify(session, msg_type, content, parent, kind, verified):
    parts = wire(session, msg_type, content, parent)
    assert KernelWatcher._classify(session, parts, verified) == kind


def test_a_forged_status_is_refused(session):
    parts = wire(session, "status", {"execution_state": "busy"}, "execute_request")
    other = Session(key=b"another-key")
    with pytest.raises(ValueError, match="Invalid Signature"):
        KernelWatcher._classify(other, parts)


async def test_the_shared_stream_observes_only_what_jupyter_accepted():
    import zmq
    from zmq.eventloop.zmqstream import ZMQStream

    from timeback_jupyter.server.kernels import _SharedStream

    ctx = zmq.Context.instance()
    stream = ZMQStream(ctx.socket(zmq.SUB))
    seen, jupyter = [], []

    def record_activity(parts):  # what Jupyter's watcher does: refuse a bad signature
        if parts == [b"forged"]:
            raise ValueError("Invalid Signature")
        jupyter.append(parts)

    stream.on_recv(record_activity)
    shared = _SharedStream.join(stream, seen.append)
    assert shared is not None
    stream._recv_callback([b"good"])
    with pytest.raises(ValueError, match="Invalid Signature"):
        stream._recv_callback([b"forged"])
    assert jupyter == [[b"good"]] and seen == [[b"good"]]
    shared.close()
    assert stream._recv_callback is record_activity  # given back as found
    stream.close()
    assert _SharedStream.join(stream, seen.append) is None  # a closed stream is not shared


async def test_the_shared_stream_passes_on_only_what_may_be_a_status(session):
    import zmq
    from zmq.eventloop.zmqstream import ZMQStream

    from timeback_jupyter.server.kernels import _SharedStream

    stream = ZMQStream(zmq.Context.instance().socket(zmq.SUB))
    seen, jupyter = [], []
    stream.on_recv(jupyter.append)
    shared = _SharedStream.join(stream, seen.append)
    assert shared is not None
    parent = "execute_request"
    messages = [  # as IOPub sends them: the topic, then the message
        [b"kernel.x.status", *wire(session, "status", {"execution_state": "busy"}, parent)],
        [b"kernel.x.stream", *wire(session, "stream", {"name": "stdout", "text": "1"}, parent)],
        [b"kernel.x.execute_input", *wire(session, "execute_input", {"code": "1"}, parent)],
    ]
    for parts in messages:
        stream._recv_callback(parts)
    assert jupyter == messages and seen == messages[:1]
    shared.close()
    stream.close()


class Held:
    """Where the observer holds statuses (as HeldSignals: entries, arm)."""

    def __init__(self):
        self.entries, self.armed = [], 0

    def arm(self):
        self.armed += 1


async def test_the_shared_stream_holds_statuses_as_they_came(session):
    import zmq
    from zmq.eventloop.zmqstream import ZMQStream

    from timeback_jupyter.server.kernels import _Classifier, _reader, _SharedStream

    stream = ZMQStream(zmq.Context.instance().socket(zmq.SUB))
    observed, jupyter, held = [], [], Held()

    def record_activity(parts):  # Jupyter's watcher: a bad signature raises there
        if parts == [b"forged"]:
            raise ValueError("Invalid Signature")
        jupyter.append(parts)

    stream.on_recv(record_activity)
    read = _reader(_Classifier(session))
    times = iter([10.0, 11.0, 12.0])
    shared = _SharedStream.join(stream, observed.append, (held, "k", read, lambda: next(times)))
    assert shared is not None
    parent = "execute_request"
    busy = [b"kernel.k.status", *wire(session, "status", {"execution_state": "busy"}, parent)]
    output = [
        b"kernel.k.stream",
        *wire(session, "stream", {"name": "stdout", "text": '"status"'}, parent),
    ]
    idle = [b"kernel.k.status", *wire(session, "status", {"execution_state": "idle"}, parent)]
    unusual = wire(session, "status", {"execution_state": "busy"}, parent)  # no topic
    for parts in (busy, output, idle, unusual):
        stream._recv_callback(parts)
    with pytest.raises(ValueError, match="Invalid Signature"):
        stream._recv_callback([b"forged"])
    assert jupyter == [busy, output, idle, unusual]
    # the two statuses held unread, stamped, in order; the arm asked for once (it was empty)
    assert held.entries == [("k", read, busy, 10.0), ("k", read, idle, 11.0)]
    assert held.armed == 1
    assert [read(parts) for _, _, parts, _ in held.entries] == ["execute_start", "execute_end"]
    assert observed == [unusual]  # another shape is read at once, by the observer
    shared.close()
    assert stream._recv_callback is record_activity
    stream.close()
