"""uvicorn's httptools protocol, answering unparsable requests as problems.

A request uvicorn cannot parse (a bad ``Content-Length``, a broken
request line) never reaches the app: uvicorn answers a plain-text 400
itself. This subclass answers it like every other error of the API, as
an RFC 9457 ``application/problem+json`` document.
"""

from __future__ import annotations

from uvicorn.protocols.http.httptools_impl import (
    STATUS_LINE,
    HttpToolsProtocol,
)

from wheel.api.models import Problem, encoder


class ProblemHttpToolsProtocol(HttpToolsProtocol):
    """HttpToolsProtocol whose parse errors are problem documents."""

    def send_400_response(self, msg: str) -> None:
        """Answer an unparsable request with a 400 problem and close."""
        body = encoder.encode(
            Problem("Bad Request", 400, f"the request is malformed: {msg}")
        )
        content = [STATUS_LINE[400]]
        for name, value in self.server_state.default_headers:
            content.extend([name, b": ", value, b"\r\n"])
        content.extend(
            [
                b"content-type: application/problem+json\r\n",
                b"content-length: " + str(len(body)).encode("ascii") + b"\r\n",
                b"connection: close\r\n",
                b"\r\n",
                body,
            ]
        )
        self.transport.write(b"".join(content))
        self.transport.close()
