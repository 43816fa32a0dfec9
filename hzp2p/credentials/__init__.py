"""Health-code credentials: short-lived signed QR payloads that venues verify offline.

hzp2p.credentials.cose issues and parses them (COSE_Sign1 over CBOR, zlib, base45,
prefix "HZ1:", after the EU Digital COVID Certificate's "HC1:"), hzp2p.credentials.verify
checks one against a downloaded trust list (the importable verifier for scanner
apps), hzp2p.credentials.qr draws and reads the QR code.
"""
