"""The ``ray`` engine: nbray's API running on a Ray cluster.

    nbray.init(engine="ray", address=...) ──connect.py──▶ ray.init (token auth)
        ──▶ RayEngine (engine.py) ──▶ Ray remote functions, actors, ObjectRefs
    errors.py: Ray's exceptions ──▶ nbray's error tree
    events.py: the driver's view of its tasks + one metrics actor per node ──▶ event dicts
               in the local engine's shapes (widgets read either engine's stream)

Ray is imported only here, and only when this engine is used (``pip install nbray[ray]``).
"""
