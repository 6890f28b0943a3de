"""Pure decisions the proxy's hot path reads: matching, splitting, balancing, resilience.

Everything here is sans-IO: compiled once per snapshot from `tollway.snapshot.types`,
then only read per request. Randomness arrives as floats (or an injected
`random.Random`), time as `now: float` arguments.
"""
