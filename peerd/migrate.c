/* migrate.c: STUB while being written (lead). */
#include <stdio.h>
#include <string.h>

#include "peerd.h"

const char *migrate_state_name(enum mig_state s)
{
	static const char *const names[] = {"queued",	 "starting", "copying",
					    "switching", "punching", "incoming"};

	return (unsigned)s < sizeof(names) / sizeof(names[0]) ? names[s] : "unknown";
}

enum mig_route migrate_route(enum mig_state st, uint32_t p, uint32_t k, uint32_t op)
{
	switch (st) {
	case MIG_QUEUED:
	case MIG_BEGIN:
		return MIG_ROUTE_LOCAL; /* nothing copied yet */
	case MIG_COPYING:
		switch (pv_piece_at(p, k)) {
		case PV_PIECE_SOURCE:
			return MIG_ROUTE_LOCAL;
		case PV_PIECE_BOTH:
			return op == PV_OP_READ ? MIG_ROUTE_LOCAL : MIG_ROUTE_BOTH;
		case PV_PIECE_TARGET:
			return MIG_ROUTE_TARGET;
		}
		break;
	default:
		break;
	}
	return MIG_ROUTE_TARGET; /* switching or switched: every piece is at the target */
}

int migrate_load(void)
{
	return 0;
}

void migrate_tick(void *arg)
{
	(void)arg;
}

int migrate_start(struct volume *vol, uint64_t page, uint32_t to, uint32_t piece_size, char *err,
		  size_t errlen)
{
	(void)vol, (void)page, (void)to, (void)piece_size;
	snprintf(err, errlen, "not implemented yet");
	return -1;
}

int migrate_request(const char *volume, uint64_t first, uint64_t last, uint32_t to,
		    uint32_t piece_size, migrate_done_fn done, void *arg, char *err, size_t errlen)
{
	(void)volume, (void)first, (void)last, (void)to, (void)piece_size, (void)done, (void)arg;
	snprintf(err, errlen, "not implemented yet");
	return -1;
}

unsigned migrate_out_count(void)
{
	return 0;
}

size_t migrate_list(struct migrate_info *out, size_t max)
{
	(void)out, (void)max;
	return 0;
}

int migrate_page_state(const struct volume *vol, uint64_t page, struct migrate_info *info)
{
	(void)vol, (void)page, (void)info;
	return 0;
}

void migrate_heartbeat_fill(Pv__Heartbeat *hb)
{
	(void)hb;
}

void migrate_heartbeat_free(Pv__Heartbeat *hb)
{
	(void)hb;
}

void migrate_peer_op(const struct origin *from, const Pv__Header *h, const void *body, size_t len)
{
	(void)body, (void)len;
	reply_status(from, h, PV_ST_BAD_REQUEST, "not implemented yet");
}

void migrate_peer_reply(struct member *m, const Pv__Header *h, const void *body, size_t len)
{
	(void)m, (void)h, (void)body, (void)len;
}

int migrate_route_learn(struct volume *vol, uint64_t page, uint32_t owner, uint64_t epoch)
{
	if (owner == srv->cfg.id || !pv_route_newer(vol->epoch[page], epoch))
		return 0;
	catalog_route_set(vol, page, owner, (uint32_t)epoch);
	return 1;
}

void migrate_routes_fetch(struct member *m)
{
	(void)m;
}

void migrate_free(void)
{
}
