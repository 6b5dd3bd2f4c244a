"""Base layer: the exception tree, task/actor options and the typed events. Imports nothing
of nbray; every other layer may import it."""
