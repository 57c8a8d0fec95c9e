"""Payload types and header-extension ids the server keeps using with one client.

aiortc builds every offer from its own tables (opus 96, VP8 97, mid extension 1, ...).
A browser numbers its own offer differently (Chromium: opus 111, VP8 96, mid 4, ...), and
refuses a later offer that renumbers what it negotiated ("RTP extension ID reassignment not
supported"); within one BUNDLE a payload type must also mean the same codec on every section.
So after a client's first offer, the server derives per-client tables from it: codecs and
extensions the client named keep the client's numbers, and the rest get numbers the client
does not use. `media.hooks.offer_tables` lends them to aiortc while it builds an offer, and
`media.hooks.default_tables` gives aiortc's own, from which they are derived. Pure: tables in,
tables out.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence

from aiortc.rtcrtpparameters import (
    RTCRtpCodecCapability,
    RTCRtpCodecParameters,
    RTCRtpHeaderExtensionParameters,
)

Codecs = dict[str, list[RTCRtpCodecParameters]]
Extensions = dict[str, list[RTCRtpHeaderExtensionParameters]]
# aiortc's own tables, by kind, as media.hooks.default_tables gives them: read, never changed.
CodecTable = Mapping[str, Sequence[RTCRtpCodecParameters]]
ExtensionTable = Mapping[str, Sequence[RTCRtpHeaderExtensionParameters]]

_DYNAMIC = range(96, 128)
_EXTENSION_IDS = range(1, 15)


def is_rtx(codec: RTCRtpCodecParameters | RTCRtpCodecCapability) -> bool:
    """Whether `codec` is the retransmission format (RFC 4588), whose MIME subtype is "rtx"
    whatever codec it carries (as aiortc decides it too)."""
    return codec.name.lower() == "rtx"


def _same_codec(ours: RTCRtpCodecParameters, theirs: RTCRtpCodecParameters) -> bool:
    if ours.mimeType.lower() != theirs.mimeType.lower() or ours.clockRate != theirs.clockRate:
        return False
    if ours.mimeType.lower() == "video/h264":
        want = str(ours.parameters.get("profile-level-id", "")).lower()[:4]
        have = str(theirs.parameters.get("profile-level-id", "")).lower()[:4]
        mode = str(ours.parameters.get("packetization-mode", "0"))
        return want == have and mode == str(theirs.parameters.get("packetization-mode", "0"))
    return True


def client_tables(
    aiortc_tables: tuple[CodecTable, ExtensionTable],
    negotiated_codecs: Mapping[str, Sequence[RTCRtpCodecParameters]],
    negotiated_extensions: Iterable[RTCRtpHeaderExtensionParameters],
) -> tuple[Codecs, Extensions]:
    """Per-client copies of aiortc's codec and extension tables, renumbered to agree with
    what the client negotiated (`kind -> codecs` and the extensions of its first offer)."""
    aiortc_codecs, aiortc_extensions = aiortc_tables
    used = {c.payloadType for cs in negotiated_codecs.values() for c in cs}
    free = (pt for pt in _DYNAMIC if pt not in used)
    codecs: Codecs = {}
    for kind, table in aiortc_codecs.items():
        theirs = list(negotiated_codecs.get(kind, ()))
        renumbered: dict[int | None, int | None] = {}
        out: list[RTCRtpCodecParameters] = []
        for codec in table:
            if is_rtx(codec):
                continue
            match = next((c for c in theirs if not is_rtx(c) and _same_codec(codec, c)), None)
            if match is not None:
                pt = match.payloadType
            elif codec.payloadType in used or codec.payloadType in _DYNAMIC:
                pt = next(free, None)
            else:
                pt = codec.payloadType  # a static payload type (PCMU 0, ...) keeps its number
            if pt is None:
                continue
            used.add(pt)
            renumbered[codec.payloadType] = pt
            out.append(dataclasses.replace(codec, payloadType=pt))
        for codec in table:
            if not is_rtx(codec):
                continue
            apt = renumbered.get(codec.parameters.get("apt"))  # type: ignore[arg-type]
            if apt is None:
                continue
            match = next((c for c in theirs if is_rtx(c) and c.parameters.get("apt") == apt), None)
            pt = match.payloadType if match is not None else next(free, None)
            if pt is None:
                continue
            used.add(pt)
            out.append(dataclasses.replace(codec, payloadType=pt, parameters={"apt": apt}))
        codecs[kind] = out

    by_uri = {ext.uri: ext.id for ext in negotiated_extensions}
    taken = set(by_uri.values())
    spare = (i for i in _EXTENSION_IDS if i not in taken)
    assigned: dict[str, int] = {}
    extensions: Extensions = {}
    for kind, exts in aiortc_extensions.items():
        out_ext: list[RTCRtpHeaderExtensionParameters] = []
        for ext in exts:
            ext_id = by_uri.get(ext.uri) or assigned.get(ext.uri) or next(spare, None)
            if ext_id is None:
                continue
            assigned[ext.uri] = ext_id
            out_ext.append(dataclasses.replace(ext, id=ext_id))
        extensions[kind] = out_ext
    return codecs, extensions
