/*
 * Whom the desk's picker (邀请参会) offers a moderator to ring into the conference open there:
 * the signed-in users the console already knows (the officers of the roster, the operators
 * of `get_operators` and `operator_status`), of courts at or below the moderator's, who are
 * not the moderator, not a site of it and not rung for it already. Pure: the store and the
 * view hand it what they hold, so what it decides does not hang on the DOM.
 *
 * Supervisors and administrators are not in the roster nor in the operators' lists: the
 * console cannot know them, so they are invited by their id (a query shaped like an id
 * offers it as it is; the server checks it as for any invitation).
 */

import type { InvitationInfo, OperatorEntry, RosterEntry, UserInfo } from "./protocol";

/** A user the picker lists, with the state shown beside the name. */
export interface Candidate {
  user: UserInfo;
  /** An officer's presence (`online`, `away`) or an operator's status (`free`, `busy`, `away`). */
  state: string;
}

export interface InvitableInput {
  me: string | undefined;
  /** The court codes at or below the moderator's. */
  scope: ReadonlySet<string>;
  roster: Iterable<RosterEntry>;
  operators: Iterable<OperatorEntry>;
  /** Who is in the conference now (its sites, by user id). */
  sites: ReadonlySet<string>;
  invitations: Iterable<InvitationInfo>;
}

// An invitation in these states still rings or was answered by joining: the server refuses
// to ring the user again, so the picker does not offer them. Declined, unanswered and
// withdrawn invitations may be sent again (docs/protocol.md, *Invitation states*).
const PENDING = new Set(["ringing", "joined"]);
// What a user id may look like to be offered as typed (ids are ASCII, names mostly not).
const ID_SHAPE = /^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$/;

/** Everyone the moderator may invite now, by name. */
export function invitable(input: InvitableInput): Candidate[] {
  const taken = new Set(input.sites);
  for (const i of input.invitations) if (i.kind === "user" && PENDING.has(i.state)) taken.add(i.invitee);
  if (input.me) taken.add(input.me);
  const found = new Map<string, Candidate>();
  const offer = (user: UserInfo, state: string): void => {
    if (taken.has(user.id) || !input.scope.has(user.court) || found.has(user.id)) return;
    found.set(user.id, { user, state });
  };
  for (const e of input.roster) if (e.status !== "offline") offer(e.officer, e.status);
  for (const e of input.operators) if (e.status !== "offline") offer(e.user, e.status);
  return [...found.values()].sort((a, b) => a.user.name.localeCompare(b.user.name, "zh-CN") || a.user.id.localeCompare(b.user.id));
}

/** The candidates a query names: by part of the name or of the id, those whose name starts
 * with it first. */
export function matching(candidates: Candidate[], query: string): Candidate[] {
  const q = query.trim().toLowerCase();
  if (!q) return [];
  const hits = candidates.filter((c) => c.user.name.toLowerCase().includes(q) || c.user.id.toLowerCase().includes(q));
  const starts = (c: Candidate): number => (c.user.name.toLowerCase().startsWith(q) || c.user.id.toLowerCase() === q ? 0 : 1);
  return hits.sort((a, b) => starts(a) - starts(b));
}

/** The query as an id to invite as typed: only when it looks like one and names no one the
 * console knows and excludes (a site, one rung already, someone out of scope). */
export function typedId(query: string, candidates: Candidate[], known: (id: string) => boolean): string | null {
  const q = query.trim();
  if (!ID_SHAPE.test(q)) return null;
  if (candidates.some((c) => c.user.id === q)) return null;
  return known(q) ? null : q;
}

/** The courts at or below `court` in the configured tree (just `court` when none is known). */
export function courtsBelow(court: string, courts: { code: string; parent: string | null }[]): Set<string> {
  const scope = new Set([court]);
  let grew = true;
  while (grew) {
    grew = false;
    for (const c of courts) {
      if (c.parent !== null && scope.has(c.parent) && !scope.has(c.code)) {
        scope.add(c.code);
        grew = true;
      }
    }
  }
  return scope;
}
