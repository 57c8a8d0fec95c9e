/* The C fan-out (media/fanout.py drives it, media/fanout_build.py compiles it with cffi).

One call per received packet and publication: for every subscriber lane in steady state
(a constant sequence and timestamp offset, media.rtp.Renumbering.steady), renumber, write the
plain RTP packet into the lane's history slot (NACKs are answered from it), protect a copy with
the subscriber's own libsrtp session (the one aiortc's sender uses, so its rollover counter and
replay state stay one) and send it with sendto, or sendmmsg for lanes that share a socket.
Python's rules stay in Python: each lane reports what happened (sent, skipped as older than
its start, would block, failed) and the caller applies the slow-subscriber rule.

The lane's fields mirror Renumbering's (-1 for its None); the history is owned here. */

#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "fanout.h"

/* The scratch buffer per packet: the largest RTP packet plus libsrtp's largest trailer
   (SRTP_MAX_TRAILER_LEN: a 16-byte tag and a 128-byte MKI). */
#define FANOUT_SCRATCH 2048
#define FANOUT_TRAILER 144
#define FANOUT_HISTORY_MASK (FANOUT_HISTORY - 1)
#define FANOUT_RESTART_WINDOW 1024

static fanout_protect_fn fanout_protect;

void fanout_set_protect(fanout_protect_fn protect) { fanout_protect = protect; }

void fanout_lane_free(struct fanout_lane *lane) {
    for (int i = 0; i < FANOUT_HISTORY; i++) {
        free(lane->history[i].data);
        lane->history[i].data = NULL;
        lane->history[i].cap = 0;
        lane->history[i].seq = -1;
    }
}

void fanout_lane_init(struct fanout_lane *lane) {
    for (int i = 0; i < FANOUT_HISTORY; i++) {
        lane->history[i].seq = -1;
        lane->history[i].len = 0;
        lane->history[i].cap = 0;
        lane->history[i].data = NULL;
    }
    lane->start_seq = -1;
    lane->last_out = -1;
}

/* `from`'s history goes to `to` (which had none: a lane replacing another). */
void fanout_lane_move_history(struct fanout_lane *to, struct fanout_lane *from) {
    for (int i = 0; i < FANOUT_HISTORY; i++) {
        struct fanout_slot slot = to->history[i];
        to->history[i] = from->history[i];
        from->history[i] = slot;
    }
}

/* The slot for `seq`, grown to hold `len` bytes; NULL if memory ran out. */
static struct fanout_slot *slot_for(struct fanout_lane *lane, uint16_t seq, int len) {
    struct fanout_slot *slot = &lane->history[seq & FANOUT_HISTORY_MASK];
    if (slot->cap < len) {
        uint8_t *grown = realloc(slot->data, (size_t)len);
        if (grown == NULL) {
            slot->seq = -1;
            return NULL;
        }
        slot->data = grown;
        slot->cap = len;
    }
    slot->seq = seq;
    slot->len = len;
    return slot;
}

int fanout_remember(struct fanout_lane *lane, uint16_t seq, const uint8_t *data, int len) {
    struct fanout_slot *slot = slot_for(lane, seq, len);
    if (slot == NULL) return -1;
    memcpy(slot->data, data, (size_t)len);
    return 0;
}

int fanout_recall(struct fanout_lane *lane, uint16_t seq, uint8_t *out, int cap) {
    struct fanout_slot *slot = &lane->history[seq & FANOUT_HISTORY_MASK];
    if (slot->seq != seq || slot->len > cap) return -1;
    memcpy(out, slot->data, (size_t)slot->len);
    return slot->len;
}

/* Renumber, remember and protect one packet for `lane` into `out`; the protected length, or
   0 with lane->status set when nothing is to be sent. */
/* The PictureID of a VP8 payload descriptor (RFC 7741 section 4.2) moved down by `offset`,
   in its 7- or 15-bit form; only in a packet with a TID whose descriptor is whole, as
   media.temporal parses it (the Python path rewrites exactly those). */
static void lower_picture_id(uint8_t *d, int len, uint16_t offset) {
    if (len < 2 || !(d[0] & 0x80)) return;
    uint8_t ext = d[1];
    if (!(ext & 0x80) || !(ext & 0x20)) return; /* I (PictureID) and T (TID) */
    int id_len = (len > 2 && (d[2] & 0x80)) ? 2 : 1;
    int need = 2 + id_len + ((ext & 0x40) ? 1 : 0) + 1;
    if (len < need) return;
    if (id_len == 2) {
        uint16_t id = (uint16_t)(((((d[2] & 0x7F) << 8) | d[3]) - offset) & 0x7FFF);
        d[2] = (uint8_t)(0x80 | (id >> 8));
        d[3] = (uint8_t)id;
    } else {
        d[2] = (uint8_t)((d[2] - offset) & 0x7F);
    }
}

static int prepare(struct fanout_lane *lane, uint16_t seq, uint32_t timestamp, int marker,
                   const uint8_t *payload, int payload_len, uint8_t *out) {
    if (lane->start_seq >= 0) {
        /* Renumbering.map: older than the (re)start is never forwarded; far past it, the
           start is forgotten. */
        int behind = (lane->start_seq - seq) & 0xFFFF;
        if (behind > 0 && behind < 0x8000) {
            lane->status = FANOUT_SKIPPED;
            return 0;
        }
        if (0x10000 - behind > FANOUT_RESTART_WINDOW) lane->start_seq = -1;
    }
    uint16_t out_seq = (uint16_t)(seq + lane->seq_offset);
    if (lane->last_out < 0) {
        lane->last_out = out_seq;
    } else {
        int ahead = (out_seq - lane->last_out) & 0xFFFF;
        if (ahead > 0 && ahead < 0x8000) lane->last_out = out_seq;
    }
    uint32_t out_ts = timestamp + lane->ts_offset;
    lane->last_ts = out_ts;
    lane->out_ts = out_ts;

    int len = 12 + lane->ext_len + payload_len;
    if (len + FANOUT_TRAILER > FANOUT_SCRATCH) {
        lane->status = FANOUT_FAILED;
        return 0;
    }
    struct fanout_slot *slot = slot_for(lane, out_seq, len);
    if (slot == NULL) {
        lane->status = FANOUT_FAILED;
        return 0;
    }
    uint8_t *p = slot->data;
    p[0] = lane->first_byte;
    p[1] = (uint8_t)((marker ? 0x80 : 0) | lane->payload_type);
    p[2] = (uint8_t)(out_seq >> 8);
    p[3] = (uint8_t)out_seq;
    p[4] = (uint8_t)(out_ts >> 24);
    p[5] = (uint8_t)(out_ts >> 16);
    p[6] = (uint8_t)(out_ts >> 8);
    p[7] = (uint8_t)out_ts;
    p[8] = (uint8_t)(lane->ssrc >> 24);
    p[9] = (uint8_t)(lane->ssrc >> 16);
    p[10] = (uint8_t)(lane->ssrc >> 8);
    p[11] = (uint8_t)lane->ssrc;
    memcpy(p + 12, lane->ext, lane->ext_len);
    memcpy(p + 12 + lane->ext_len, payload, (size_t)payload_len);
    if (lane->vp8_munge) lower_picture_id(p + 12 + lane->ext_len, payload_len, lane->picture_offset);

    memcpy(out, p, (size_t)len);
    int protected_len = len;
    if (fanout_protect(lane->srtp, out, &protected_len) != 0) {
        lane->status = FANOUT_FAILED;
        return 0;
    }
    lane->plain_len = len;
    return protected_len;
}

static void sent(struct fanout_lane *lane, int payload_len, struct fanout_totals *totals) {
    lane->status = FANOUT_SENT;
    lane->sent += 1;
    lane->uncounted_packets += 1;
    lane->uncounted_octets += (uint64_t)payload_len;
    totals->packets += 1;
    totals->bytes += (uint64_t)lane->plain_len;
}

static void not_sent(struct fanout_lane *lane, int err, struct fanout_totals *totals) {
    if (err == EAGAIN || err == EWOULDBLOCK) {
        lane->status = FANOUT_WOULD_BLOCK;
        totals->would_block += 1;
    } else {
        lane->status = FANOUT_FAILED;
    }
}

#define FANOUT_BATCH 64

/* Packets prepared for one socket, sent with one sendmmsg. */
struct batch {
    int n;
    struct fanout_lane *lanes[FANOUT_BATCH];
    struct mmsghdr msgs[FANOUT_BATCH];
    struct iovec iovs[FANOUT_BATCH];
    uint8_t scratch[FANOUT_BATCH][FANOUT_SCRATCH];
};

static void flush(struct batch *b, int payload_len, struct fanout_totals *totals) {
    if (b->n == 1) {
        /* A socket of its own (aiortc's case): sendto, one less indirection. */
        struct fanout_lane *lane = b->lanes[0];
        if (sendto(lane->fd, b->scratch[0], b->iovs[0].iov_len, MSG_DONTWAIT,
                   (const struct sockaddr *)lane->addr, lane->addr_len) < 0) {
            not_sent(lane, errno, totals);
        } else {
            sent(lane, payload_len, totals);
        }
        b->n = 0;
        return;
    }
    for (int done = 0; done < b->n;) {
        int r = sendmmsg(b->lanes[done]->fd, b->msgs + done, (unsigned)(b->n - done),
                         MSG_DONTWAIT);
        if (r <= 0) {
            /* The first unsent message failed: report it and go on with the next (none
               sent without an error would loop for ever: take it for a full buffer). */
            not_sent(b->lanes[done], r < 0 ? errno : EAGAIN, totals);
            done += 1;
            continue;
        }
        for (int k = done; k < done + r; k++) sent(b->lanes[k], payload_len, totals);
        done += r;
    }
    b->n = 0;
}

/* One thread at a time (the event loop's): the batch's buffers are static. */
int fanout_send(struct fanout_lane **lanes, int count, uint16_t seq, uint32_t timestamp,
                int marker, const uint8_t *payload, int payload_len, int batch,
                struct fanout_totals *totals) {
    static struct batch b;
    totals->packets = 0;
    totals->bytes = 0;
    totals->would_block = 0;
    if (fanout_protect == NULL) return -1;
    b.n = 0;
    for (int i = 0; i < count; i++) {
        struct fanout_lane *lane = lanes[i];
        if (!batch) {
            int len = prepare(lane, seq, timestamp, marker, payload, payload_len, b.scratch[0]);
            if (len == 0) continue;
            if (sendto(lane->fd, b.scratch[0], (size_t)len, MSG_DONTWAIT,
                       (const struct sockaddr *)lane->addr, lane->addr_len) < 0) {
                not_sent(lane, errno, totals);
            } else {
                sent(lane, payload_len, totals);
            }
            continue;
        }
        /* A batch holds lanes of one socket: a lane of another sends it first. */
        if (b.n > 0 && (b.n == FANOUT_BATCH || b.lanes[0]->socket_id != lane->socket_id)) {
            flush(&b, payload_len, totals);
        }
        int len = prepare(lane, seq, timestamp, marker, payload, payload_len, b.scratch[b.n]);
        if (len == 0) continue;
        lane->status = FANOUT_PENDING;
        b.iovs[b.n].iov_base = b.scratch[b.n];
        b.iovs[b.n].iov_len = (size_t)len;
        memset(&b.msgs[b.n], 0, sizeof(b.msgs[b.n]));
        b.msgs[b.n].msg_hdr.msg_name = lane->addr;
        b.msgs[b.n].msg_hdr.msg_namelen = lane->addr_len;
        b.msgs[b.n].msg_hdr.msg_iov = &b.iovs[b.n];
        b.msgs[b.n].msg_hdr.msg_iovlen = 1;
        b.lanes[b.n++] = lane;
    }
    if (b.n > 0) flush(&b, payload_len, totals);
    return 0;
}
