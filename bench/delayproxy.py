#!/usr/bin/env python3
"""A TCP proxy that delays every byte by a fixed time in each direction (order kept).

  delayproxy.py LISTEN_PORT TARGET_PORT DELAY_MS [LISTEN_PORT TARGET_PORT DELAY_MS ...]

All on 127.0.0.1. Used to give etcd members and Redis clients the same one-way WAN delay that
Concord's link faults (`--wan-delay-ms`) give its replication links. Data read from one side is
written to the other side DELAY_MS after it was read; throughput is not limited.
"""
import asyncio, sys, time


async def pump(reader, writer, delay):
    q = asyncio.Queue()

    async def sender():
        while True:
            due, data = await q.get()
            if data is None:
                break
            wait = due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            writer.write(data)
            await writer.drain()
        try:
            writer.write_eof()
        except Exception:
            pass

    task = asyncio.create_task(sender())
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            q.put_nowait((time.monotonic() + delay, data))
    except Exception:
        pass
    q.put_nowait((0, None))
    try:
        await task
    except Exception:
        pass


def handler(target, delay):
    async def handle(creader, cwriter):
        try:
            sreader, swriter = await asyncio.open_connection("127.0.0.1", target)
        except Exception:
            cwriter.close()
            return
        for w in (cwriter, swriter):
            sock = w.get_extra_info("socket")
            if sock is not None:
                import socket
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        await asyncio.gather(pump(creader, swriter, delay), pump(sreader, cwriter, delay))
        for w in (cwriter, swriter):
            try:
                w.close()
            except Exception:
                pass
    return handle


async def main(args):
    servers = []
    for i in range(0, len(args), 3):
        listen, target, delay = int(args[i]), int(args[i + 1]), float(args[i + 2]) / 1000.0
        servers.append(await asyncio.start_server(handler(target, delay), "127.0.0.1", listen))
    print("proxy ready", flush=True)
    await asyncio.gather(*(s.serve_forever() for s in servers))


if __name__ == "__main__":
    if len(sys.argv) < 4 or (len(sys.argv) - 1) % 3:
        sys.exit(__doc__)
    try:
        asyncio.run(main(sys.argv[1:]))
    except KeyboardInterrupt:
        pass
