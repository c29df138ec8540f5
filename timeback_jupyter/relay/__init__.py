"""The hub relay: a JupyterHub service that holds the Timeback credentials and the truth.

Students' servers send it their events; it decides what reaches Timeback (who the actor is, how
much active time a user can have, what a completion earns) and delivers it with the same
drainer as a server. Its core (:mod:`.catalog`, :mod:`.users`, :mod:`.schema`,
:mod:`.database`, :mod:`.ingest` and its helpers, :mod:`.outbox`) imports nothing of Jupyter
or tornado; the service face (``app``, ``handlers``, ``settings``) wires it to the hub.
"""
