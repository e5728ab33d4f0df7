"""grid-ops serve: the REST API and the live dashboard (FastAPI on uvicorn).

``token`` keeps the bearer token, ``refresher`` does the slow work (SSH probes,
controller and Ray Jobs calls) in one background thread per cluster, ``api`` answers
requests from what the refresher last saw, ``page/`` is the dashboard (plain HTML, CSS
and one script; no build step).
"""
