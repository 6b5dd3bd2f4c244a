"""Composition: picks an engine from a table and starts or joins a cluster (``lifecycle``),
the functions of the public API (``api``), cluster start-up and SSH provisioning
(``cluster/``), the CLI and the process entry points (head process, fork server)."""
