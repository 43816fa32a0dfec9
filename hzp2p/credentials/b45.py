"""Base45 (RFC 9285), the QR-friendly text encoding of credentials, vectorised.

The `base45` package decodes one character at a time: 94 us for a 250-character
credential here, more than the Ed25519 check it precedes, so it bounded offline
verifications. This codec decodes and encodes with bytes.translate and a few
big-integer operations over all characters at once (a few microseconds each); tests
check it against the package.
"""

from __future__ import annotations

ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:"
_INVALID = 255
_DECODE = bytes(ALPHABET.index(chr(c)) if chr(c) in ALPHABET else _INVALID for c in range(256))
_PAIRS = [ALPHABET[i % 45] + ALPHABET[i // 45] for i in range(45 * 45)]


class Base45Error(ValueError):
    """Not base45 text."""


_ENCODE = bytes.maketrans(bytes(range(45)), ALPHABET.encode())
_DIV2025 = -(-(2**32) // 2025)  # n // 2025 == (n * _DIV2025) >> 32 for every n < 65536
_DIV45 = -(-(2**32) // 45)  # r // 45 == (r * _DIV45) >> 32 for every r < 2025


def b45encode(data: bytes) -> str:
    """Each 16-bit word n is the digits n % 45, n // 45 % 45, n // 2025. All words sit in
    64-bit slots of one integer and are divided at once by multiplying with a reciprocal
    and shifting (exact for 16-bit words, checked by the tests against the package; the
    products, under 2**38, stay inside their slots): a few big-integer operations, no
    loop per word and no table."""
    full = len(data) // 2
    slots = bytearray(8 * full)
    slots[0::8] = data[1 : 2 * full : 2]  # little-endian slots: low byte first
    slots[1::8] = data[0 : 2 * full : 2]
    x = int.from_bytes(slots, "little")
    mask = _mask16(full)
    c = ((x * _DIV2025) >> 32) & mask
    r = x - 2025 * c
    b = ((r * _DIV45) >> 32) & mask
    a = r - 45 * b
    digits = bytearray(3 * full)
    digits[0::3] = a.to_bytes(8 * full, "little")[0::8]
    digits[1::3] = b.to_bytes(8 * full, "little")[0::8]
    digits[2::3] = c.to_bytes(8 * full, "little")[0::8]
    out = digits.translate(_ENCODE).decode("ascii")
    if len(data) % 2:
        return out + _PAIRS[data[-1]]
    return out


_MASKS16: dict[int, int] = {}


def _mask16(slots: int) -> int:
    m = _MASKS16.get(slots)
    if m is None:
        m = int.from_bytes(b"\xff\xff\x00\x00\x00\x00\x00\x00" * slots, "little")
        if len(_MASKS16) < 64:
            _MASKS16[slots] = m
    return m


def b45decode(text: str) -> bytes:
    try:
        raw = text.encode("ascii")
    except UnicodeEncodeError:
        raise Base45Error("base45 text must be ASCII") from None
    v = raw.translate(_DECODE)
    if _INVALID in v:
        raise Base45Error("invalid base45 character")
    full, rest = divmod(len(v), 3)
    if rest == 1:
        raise Base45Error("invalid base45 length")
    n3 = 3 * full
    # Each triple (a, b, c) is the number a + 45 b + 2025 c (at most 91124, valid up to
    # 0xFFFF). Read the digits as one little-endian integer, so triple k is the 24-bit slot
    # k holding a + 256 b + 65536 c; mask out the a, b and c of every slot at once and add
    # them with their weights: no slot carries into the next (91124 < 2**24), a slot over
    # 0xFFFF shows in its third byte, and the low two bytes of each slot are the output
    # word (little-endian). A few big-integer operations instead of a loop per character.
    x = int.from_bytes(v[:n3], "little")
    mask = _mask(full)
    total = (x & mask) + 45 * ((x >> 8) & mask) + 2025 * ((x >> 16) & mask)
    sums = total.to_bytes(n3, "little")
    if sums[2::3].count(0) != full:
        raise Base45Error("base45 triple out of range")
    out_words = bytearray(2 * full)
    out_words[0::2] = sums[1::3]
    out_words[1::2] = sums[0::3]
    out = bytes(out_words)
    if rest == 2:
        last = v[n3] + 45 * v[n3 + 1]
        if last > 0xFF:
            raise Base45Error("base45 pair out of range")
        out += bytes([last])
    return out


_MASKS: dict[int, int] = {}


def _mask(slots: int) -> int:
    """0xFF in the low byte of each of `slots` 24-bit slots (cached: credentials are a few
    lengths)."""
    m = _MASKS.get(slots)
    if m is None:
        m = int.from_bytes(b"\xff\x00\x00" * slots, "little")
        if len(_MASKS) < 64:
            _MASKS[slots] = m
    return m
