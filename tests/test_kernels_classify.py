"""Which IOPub messages are interaction: checked on real, signed jupyter_client messages."""

import pytest
from jupyter_client.session import Session

from timeback_jupyter.server.kernels import KernelWatcher


@pytest.fixture
def session():
    return Session(key=b"secret-key")


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
def test_classify(session, msg_type, content, parent, kind):
    assert KernelWatcher._classify(session, wire(session, msg_type, content, parent)) == kind


def test_a_forged_status_is_refused(session):
    parts = wire(session, "status", {"execution_state": "busy"}, "execute_request")
    other = Session(key=b"another-key")
    with pytest.raises(ValueError, match="Invalid Signature"):
        KernelWatcher._classify(other, parts)
