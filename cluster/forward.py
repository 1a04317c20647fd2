"""Forward TCP between the host and the local cluster's network namespace through a unix socket.

Two processes make one path: ``forward.py listen-tcp 127.0.0.1 PORT SOCKET`` on the host accepts TCP
and connects each connection to SOCKET; ``forward.py listen-unix SOCKET 127.0.0.1 PORT`` inside the
namespace accepts on SOCKET and connects to 127.0.0.1:PORT there. Bytes are copied both ways until
either side closes; nothing else is read or changed (TLS goes through end to end).
"""

import asyncio
import os
import sys


def start_pair(processes, name: str, port: int, state: str) -> None:
    """Both halves for 127.0.0.1:``port`` on the host -> 127.0.0.1:``port`` in the cluster's namespace, as the
    processes ``<name>-forward-inside`` and ``<name>-forward-host``."""
    socket_path = os.path.join(state, "run", f"{name}.sock")
    script = os.path.abspath(__file__)
    processes.start(f"{name}-forward-inside", [sys.executable, script, "listen-unix", socket_path, "127.0.0.1",
                                               str(port)])
    processes.start(f"{name}-forward-host", [sys.executable, script, "listen-tcp", "127.0.0.1", str(port),
                                             socket_path], inside=False)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        try:
            writer.close()
        except OSError:
            pass


async def _relay(client_reader, client_writer, connect) -> None:
    try:
        upstream_reader, upstream_writer = await connect()
    except OSError:
        client_writer.close()
        return
    await asyncio.gather(_pipe(client_reader, upstream_writer), _pipe(upstream_reader, client_writer))


async def _serve(mode: str, args: list[str]) -> None:
    if mode == "listen-tcp":
        host, port, socket_path = args[0], int(args[1]), args[2]
        server = await asyncio.start_server(
            lambda r, w: _relay(r, w, lambda: asyncio.open_unix_connection(socket_path)), host, port,
            reuse_address=True)
    elif mode == "listen-unix":
        socket_path, host, port = args[0], args[1], int(args[2])
        if os.path.exists(socket_path):
            os.remove(socket_path)
        server = await asyncio.start_unix_server(
            lambda r, w: _relay(r, w, lambda: asyncio.open_connection(host, port)), socket_path)
        os.chmod(socket_path, 0o600)
    else:
        raise SystemExit(f"forward.py: unknown mode {mode!r} (listen-tcp or listen-unix)")
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    if len(sys.argv) != 5:
        raise SystemExit("usage: forward.py listen-tcp HOST PORT SOCKET | listen-unix SOCKET HOST PORT")
    try:
        asyncio.run(_serve(sys.argv[1], sys.argv[2:]))
    except KeyboardInterrupt:
        pass
