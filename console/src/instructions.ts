/*
 * The instructions this console follows (docs/protocol.md, "Instructions"): those still
 * valid of the courts in our scope, with their receipts, from `list_instructions` after every
 * welcome (updates sent while we were away are not replayed) and kept current by
 * `instruction_update` and `receipt_update`. Paged: the newest PAGE first, older ones a page
 * at a time when asked for (`older`, `before` the oldest we have). The store owns one; views
 * read it.
 */

/** Instructions asked for at a time. */
export const INSTRUCTIONS_PAGE = 10;

import type { Hub, InstructionInfo, RecipientInfo } from "./protocol";

export type InstructionTarget = { officer: string } | { court: string };

export class InstructionBook {
  /** Instruction id -> the instruction with its receipts. */
  readonly byId = new Map<string, InstructionInfo>();
  /** How many list replies arrived (a test can tell a fresh one from the last). */
  listReplies = 0;
  /** Older instructions remain at the server, not listed here yet. */
  more = false;

  constructor(private readonly hub: Hub) {}

  /** Newest first. */
  all(): InstructionInfo[] {
    return [...this.byId.values()].sort((a, b) => b.sent_at - a.sent_at || b.instruction_id.localeCompare(a.instruction_id));
  }

  /** The newest page again (after a welcome: what we had may be stale). */
  async refresh(): Promise<void> {
    const reply = await this.hub.request("list_instructions", { limit: INSTRUCTIONS_PAGE });
    this.byId.clear();
    for (const info of reply.instructions as InstructionInfo[]) this.byId.set(info.instruction_id, info);
    this.more = reply.more === true;
    this.listReplies += 1;
  }

  /** The page before the oldest we have. */
  async older(): Promise<void> {
    const all = this.all();
    const oldest = all[all.length - 1];
    if (!oldest) return this.refresh();
    const reply = await this.hub.request("list_instructions", { before: oldest.instruction_id, limit: INSTRUCTIONS_PAGE });
    for (const info of reply.instructions as InstructionInfo[]) this.byId.set(info.instruction_id, info);
    this.more = reply.more === true;
    this.listReplies += 1;
  }

  updated(info: InstructionInfo): void {
    this.byId.set(info.instruction_id, info);
  }

  /** One recipient's receipt (or a late officer of a court-wide instruction, `sent`). */
  receipt(instructionId: string, recipient: RecipientInfo): void {
    const info = this.byId.get(instructionId);
    if (!info) return; // sent before we listed: the next list has it
    const others = info.recipients.filter((r) => r.officer.id !== recipient.officer.id);
    const recipients = [...others, recipient].sort((a, b) => a.officer.id.localeCompare(b.officer.id));
    this.byId.set(instructionId, { ...info, recipients });
  }

  /** Sends it; resolves with its id (its instruction_update comes as a push). */
  async send(target: InstructionTarget, text: string): Promise<string> {
    const reply = await this.hub.request("send_instruction", { ...target, text });
    return String(reply.instruction_id);
  }
}

export function counts(info: InstructionInfo): { n: number; delivered: number; read: number } {
  const n = info.recipients.length;
  const read = info.recipients.filter((r) => r.state === "read").length;
  const delivered = info.recipients.filter((r) => r.state !== "sent").length;
  return { n, delivered, read };
}
