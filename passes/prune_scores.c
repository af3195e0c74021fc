/* prune_scores.c - the scores of structured pruning, over plain float matrices.
 * Width units (FFN neurons, heads, KV groups) are scored from their weights:
 * L1 and L2 magnitude, MAW (max |W_up[k,:]| + max |W_gate[k,:]|, Width Pruning
 * Dichotomy), and the Wanda-like activation-weighted magnitude sum |w_ij| ||X_j||.
 * Layers are scored from hidden states: the angular distance of Gromov et al.
 * (arccos of the cosine between states n layers apart, over pi) and ShortGPT's
 * block influence (1 - E[cos(x_l, x_{l+1})]).  Sums are in double.  Also the
 * selection helpers: top-k with ties to the lower index, the best layer block, and
 * the kept-count rounding. */
#include "passes/prune.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Calls fn(w_ij, j) for every weight of the span. */
#define SPAN_FOR(s, W, J, BODY)                                                        \
	do {                                                                               \
		int64_t r0_ = (s)->cols_axis ? 0 : (s)->start;                                 \
		int64_t r1_ = (s)->cols_axis ? (s)->rows : (s)->start + (s)->len;              \
		int64_t c0_ = (s)->cols_axis ? (s)->start : 0;                                 \
		int64_t c1_ = (s)->cols_axis ? (s)->start + (s)->len : (s)->cols;              \
		for (int64_t i_ = r0_; i_ < r1_; i_++)                                         \
			for (int64_t J = c0_; J < c1_; J++) {                                      \
				double W = (s)->w[i_ * (s)->cols + J];                                 \
				BODY;                                                                  \
			}                                                                          \
	} while (0)

double
prune_span_max(const PruneSpan *s)
{
	double m = 0;
	SPAN_FOR(s, w, j, {
		(void)j;
		if (fabs(w) > m)
			m = fabs(w);
	});
	return m;
}

double
prune_unit_score(const PruneSpan *s, uint32_t n, PruneScore sc)
{
	double acc = 0;
	for (uint32_t k = 0; k < n; k++) {
		const PruneSpan *p = &s[k];
		switch (sc) {
		case PS_L1:
			SPAN_FOR(p, w, j, { (void)j; acc += fabs(w); });
			break;
		case PS_L2:
			SPAN_FOR(p, w, j, { (void)j; acc += w * w; });
			break;
		case PS_ACT:
			SPAN_FOR(p, w, j, { acc += fabs(w) * (p->xnorm ? p->xnorm[j] : 1.0); });
			break;
		case PS_MAW:
			acc += prune_span_max(p);
			break;
		default:
			return 0;
		}
	}
	return sc == PS_L2 ? sqrt(acc) : acc;
}

double
prune_cos(const float *a, const float *b, int64_t n)
{
	double ab = 0, aa = 0, bb = 0;
	for (int64_t i = 0; i < n; i++) {
		ab += (double)a[i] * b[i];
		aa += (double)a[i] * a[i];
		bb += (double)b[i] * b[i];
	}
	if (aa == 0 || bb == 0)
		return 0;
	double c = ab / sqrt(aa * bb);
	return c > 1 ? 1 : c < -1 ? -1 : c;
}

double
prune_angular(const float *a, const float *b, int64_t rows, int64_t cols)
{
	if (rows <= 0)
		return 0;
	double acc = 0;
	for (int64_t r = 0; r < rows; r++)
		acc += acos(prune_cos(a + r * cols, b + r * cols, cols)) / M_PI;
	return acc / (double)rows;
}

double
prune_bi(const float *a, const float *b, int64_t rows, int64_t cols)
{
	if (rows <= 0)
		return 0;
	double acc = 0;
	for (int64_t r = 0; r < rows; r++)
		acc += prune_cos(a + r * cols, b + r * cols, cols);
	return 1.0 - acc / (double)rows;
}

typedef struct Ranked {
	double score;
	int64_t index;
} Ranked;

/* Highest score first; ties to the lower index. */
static int
rank_cmp(const void *pa, const void *pb)
{
	const Ranked *a = pa, *b = pb;
	if (a->score != b->score)
		return a->score > b->score ? -1 : 1;
	return (a->index > b->index) - (a->index < b->index);
}

int64_t
prune_select(const double *score, int64_t n, const bool *cand, int64_t keep, bool *kept)
{
	Ranked *r = xmalloc((size_t)(n > 0 ? n : 1) * sizeof *r);
	int64_t ncand = 0;
	for (int64_t i = 0; i < n; i++) {
		kept[i] = true;
		if (!cand || cand[i])
			r[ncand++] = (Ranked){ score[i], i };
	}
	qsort(r, (size_t)ncand, sizeof *r, rank_cmp);
	int64_t drop = 0;
	for (int64_t k = keep < 0 ? 0 : keep; k < ncand; k++, drop++)
		kept[r[k].index] = false;
	free(r);
	return drop;
}

int64_t
prune_best_block(const double *dist, int64_t nlayers, const bool *cand, int64_t n)
{
	int64_t best = -1;
	for (int64_t s = 0; s + n <= nlayers; s++) {
		bool fits = true;
		for (int64_t k = s; k < s + n && fits; k++)
			fits = !cand || cand[k];
		if (fits && (best < 0 || dist[s] <= dist[best]))
			best = s;
	}
	return best;
}

int64_t
prune_keep_count(double keep, bool is_count, int64_t width, int64_t multiple)
{
	int64_t k = is_count ? (int64_t)keep : (int64_t)floor(keep * (double)width + 0.5);
	if (k < 1)
		return 0;
	if (k > width)
		k = width;
	if (multiple > 1) {
		k = (k + multiple / 2) / multiple * multiple;
		if (k < multiple)
			k = multiple;
		if (k > width)
			k = width;
	}
	return k;
}
