"""Starting and stopping clusters.

local.py      nbray.init() / `nbray start` ──▶ the head process on this machine
spec.py       a cluster file (TOML, or JSON) ──▶ ClusterSpec (hosts, ssh, install)
ssh.py        the system ssh client: run a script, copy a file
install.py    a venv with nbray[ray] on each host that asks for one
provision.py  `nbray up` / `nbray down`: Ray's head and workers over SSH
"""
