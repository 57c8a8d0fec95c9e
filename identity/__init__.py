"""Who someone is and which courts they may see: the bottom layer, importable by every package.

`Identity` is what a verified credential says (user, role, court, expiry); `Courts` is the
court hierarchy and the scope each role has in it. Nothing here verifies a token, reads a
file or a clock: verification (JWT, keys) stays at the edges, in `commandcenter.auth`, and
hands the layers below an `Identity` or an `AuthError`.
"""

from identity.courts import Court, Courts
from identity.people import AuthError, AuthReason, Identity, Role, bearer_token

__all__ = ["AuthError", "AuthReason", "Court", "Courts", "Identity", "Role", "bearer_token"]
