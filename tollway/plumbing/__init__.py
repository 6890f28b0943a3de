"""Linux network plumbing shared by the dev cluster's node agent and `tollway up --intercept`.

Both give processes their own network namespace on a host bridge; neither may import the
other (the dev cluster stands apart from the mesh), so the iproute2 edge lives here and
imports nothing from Tollway but kit.
"""
