"""Engines, independent siblings behind the model's ``Engine`` interface: ``local`` (the
embedded runtime's client side and its workers), ``ray`` (Ray as the engine) and ``inline``
(everything in the calling thread, for ``%%compare``). No engine imports another."""
