"""The web dashboard: service graph, rollouts and proxy status (docs/dashboard.md).

graph.py, rollouts.py and mesh.py are pure; web.py serves the page and scrapes the proxies.
"""
