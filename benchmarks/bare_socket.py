"""A bare tornado WebSocket server answering each message with its id: the socket floor.

``python -m benchmarks.bare_socket PORT``. No Jupyter, no auth, no timeback: what any Python
WebSocket server on tornado (Jupyter's web framework) costs to receive a report of the same
size and answer it, at the same rate, on the same machine. The presence benchmark runs its tabs
against it to show which part of the socket arm's CPU is the transport's and which is ours.
"""

from __future__ import annotations

import asyncio
import json
import sys

from tornado import web, websocket


class EchoId(websocket.WebSocketHandler):
    def on_message(self, message: str | bytes) -> None:
        # parse and answer as the presence socket does, minus the checks and the run
        self.write_message(json.dumps({"id": json.loads(message).get("id"), "run": None}))


async def serve(port: int) -> None:
    web.Application([(r"/timeback/api/presence/socket", EchoId)]).listen(port, "127.0.0.1")
    print("ready", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(serve(int(sys.argv[1])))
