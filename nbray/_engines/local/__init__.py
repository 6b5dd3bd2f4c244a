"""The local engine: the client in the user's process (``client``), the ``Engine`` over it
(``engine``) and the worker process's loop (``worker``)."""
