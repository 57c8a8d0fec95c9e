"""Media: server-side aiortc peer connections, forwarding of encoded media, recording.

Built by the media issue; the signalling hub reaches it through `signalling.media_port`.
"""
