/* pick.c: which holder of a volume fused sends the volume's requests to
 * when it routes the volume (at start, and when its server stops holding
 * a page of it). Pure: catalog.c gives it what the catalog says of each
 * holder and connects to the answer; unit tested (check_fused_pick). Any
 * thread; no state. Later moves are the group's (a PING answer,
 * catalog_move). */
#include "fused.h"

static const struct pick_holder *find(const struct pick_holder *h, size_t n, uint32_t id)
{
	for (size_t i = 0; id && i < n; i++)
		if (h[i].id == id && h[i].known)
			return &h[i];
	return NULL;
}

uint32_t pick_route(const struct pick_holder *h, size_t n, uint32_t forced, uint32_t advised,
		    uint32_t from, uint64_t client_id)
{
	const struct pick_holder *local = NULL;

	if (!n)
		return 0;
	/* 1. the administrator's choice */
	if (find(h, n, forced))
		return forced;
	/* 2. a holder on this host that is not overloaded: the group's
	 * choice, or the server asked, if either is one; else the first */
	for (size_t i = 0; i < n; i++) {
		if (!h[i].known || !h[i].local || h[i].over)
			continue;
		if (h[i].id == advised || (h[i].id == from && (!local || local->id != advised)) ||
		    !local)
			local = &h[i];
	}
	if (local)
		return local->id;
	/* 3. the group's choice: the least loaded (peerd/connbal.c) */
	if (find(h, n, advised))
		return advised;
	/* 4. servers that give no advice: the server asked, else by client id */
	if (find(h, n, from))
		return from;
	return h[client_id % n].id;
}
