"""Serving: the aiohttp app (web client, /offer, WHEP, /ws/audio, /speak, /interrupt, /healthz,
/metrics), aiortc tracks fed by the session's one rendered stream, token auth, microphone
capture and the push client. Imports aiortc, so nothing here is imported by `anchor --help`."""
