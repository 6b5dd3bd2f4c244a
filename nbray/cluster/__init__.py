"""Starting and stopping clusters: the local head process (and, later, SSH-provisioned Ray)."""
