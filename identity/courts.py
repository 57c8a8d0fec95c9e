"""The court hierarchy (province, intermediate, basic courts) and the scope of each role."""

from __future__ import annotations

from collections.abc import Iterable

import msgspec

from identity.case_numbers import BadCaseNumber, court_code_in, parse_court_code
from identity.people import Identity, Role


# A Struct so config.toml's `[[courts]]` decode into it with unknown keys refused; not
# kw_only, since hierarchies are written positionally: Court("P01", "First ...", "P").
class Court(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    code: str
    name: str
    # Empty for the province (the root).
    parent: str = ""
    # The court's code in Chinese case numbers (粤0101 in "(2025)粤0101执12号"): a case
    # number carrying it is this court's case. Empty: no number names this court.
    case_code: str = ""


class Courts:
    """The hierarchy built from its courts; raises ValueError for one that is not a tree."""

    def __init__(self, courts: Iterable[Court]) -> None:
        self._names: dict[str, str] = {}
        self._parents: dict[str, str | None] = {}
        self._by_case_code: dict[str, str] = {}
        for court in courts:
            if not court.code or court.code in self._names:
                raise ValueError(f"court code {court.code!r} is empty or duplicated")
            self._names[court.code] = court.name
            self._parents[court.code] = court.parent or None
            if court.case_code:
                try:
                    case_code = parse_court_code(court.case_code)
                except BadCaseNumber:
                    raise ValueError(
                        f"court {court.code!r}: case_code is not a court code"
                    ) from None
                if case_code in self._by_case_code:
                    raise ValueError(f"court {court.code!r}: case_code is another court's")
                self._by_case_code[case_code] = court.code
        if not self._names:
            raise ValueError("at least one court is required")
        self._ancestors = {code: self._walk_up(code) for code in self._names}
        below: dict[str, set[str]] = {code: {code} for code in self._names}
        for code, ancestors in self._ancestors.items():
            for ancestor in ancestors:
                below[ancestor].add(code)
        self._subtrees = {code: frozenset(codes) for code, codes in below.items()}
        self._all = frozenset(self._names)

    def _walk_up(self, code: str) -> tuple[str, ...]:
        chain: list[str] = []
        parent = self._parents[code]
        while parent is not None:
            if parent not in self._names:
                raise ValueError(f"court {code!r} has unknown parent {parent!r}")
            if parent == code or parent in chain:
                raise ValueError(f"court {code!r} is in a cycle")
            chain.append(parent)
            parent = self._parents[parent]
        return tuple(chain)

    def __contains__(self, code: object) -> bool:
        return code in self._names

    def __len__(self) -> int:
        return len(self._names)

    # The lookups below raise KeyError for an unknown code: callers check `in` first,
    # since an unknown court reaching them is a bug, not bad input.
    def name(self, code: str) -> str:
        return self._names[code]

    def parent(self, code: str) -> str | None:
        return self._parents[code]

    def ancestors(self, code: str) -> tuple[str, ...]:
        """The courts above `code`, nearest first, excluding `code`."""
        return self._ancestors[code]

    def subtree(self, code: str) -> frozenset[str]:
        """`code` and every court below it."""
        return self._subtrees[code]

    def scope(self, identity: Identity) -> frozenset[str]:
        """The courts whose officers, calls and records `identity` may see."""
        match identity.role:
            case Role.OFFICER | Role.OPERATOR:
                return frozenset({identity.court}) if identity.court in self else frozenset()
            case Role.SUPERVISOR | Role.ADMIN:
                return self._subtrees.get(identity.court, frozenset())
            case Role.AUDITOR:
                return self._all
            case Role.WITNESS:
                # A witness sees the one conference of their token, no court's records.
                return frozenset()

    def in_scope(self, identity: Identity, court: str) -> bool:
        return court in self.scope(identity)

    def all(self) -> frozenset[str]:
        return self._all

    def named_in(self, case_number: str) -> str | None:
        """The court whose `case_code` the Chinese case number `case_number` carries; None
        when it is no such number or names no court configured here."""
        code = court_code_in(case_number)
        return None if code is None else self._by_case_code.get(code)
