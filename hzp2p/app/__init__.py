"""The gateway's clients as commands: a citizen's app and an institution's records client.

`hzp2p citizen ...` (hzp2p.app.citizen) is what a citizen's phone does, with the key file
that names her pseudonym: read her health code, records, grants and access log, sign her
own transactions (check-ins sealed to her alone, grants, revocations, the declaration of
a matched exposure, appeals) and post them to the gateway, match published exposures
against her check-ins on her side, and fetch offline receipts. `hzp2p institution ...`
(hzp2p.app.institution) is a member's client: the records it was handed, opened with
its signing key. Both talk to a gateway over HTTP(S) only (hzp2p.app.session), signing
each request with hzp2p.gateway.client; they never touch a node's admin socket.
"""
