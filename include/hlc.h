/* hlc.h: hybrid logical clocks (Kulkarni et al., "Logical Physical Clocks",
 * 2014) as peervol uses them for timestamp-mode snapshots. A stamp is one
 * 64-bit number: the wall clock in milliseconds in the high 48 bits, a
 * counter in the low 16. Every process keeps one clock (proto/wire.c):
 * every message carries it (Header.hlc) and every receiver merges it, so a
 * stamp taken after a message arrived is later than the stamp the message
 * carried, whatever the hosts' wall clocks say. Pure functions (unit
 * check_hlc). */
#ifndef PV_HLC_H
#define PV_HLC_H

#include <stdint.h>

#define HLC_COUNTER_BITS 16
/* A stamp from more than this ahead of our wall clock is not merged: a
 * broken or hostile sender must not drag every clock into the future. */
#define HLC_MAX_AHEAD_MS 60000

/* The stamp of wall-clock ms with counter 0. */
static inline uint64_t hlc_of_ms(uint64_t ms)
{
	return ms << HLC_COUNTER_BITS;
}

/* Its wall-clock milliseconds. */
static inline uint64_t hlc_ms(uint64_t stamp)
{
	return stamp >> HLC_COUNTER_BITS;
}

/* The clock's next stamp after old, at wall-clock wall_ms: later than old,
 * and at least the wall clock. */
uint64_t hlc_next(uint64_t old, uint64_t wall_ms);

/* The clock after seeing stamp seen in a message: the later of old and
 * seen, unless seen is more than HLC_MAX_AHEAD_MS ahead of wall_ms (then
 * old). */
uint64_t hlc_merge(uint64_t old, uint64_t seen, uint64_t wall_ms);

/* Milliseconds since the epoch (CLOCK_REALTIME). */
uint64_t pv_wall_ms(void);

#endif
