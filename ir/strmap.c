/* strmap.c - a string-keyed index: name -> uint32_t, open addressing with linear
 * probing on a power-of-two table kept at most half full (FNV-1a of the key).  It
 * makes name lookups of the front end, the textual-IR parser and the verifier
 * constant time, so 100,000 declarations, values or params take linear time.  Keys
 * are borrowed: they must outlive the map. */
#include "ir/ir.h"

#include <stdlib.h>
#include <string.h>

static uint64_t
fnv1a(const char *s)
{
	uint64_t h = 0xcbf29ce484222325ull;
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 0x100000001b3ull;
	return h;
}

int64_t
strmap_get(const StrMap *m, const char *key)
{
	if (!m->cap)
		return -1;
	for (uint32_t i = (uint32_t)fnv1a(key) & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
		if (!m->keys[i])
			return -1;
		if (strcmp(m->keys[i], key) == 0)
			return m->vals[i];
	}
}

static void
grow(StrMap *m)
{
	uint32_t cap = m->cap ? 2 * m->cap : 64;
	const char **keys = xcalloc(cap, sizeof *keys);
	uint32_t *vals = xcalloc(cap, sizeof *vals);
	for (uint32_t k = 0; k < m->cap; k++) {
		if (!m->keys[k])
			continue;
		uint32_t i = (uint32_t)fnv1a(m->keys[k]) & (cap - 1);
		while (keys[i])
			i = (i + 1) & (cap - 1);
		keys[i] = m->keys[k];
		vals[i] = m->vals[k];
	}
	free(m->keys);
	free(m->vals);
	m->keys = keys;
	m->vals = vals;
	m->cap = cap;
}

bool
strmap_add(StrMap *m, const char *key, uint32_t val)
{
	if (2 * (m->n + 1) > m->cap)
		grow(m);
	uint32_t i = (uint32_t)fnv1a(key) & (m->cap - 1);
	for (; m->keys[i]; i = (i + 1) & (m->cap - 1))
		if (strcmp(m->keys[i], key) == 0)
			return false;
	m->keys[i] = key;
	m->vals[i] = val;
	m->n++;
	return true;
}

void
strmap_clear(StrMap *m)
{
	if (m->cap)
		memset(m->keys, 0, m->cap * sizeof *m->keys);
	m->n = 0;
}

void
strmap_free(StrMap *m)
{
	free(m->keys);
	free(m->vals);
	memset(m, 0, sizeof *m);
}
