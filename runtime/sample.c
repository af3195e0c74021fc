/* sample.c - token samplers over a logit vector, with a caller-held splitmix64 state:
 * greedy argmax, temperature sampling and nucleus (top-p) sampling.  No allocation:
 * top-p uses the caller's scratch buffer to sort the candidates, or, without one,
 * finds the nucleus threshold by bisection over the logit values.
 * Both paths define the nucleus the same way -- every token whose logit is >= l*,
 * where l* is the largest logit value whose tokens at or above it hold at least
 * top_p of the mass -- and draw within it in index order, so for the same rng they
 * return the same token. */
#include "runtime/elide_rt.h"

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

uint64_t
elide_rng_next(uint64_t *state)
{
	uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
	return z ^ (z >> 31);
}

float
elide_rng_float(uint64_t *state)
{
	return (float)(elide_rng_next(state) >> 40) * (1.0f / 16777216.0f);
}

int32_t
elide_sample_argmax(const float *logits, int32_t n)
{
	int32_t best = -1; /* no token: all NaN, or none */
	float bv = -INFINITY;
	bool found = false;
	if (!logits)
		return -1;
	for (int32_t i = 0; i < n; i++) {
		float v = logits[i];
		if (isnan(v))
			continue;
		if (!found || v > bv) {
			bv = v;
			best = i;
			found = true;
		}
	}
	return best;
}

static float
max_logit(const float *l, int32_t n)
{
	float m = -INFINITY;
	for (int32_t i = 0; i < n; i++)
		if (l[i] > m)
			m = l[i];
	return m;
}

/* Unnormalised probability of logit v. */
static inline double
weight(float v, float max, float inv_t)
{
	return isnan(v) ? 0.0 : exp((double)(v - max) * inv_t);
}

/* Draws among the tokens with logit >= cut (index order), total = their mass. */
static int32_t
draw(const float *l, int32_t n, float cut, float max, float inv_t, double total, uint64_t *rng)
{
	double u = (double)elide_rng_float(rng) * total, acc = 0;
	int32_t last = -1;
	for (int32_t i = 0; i < n; i++) {
		if (!(l[i] >= cut))
			continue;
		acc += weight(l[i], max, inv_t);
		last = i;
		if (u < acc)
			return i;
	}
	return last >= 0 ? last : elide_sample_argmax(l, n);
}

/* Mass of the tokens with logit >= cut. */
static double
mass_above(const float *l, int32_t n, float cut, float max, float inv_t)
{
	double s = 0;
	for (int32_t i = 0; i < n; i++)
		if (l[i] >= cut)
			s += weight(l[i], max, inv_t);
	return s;
}

int32_t
elide_sample_temperature(const float *logits, int32_t n, float temperature, uint64_t *rng)
{
	if (!logits || n <= 0)
		return -1;
	if (!(temperature > 0) || !rng)
		return elide_sample_argmax(logits, n);
	float max = max_logit(logits, n);
	if (!isfinite(max))
		return elide_sample_argmax(logits, n);
	float inv_t = 1.0f / temperature;
	double total = mass_above(logits, n, -INFINITY, max, inv_t);
	return draw(logits, n, -INFINITY, max, inv_t, total, rng);
}

/* Order-preserving map of a float to an unsigned integer (for bisection). */
static uint32_t
f2key(float f)
{
	uint32_t u;
	memcpy(&u, &f, 4);
	return (u & 0x80000000u) ? ~u : u | 0x80000000u;
}

static float
key2f(uint32_t k)
{
	uint32_t u = (k & 0x80000000u) ? k & 0x7fffffffu : ~k;
	float f;
	memcpy(&f, &u, 4);
	return f;
}

/* The nucleus cut by bisection: the largest logit value v with mass_above(v) >= need. */
static float
cut_bisect(const float *l, int32_t n, float max, float inv_t, double need)
{
	float min = INFINITY;
	for (int32_t i = 0; i < n; i++)
		if (l[i] < min)
			min = l[i];
	uint32_t lo = f2key(min), hi = f2key(max); /* mass_above(lo) >= need always */
	while (lo < hi) {
		uint32_t mid = lo + (hi - lo + 1) / 2;
		if (mass_above(l, n, key2f(mid), max, inv_t) >= need)
			lo = mid;
		else
			hi = mid - 1;
	}
	/* lo may fall between logits; the cut is the smallest logit >= it */
	float v = key2f(lo), cut = INFINITY;
	for (int32_t i = 0; i < n; i++)
		if (l[i] >= v && l[i] < cut)
			cut = l[i];
	return cut;
}

typedef struct Cand {
	float logit;
	int32_t index;
} Cand;

static int
cand_desc(const void *a, const void *b)
{
	const Cand *x = a, *y = b;
	if (x->logit != y->logit)
		return x->logit < y->logit ? 1 : -1;
	return x->index - y->index;
}

/* The nucleus cut by sorting the tokens that can be in it. */
static float
cut_sorted(const float *l, int32_t n, float max, float inv_t, double total, double need, Cand *c)
{
	/* a token of probability below (1 - p) / (n - 1) is never needed: all such
	 * tokens together hold less than 1 - p.  Keep the threshold conservative. */
	double minw = n > 1 ? (total - need) / (double)(n - 1) * 0.5 : 0;
	int32_t m = 0;
	for (int32_t i = 0; i < n; i++)
		if (!isnan(l[i]) && weight(l[i], max, inv_t) >= minw)
			c[m++] = (Cand){ l[i], i };
	qsort(c, (size_t)m, sizeof *c, cand_desc);
	double acc = 0;
	for (int32_t k = 0; k < m; k++) {
		/* add the whole group of equal logits at once: the cut is a logit value */
		int32_t e = k;
		double g = 0;
		while (e < m && c[e].logit == c[k].logit)
			g += weight(c[e++].logit, max, inv_t);
		acc += g;
		if (acc >= need)
			return c[k].logit;
		k = e - 1;
	}
	return m > 0 ? c[m - 1].logit : max;
}

int32_t
elide_sample_top_p(const float *logits, int32_t n, float temperature, float top_p, uint64_t *rng,
                   void *scratch, size_t scratch_size)
{
	if (!logits || n <= 0)
		return -1;
	if (!(temperature > 0) || !(top_p > 0) || !rng)
		return elide_sample_argmax(logits, n);
	if (top_p >= 1)
		return elide_sample_temperature(logits, n, temperature, rng);
	float max = max_logit(logits, n);
	if (!isfinite(max))
		return elide_sample_argmax(logits, n);
	float inv_t = 1.0f / temperature;
	double total = mass_above(logits, n, -INFINITY, max, inv_t);
	double need = (double)top_p * total;
	float cut;
	if (scratch && scratch_size >= ELIDE_TOP_P_SCRATCH(n) && (uintptr_t)scratch % 4 == 0)
		cut = cut_sorted(logits, n, max, inv_t, total, need, scratch);
	else
		cut = cut_bisect(logits, n, max, inv_t, need);
	return draw(logits, n, cut, max, inv_t, mass_above(logits, n, cut, max, inv_t), rng);
}
