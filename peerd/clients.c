/* clients.c: the fused clients this server has heard from and the volumes
 * each has open (from their PINGs). Used to refuse deleting a volume that
 * is in use. A client not heard from for PEERD_CLIENT_EXPIRE_MS is
 * forgotten. Reactor thread only. */
#include <stdlib.h>
#include <string.h>

#include "peerd.h"

struct client {
	struct client *next;
	uint64_t id;
	uint64_t last_seen_ms;
	char **open;
	size_t nopen;
};

static struct client *clients;

static void client_free(struct client *c)
{
	for (size_t i = 0; i < c->nopen; i++)
		free(c->open[i]);
	free(c->open);
	free(c);
}

void clients_ping(uint64_t client_id, const Pv__ClientState *st)
{
	struct client *c;
	size_t n = st ? st->n_open_volumes : 0;

	for (c = clients; c; c = c->next)
		if (c->id == client_id)
			break;
	if (!c) {
		c = calloc(1, sizeof(*c));
		if (!c)
			return;
		c->id = client_id;
		c->next = clients;
		clients = c;
		pv_info("client %016llx connected", (unsigned long long)client_id);
	}
	c->last_seen_ms = pv_now_ms();
	for (size_t i = 0; i < c->nopen; i++)
		free(c->open[i]);
	free(c->open);
	c->open = NULL;
	c->nopen = 0;
	if (n > 256)
		n = 256;
	if (n && !(c->open = calloc(n, sizeof(char *))))
		return;
	for (size_t i = 0; i < n; i++) {
		if (strlen(st->open_volumes[i]) > PV_MAX_NAME)
			continue;
		c->open[c->nopen] = strdup(st->open_volumes[i]);
		if (c->open[c->nopen])
			c->nopen++;
	}
}

uint32_t clients_open_count(const char *volume)
{
	uint64_t now = pv_now_ms();
	uint32_t n = 0;

	for (struct client *c = clients; c; c = c->next) {
		if (now - c->last_seen_ms > PEERD_CLIENT_EXPIRE_MS)
			continue;
		for (size_t i = 0; i < c->nopen; i++) {
			if (!strcmp(c->open[i], volume)) {
				n++;
				break;
			}
		}
	}
	return n;
}

uint32_t clients_count(void)
{
	uint64_t now = pv_now_ms();
	uint32_t n = 0;

	for (struct client *c = clients; c; c = c->next)
		n += now - c->last_seen_ms <= PEERD_CLIENT_EXPIRE_MS;
	return n;
}

void clients_expire(void *arg)
{
	uint64_t now = pv_now_ms();

	for (struct client **cp = &clients; *cp;) {
		struct client *c = *cp;

		if (now - c->last_seen_ms > PEERD_CLIENT_EXPIRE_MS) {
			pv_info("client %016llx gone (silent for %d s)", (unsigned long long)c->id,
				PEERD_CLIENT_EXPIRE_MS / 1000);
			*cp = c->next;
			client_free(c);
		} else {
			cp = &c->next;
		}
	}
}

void clients_free(void)
{
	while (clients) {
		struct client *next = clients->next;

		client_free(clients);
		clients = next;
	}
}
