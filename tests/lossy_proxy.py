"""A real TCP proxy on loopback in front of the coordinator that can lose answers: with
``drop_answers`` set, the first bytes the coordinator sends back cut the client's side of the connection,
while the coordinator's side stays open so the call it received runs to the end. The request was carried
out; its answer never arrived — the case an idempotency key exists for."""

from __future__ import annotations

import contextlib
import socket
import threading


class LossyProxy:
    def __init__(self, upstream: str) -> None:
        host, _, port = upstream.rpartition(":")
        self._upstream = (host, int(port))
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.target = f"127.0.0.1:{self._listener.getsockname()[1]}"
        self.drop_answers = threading.Event()
        self.answers_dropped = 0
        self._sockets: list[socket.socket] = []
        self._closed = False
        threading.Thread(target=self._accept, name="lossy-proxy", daemon=True).start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self._upstream)
            self._sockets += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, True), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, answers: bool) -> None:
        try:
            while data := source.recv(65536):
                if answers and self.drop_answers.is_set():
                    self.answers_dropped += 1
                    # Lose the answer: cut the client off, keep reading (and discarding) the rest.
                    with contextlib.suppress(OSError):
                        sink.shutdown(socket.SHUT_RDWR)
                    sink.close()
                    while source.recv(65536):
                        pass
                    return
                sink.sendall(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                sink.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self._closed = True
        self._listener.close()
        for sock in self._sockets:
            with contextlib.suppress(OSError):
                sock.close()
