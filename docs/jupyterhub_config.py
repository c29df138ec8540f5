# jupyterhub_config.py: what timeback-jupyter needs on JupyterHub 6 (add it to your own config).
# The relay is a service the hub starts and restarts; it alone holds the Timeback credentials.
import os

RELAY = "timeback-relay"
RELAY_URL = "http://127.0.0.1:10101"  # where the relay listens; the hub proxies /services/...

c.JupyterHub.services.append(
    {
        "name": RELAY,
        "url": RELAY_URL,
        "command": ["jupyter", "timeback", "relay"],
        # The relay's environment, and nobody else's: the students' servers never see these.
        "environment": {
            "TIMEBACK_API_CLIENT_ID": os.environ["TIMEBACK_API_CLIENT_ID"],
            "TIMEBACK_API_CLIENT_SECRET": os.environ["TIMEBACK_API_CLIENT_SECRET"],
            "TIMEBACK_ENV": os.environ.get("TIMEBACK_ENV", "production"),
        },
    }
)

# Students may call the relay (JupyterHub 5: override the `user` role instead, see the docs)...
c.JupyterHub.extra_user_scopes = {f"access:services!service={RELAY}"}
# ...and so may their servers' tokens, with which the servers send their events.
c.Spawner.server_token_scopes = [
    "users:activity!user",
    "access:servers!server",
    f"access:services!service={RELAY}",
]
# The servers find the relay here and send to it (never to Timeback) when this is set.
c.Spawner.environment.update({"TIMEBACK_RELAY_URL": f"{RELAY_URL}/services/{RELAY}/"})
