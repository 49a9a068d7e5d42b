/* hlc.c: hybrid logical clock arithmetic (include/hlc.h). Pure but for
 * pv_wall_ms. */
#include <time.h>

#include "hlc.h"

uint64_t hlc_next(uint64_t old, uint64_t wall_ms)
{
	uint64_t wall = hlc_of_ms(wall_ms);

	return wall > old ? wall : old + 1;
}

uint64_t hlc_merge(uint64_t old, uint64_t seen, uint64_t wall_ms)
{
	if (seen <= old || hlc_ms(seen) > wall_ms + HLC_MAX_AHEAD_MS)
		return old;
	return seen;
}

uint64_t pv_wall_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}
