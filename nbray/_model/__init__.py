"""Model layer, what the API is made of in the user's process: the engine interface,
ObjectRef, ActorHandle, RemoteFunction, the session registry, notebook reprs and remote
tracebacks. Imports the wire and the base; never an engine."""
