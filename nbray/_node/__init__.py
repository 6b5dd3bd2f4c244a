"""Node layer, the head process: message routing (``routing``), connections (``peers``),
worker supervision (``supervisor``), the task table (``tasks``), the actor table
(``actors``), the event bus (``bus``), composed by ``head``; the pure scheduler
(``scheduler``) with its resource pool (``resources``), the object directory
(``objects``) and the watchdog. Imports the wire and the base; never the model or an
engine."""
