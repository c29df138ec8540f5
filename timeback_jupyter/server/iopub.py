"""What an IOPub message says: which are the student's interaction (a cell run, a widget
touched), read from the raw wire parts as cheaply as the message allows (see kernels.py).

A ``status: busy`` whose parent is an ``execute_request`` is a cell the student ran; its
``status: idle`` ends it. A ``status: busy`` whose parent is a ``comm_msg`` is a widget touched.
Everything else (completions, inspections, kernel_info, the debugger) is not interaction.
"""

from __future__ import annotations

import re

from jupyter_client.session import Session

# (parent msg_type, execution_state) -> clock signal kind
_SIGNALS = {
    ("execute_request", "busy"): "execute_start",
    ("execute_request", "idle"): "execute_end",
    ("comm_msg", "busy"): "comm",
}
_PARENTS = frozenset(parent for parent, _ in _SIGNALS)
_RAW_SIGNALS = {(p.encode(), state.encode()): kind for (p, state), kind in _SIGNALS.items()}
# A key and its string value in raw JSON. A quote inside a JSON string is escaped, so only a
# real key matches (headers are flat); a value with an escape in it does not match, and is
# decoded instead.
_MSG_TYPE = re.compile(rb'"msg_type"\s*:\s*"([^"\\]*)"')
_STATE = re.compile(rb'"execution_state"\s*:\s*"([^"\\]*)"')


def _written(key: str, value: str) -> tuple[bytes, bytes]:
    """``"key": "value"`` as json (Jupyter's default packer) and orjson (ipykernel's when it
    is installed) write it; a quote inside a string is escaped, so only a real key matches."""
    return f'"{key}": "{value}"'.encode(), f'"{key}":"{value}"'.encode()


_STATUS = _written("msg_type", "status")
_PARENT_WRITTEN = tuple(
    (parent, _written("msg_type", parent)) for parent in dict.fromkeys(p for p, _ in _SIGNALS)
)
_STATE_WRITTEN = tuple((state, _written("execution_state", state)) for state in ("busy", "idle"))
DELIM = b"<IDS|MSG>"  # jupyter_client.session.DELIM: identities end, the message begins
DECODE = "decode"  # read_raw: the raw JSON does not tell, decode the message


class Classifier:
    """Which signal an IOPub message is, if any, for one kernel's session (see the module).

    Runs for every message of every kernel: the session's unpacker is looked up once (a
    traitlet), and the wire parts are split by hand."""

    def __init__(self, session: Session) -> None:
        self._session = session
        self._unpack = session.unpack

    def __call__(self, parts: list[bytes], verified: bool = False) -> str | None:
        try:
            fed = parts[parts.index(DELIM) + 1 :]
        except ValueError:  # not a message: Jupyter's own error for it
            _idents, fed = self._session.feed_identities(parts)
        # Most IOPub traffic is output: a byte search of the raw header skips every message that
        # cannot be a status (a miss costs nothing).
        if len(fed) < 5 or fed[1].find(b'"status"') == -1:
            return None
        unpack = self._unpack
        if verified:
            # Jupyter's own watcher has just checked this message's signature on the same
            # stream: the three fields we need are read from the raw JSON, nothing is decoded.
            kind = read_raw(fed[1], fed[2], fed[4])
            if kind is not DECODE:
                return kind
            # not plain JSON: decode
            if unpack(fed[1]).get("msg_type") != "status":
                return None
            parent_type = (unpack(fed[2]) or {}).get("msg_type")
            if parent_type not in _PARENTS:
                return None
            return _SIGNALS.get((parent_type, unpack(fed[4]).get("execution_state")))
        msg = self._session.deserialize(fed, content=False)
        if msg["header"].get("msg_type") != "status":
            return None
        parent_type = (msg.get("parent_header") or {}).get("msg_type")
        if parent_type not in _PARENTS:
            return None
        # Only now pay for the content: status messages are tiny.
        state = unpack(msg["content"]).get("execution_state")
        return _SIGNALS.get((parent_type, state))


def read_raw(header: bytes, parent: bytes, content: bytes) -> str | None:
    """The signal a verified message is, read from its raw JSON parts; ``DECODE`` when a
    field is not there as plain JSON (a parent header that is ``{}``, an escape, another
    packer), and the message must be decoded to tell.

    A signal's three fields are first looked for as json and orjson write them (a byte
    search each: a regular expression's match objects cost several times more in a running
    server); anything else is read with the expressions. ``find``, never ``in``: CPython's
    ``bytes in bytes`` first tries the needle as an integer, raising and clearing a TypeError
    each time (3.12: ~6 times the cost of the search, and far more found cold)."""
    find = header.find
    if find(_STATUS[0]) != -1 or find(_STATUS[1]) != -1:
        for parent_type, written in _PARENT_WRITTEN:
            if parent.find(written[0]) != -1 or parent.find(written[1]) != -1:
                for state, said in _STATE_WRITTEN:
                    if content.find(said[0]) != -1 or content.find(said[1]) != -1:
                        return _SIGNALS.get((parent_type, state))
                break
    msg_type = _MSG_TYPE.search(header)
    if msg_type is None:
        return DECODE
    if msg_type[1] != b"status":
        return None
    parent_type, state = _MSG_TYPE.search(parent), _STATE.search(content)
    if parent_type is None or state is None:
        return DECODE
    return _RAW_SIGNALS.get((parent_type[1], state[1]))
