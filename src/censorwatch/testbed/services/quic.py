"""HTTP/3 over QUIC for the emulated web sites (aioquic), so QUIC blocking can be measured.

Every site also advertises ``Alt-Svc: h3=":443"`` over HTTPS, as large platforms do. One
certificate carries every site name (as a CDN's would), since a QUIC server picks its
certificate before it sees the request.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from aioquic.asyncio import QuicConnectionProtocol, serve
from aioquic.h3.connection import H3_ALPN, H3Connection
from aioquic.h3.events import HeadersReceived
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import ProtocolNegotiated, QuicEvent

log = logging.getLogger(__name__)

#: (host, path) -> (status, content type, body)
PageFunction = Callable[[str, str], tuple[int, str, bytes]]


def _protocol_factory(page: PageFunction) -> type[QuicConnectionProtocol]:
    class H3Server(QuicConnectionProtocol):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            self._http: H3Connection | None = None

        def quic_event_received(self, event: QuicEvent) -> None:
            if isinstance(event, ProtocolNegotiated) and event.alpn_protocol in H3_ALPN:
                self._http = H3Connection(self._quic)
            if self._http is None:
                return
            for h3_event in self._http.handle_event(event):
                if isinstance(h3_event, HeadersReceived):
                    headers = dict(h3_event.headers)
                    host = headers.get(b":authority", b"").decode("latin-1").split(":")[0]
                    path = headers.get(b":path", b"/").decode("latin-1")
                    status, ctype, body = page(host.lower(), path)
                    self._http.send_headers(
                        h3_event.stream_id,
                        [
                            (b":status", str(status).encode()),
                            (b"content-type", ctype.encode()),
                            (b"content-length", str(len(body)).encode()),
                            (b"server", b"testbed"),
                        ],
                    )
                    self._http.send_data(h3_event.stream_id, body, end_stream=True)
            self.transmit()

    return H3Server


async def serve_h3(host: str, certfile: Path, keyfile: Path, page: PageFunction) -> None:
    config = QuicConfiguration(
        is_client=False, alpn_protocols=H3_ALPN, max_datagram_frame_size=65536
    )
    config.load_cert_chain(certfile, keyfile)
    await serve(host, 443, configuration=config, create_protocol=_protocol_factory(page))
