/* placement.c: where pages should be (server evacuate, volume set-servers,
 * group set-weight) and the moves that get them there; the group's
 * migration settings. STUB: being written. */
#include <stdio.h>

#include "peerd.h"

static int not_yet(char *err, size_t errlen)
{
	snprintf(err, errlen, "not implemented yet");
	return -1;
}

int catalog_volume_set_servers(const char *name, const uint32_t *servers, size_t n,
			       catalog_done_fn done, void *arg, char *err, size_t errlen)
{
	(void)name, (void)servers, (void)n, (void)done, (void)arg;
	return not_yet(err, errlen);
}

int catalog_member_set_weight(uint32_t id, uint32_t weight, catalog_done_fn done, void *arg,
			      char *err, size_t errlen)
{
	(void)id, (void)weight, (void)done, (void)arg;
	return not_yet(err, errlen);
}

int catalog_member_drain(uint32_t id, int on, catalog_done_fn done, void *arg, char *err,
			 size_t errlen)
{
	(void)id, (void)on, (void)done, (void)arg;
	return not_yet(err, errlen);
}

int catalog_migrate_settings(int64_t max_mbps, int paused, catalog_done_fn done, void *arg,
			     char *err, size_t errlen)
{
	(void)max_mbps, (void)paused, (void)done, (void)arg;
	return not_yet(err, errlen);
}

void placement_tick(void *arg)
{
	(void)arg;
}
