"""Node layer, the head process: message routing, peers, worker supervision, the actor
table, the event bus, the pure scheduler, the object directory and the watchdog. Imports
the wire and the base; never the model or an engine."""
