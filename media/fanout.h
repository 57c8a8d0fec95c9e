/* The C fan-out's types and functions (media/fanout.c): read by cffi as its cdef, and
   included by the compiled source, so the two cannot disagree. */

#define FANOUT_HISTORY 256

/* What a lane's last fanout_send did with the packet. */
#define FANOUT_SENT 0
#define FANOUT_SKIPPED 1
#define FANOUT_WOULD_BLOCK 2
#define FANOUT_FAILED 3
#define FANOUT_PENDING 4

/* libsrtp's srtp_protect(srtp_t, void *rtp_hdr, int *len_ptr), as pylibsrtp links it. */
typedef int (*fanout_protect_fn)(void *, void *, int *);

struct fanout_slot {
    int32_t seq;
    int32_t len;
    int32_t cap;
    uint8_t *data;
};

/* One subscriber of one publication in steady state. */
struct fanout_lane {
    int fd;
    /* Lanes with one socket_id write to one socket (sendmmsg batches them). */
    uint64_t socket_id;
    uint8_t addr[112];
    uint32_t addr_len;
    void *srtp;
    uint32_t ssrc;
    uint8_t first_byte;
    uint8_t payload_type;
    uint16_t ext_len;
    uint8_t ext[256];
    /* Renumbering's steady state: out = in + offset; -1 stands for None. */
    uint16_t seq_offset;
    uint32_t ts_offset;
    int32_t start_seq;
    int32_t last_out;
    uint32_t last_ts;
    /* VP8 temporal layers (media.temporal.Munger): frames this subscriber was not sent lower
       the PictureIDs of those it is sent by picture_offset (mod 2^15), applied to packets
       with a TID while vp8_munge is set (0 for every other lane: one branch per packet). */
    uint8_t vp8_munge;
    uint16_t picture_offset;
    /* Counts: sent by this lane; sent since the sender's counters were last updated. */
    uint64_t sent;
    uint64_t uncounted_packets;
    uint64_t uncounted_octets;
    /* The last call's outcome, its output timestamp and plain packet length. */
    int32_t status;
    uint32_t out_ts;
    int32_t plain_len;
    struct fanout_slot history[256];
};

struct fanout_totals {
    uint64_t packets;
    uint64_t bytes;
    uint64_t would_block;
};

void fanout_set_protect(fanout_protect_fn protect);
void fanout_lane_init(struct fanout_lane *lane);
void fanout_lane_free(struct fanout_lane *lane);
void fanout_lane_move_history(struct fanout_lane *to, struct fanout_lane *from);
int fanout_remember(struct fanout_lane *lane, uint16_t seq, const uint8_t *data, int len);
int fanout_recall(struct fanout_lane *lane, uint16_t seq, uint8_t *out, int cap);
int fanout_send(struct fanout_lane **lanes, int count, uint16_t seq, uint32_t timestamp,
                int marker, const uint8_t *payload, int payload_len, int batch,
                struct fanout_totals *totals);
