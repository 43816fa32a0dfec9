"""A misbehaving local process for the admin-socket flood test (run as a script).

    python tests/jepsen/jepsen_flooder.py SOCKET SECONDS

For SECONDS it keeps IDLE connections open to SOCKET (re-opening any the daemon
closes), and in parallel sends garbage frames, oversized frames, raw garbage
bytes and half frames that never complete. On exit it prints one JSON object of
what it did. It never sends a valid request.
"""

from __future__ import annotations

import json
import os
import struct
import sys

import trio

IDLE = 200
GARBAGE_TASKS = 4
OVERSIZED_TASKS = 2
SLOW_TASKS = 8
_GONE = (OSError, trio.BrokenResourceError, trio.ClosedResourceError)


async def main(path: str, seconds: float) -> dict[str, int]:
    done = {"idle_opened": 0, "garbage_frames": 0, "oversized": 0, "slow": 0, "errors": 0}

    async def connect() -> trio.SocketStream:
        return await trio.open_unix_socket(path)

    async def idle() -> None:
        while True:
            try:
                stream = await connect()
                done["idle_opened"] += 1
                while await stream.receive_some(4096):  # until the daemon closes it
                    pass
                await stream.aclose()
            except _GONE:
                done["errors"] += 1
                await trio.sleep(0.01)

    async def garbage() -> None:
        body = b"\xc1\xc1not msgpack at all"
        frame = struct.pack(">I", len(body)) + body
        while True:
            try:
                stream = await connect()
                while True:
                    await stream.send_all(frame * 8)
                    done["garbage_frames"] += 8
                    await trio.sleep(0)
            except _GONE:
                done["errors"] += 1
                await trio.sleep(0.005)

    async def oversized() -> None:
        while True:
            try:
                stream = await connect()
                await stream.send_all(struct.pack(">I", 0x7FFFFFFF) + os.urandom(256))
                await stream.send_all(b"GET / HTTP/1.1\r\n\r\n")
                done["oversized"] += 1
                await stream.aclose()
            except _GONE:
                done["errors"] += 1
            await trio.sleep(0.005)

    async def slow() -> None:
        while True:
            try:
                stream = await connect()
                await stream.send_all(struct.pack(">I", 1000) + b"\x81")  # never finished
                done["slow"] += 1
                while await stream.receive_some(4096):
                    pass
                await stream.aclose()
            except _GONE:
                done["errors"] += 1
                await trio.sleep(0.01)

    with trio.move_on_after(seconds):
        async with trio.open_nursery() as nursery:
            for _ in range(IDLE):
                nursery.start_soon(idle)
            for fn, n in ((garbage, GARBAGE_TASKS), (oversized, OVERSIZED_TASKS), (slow, SLOW_TASKS)):
                for _ in range(n):
                    nursery.start_soon(fn)
    return done


if __name__ == "__main__":
    print(json.dumps(trio.run(main, sys.argv[1], float(sys.argv[2]))), flush=True)
