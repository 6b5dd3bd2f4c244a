"""Wire layer, shared by every process: the message protocol, the authenticated transport,
serialization, shared-memory segments, session files, node metrics. Imports only the base."""
