"""Where a url's authority ends, the one scan behind every per-origin
key: the API's remembered url verdicts, the worker's per-destination
limits and the claim's deferral prefixes."""

from __future__ import annotations


def authority_end(rest: str, stops: str) -> int:
    """Where the authority of ``rest`` (a url after its ``scheme://``)
    ends: at the first of the characters ``stops``, or at its end.

    Callers differ only in ``stops``: ``urlsplit`` keeps ``\\`` in the
    authority, a browser (and aiohttp's yarl) ends it there.
    """
    end = len(rest)
    for stop in stops:
        found = rest.find(stop, 0, end)
        if found != -1:
            end = found
    return end
