"""hzp2p.admin: the daemon's local admin socket.

protocol (sans-IO frames, requests, responses, typed errors, method schemas),
server (the Trio Unix-socket server the daemon fills with handlers),
client (async and sync clients), cli (`hzp2p admin ...`).
"""
