/* test_prune_scores.c - the structured-pruning scores on small hand-computed
 * matrices: L1, L2, MAW and activation-weighted magnitude of FFN neurons (rows of
 * up/gate, columns of down), cosine, angular distance and block influence of
 * hidden states, top-k selection with ties, the best layer block and the rounding
 * of kept widths.  Expected values are worked out by hand in the comments. */
#include <criterion/criterion.h>
#include <math.h>

#include "passes/prune.h"

/* ffn = 3, dim = 2 */
static const float up[3 * 2] = { 1, -2, 0.5f, 0.5f, -3, 0 };
static const float gate[3 * 2] = { 0, 1, 2, -1, 0, 0 };
static const float down[2 * 3] = { 1, 0, -1, 2, 1, 0 };
static const double xin[2] = { 2, 0.5 };       /* norms of the FFN input features */
static const double xmid[3] = { 1, 3, 0.5 };   /* norms of the down projection inputs */

static void
unit_spans(int64_t k, PruneSpan s[3], bool act)
{
	s[0] = (PruneSpan){ up, 3, 2, false, k, 1, act ? xin : NULL };
	s[1] = (PruneSpan){ gate, 3, 2, false, k, 1, act ? xin : NULL };
	s[2] = (PruneSpan){ down, 2, 3, true, k, 1, act ? xmid : NULL };
}

static double
score(int64_t k, PruneScore sc)
{
	PruneSpan s[3];
	unit_spans(k, s, sc == PS_ACT);
	return prune_unit_score(s, sc == PS_MAW ? 2 : 3, sc);
}

Test(prune_scores, l1)
{
	/* unit 0: |1|+|-2| + |0|+|1| + |1|+|2| = 7; unit 1: 1 + 3 + 1 = 5; unit 2: 3 + 0 + 1 = 4 */
	cr_assert_float_eq(score(0, PS_L1), 7.0, 1e-12);
	cr_assert_float_eq(score(1, PS_L1), 5.0, 1e-12);
	cr_assert_float_eq(score(2, PS_L1), 4.0, 1e-12);
}

Test(prune_scores, l2)
{
	/* unit 0: 1+4 + 0+1 + 1+4 = 11; unit 1: .25+.25 + 4+1 + 0+1 = 6.5; unit 2: 9 + 0 + 1 */
	cr_assert_float_eq(score(0, PS_L2), sqrt(11.0), 1e-12);
	cr_assert_float_eq(score(1, PS_L2), sqrt(6.5), 1e-12);
	cr_assert_float_eq(score(2, PS_L2), sqrt(10.0), 1e-12);
}

Test(prune_scores, maw)
{
	/* max|up row| + max|gate row|: 2 + 1, 0.5 + 2, 3 + 0 */
	cr_assert_float_eq(score(0, PS_MAW), 3.0, 1e-12);
	cr_assert_float_eq(score(1, PS_MAW), 2.5, 1e-12);
	cr_assert_float_eq(score(2, PS_MAW), 3.0, 1e-12);
}

Test(prune_scores, act)
{
	/* unit 0: up 1*2 + 2*.5 = 3, gate 0*2 + 1*.5 = .5, down (1+2)*xmid[0]=3 -> 6.5
	 * unit 1: up .5*2+.5*.5 = 1.25, gate 2*2+1*.5 = 4.5, down (0+1)*3 = 3 -> 8.75
	 * unit 2: up 3*2 = 6, gate 0, down (1+0)*.5 = .5 -> 6.5 */
	cr_assert_float_eq(score(0, PS_ACT), 6.5, 1e-12);
	cr_assert_float_eq(score(1, PS_ACT), 8.75, 1e-12);
	cr_assert_float_eq(score(2, PS_ACT), 6.5, 1e-12);
	/* without activations ACT is L1 */
	PruneSpan s[3];
	unit_spans(1, s, false);
	cr_assert_float_eq(prune_unit_score(s, 3, PS_ACT), 5.0, 1e-12);
}

Test(prune_scores, span_max_and_blocks)
{
	/* a 2-row block of columns 1..3 of down: max(|0|,|-1|,|1|,|0|) = 1 */
	PruneSpan s = { down, 2, 3, true, 1, 2, NULL };
	cr_assert_float_eq(prune_span_max(&s), 1.0, 1e-12);
	/* rows 0..2 of up: L1 = 3 + 1 = 4 */
	PruneSpan r = { up, 3, 2, false, 0, 2, NULL };
	cr_assert_float_eq(prune_unit_score(&r, 1, PS_L1), 4.0, 1e-12);
}

Test(prune_scores, select_ties)
{
	double sc[3];
	bool kept[3];
	for (int k = 0; k < 3; k++)
		sc[k] = score(k, PS_L1);
	cr_assert_eq(prune_select(sc, 3, NULL, 2, kept), 1);
	cr_assert(kept[0] && kept[1] && !kept[2]);
	for (int k = 0; k < 3; k++)
		sc[k] = score(k, PS_MAW); /* 3, 2.5, 3 */
	prune_select(sc, 3, NULL, 2, kept);
	cr_assert(kept[0] && !kept[1] && kept[2]);
	for (int k = 0; k < 3; k++)
		sc[k] = score(k, PS_ACT); /* 6.5, 8.75, 6.5: the tie keeps the lower index */
	prune_select(sc, 3, NULL, 2, kept);
	cr_assert(kept[0] && kept[1] && !kept[2]);
	/* non-candidates stay whatever their score */
	double z[4] = { 0, 5, 1, 2 };
	bool cand[4] = { false, true, true, true };
	bool k4[4];
	cr_assert_eq(prune_select(z, 4, cand, 1, k4), 2);
	cr_assert(k4[0] && k4[1] && !k4[2] && !k4[3]);
}

Test(prune_scores, cosine_angular_bi)
{
	const float a[4] = { 1, 0, 0, 1 };
	const float b[4] = { 1, 1, 0, -1 };
	cr_assert_float_eq(prune_cos(a, b, 2), 1 / sqrt(2.0), 1e-12);
	cr_assert_float_eq(prune_cos(a + 2, b + 2, 2), -1.0, 1e-12);
	const float zero[2] = { 0, 0 };
	cr_assert_float_eq(prune_cos(a, zero, 2), 0.0, 1e-12);
	/* rows: acos(1/sqrt2)/pi = 1/4, acos(-1)/pi = 1 -> mean 0.625 */
	cr_assert_float_eq(prune_angular(a, b, 2, 2), 0.625, 1e-12);
	/* 1 - (1/sqrt2 - 1)/2 */
	cr_assert_float_eq(prune_bi(a, b, 2, 2), 1 - (1 / sqrt(2.0) - 1) / 2, 1e-12);
	cr_assert_float_eq(prune_angular(a, a, 2, 2), 0.0, 1e-6);
	cr_assert_float_eq(prune_bi(a, a, 2, 2), 0.0, 1e-12);
}

Test(prune_scores, best_block)
{
	const double dist[5] = { 0.3, 0.1, 0.2, 0.1, 9 };
	cr_assert_eq(prune_best_block(dist, 5, NULL, 2), 3); /* tie 0.1: the deeper block */
	bool cand[5] = { true, true, true, true, false };
	cr_assert_eq(prune_best_block(dist, 5, cand, 2), 1);
	cr_assert_eq(prune_best_block(dist, 5, cand, 5), -1);
	cr_assert_eq(prune_best_block(dist, 5, NULL, 1), 3);
}

Test(prune_scores, keep_count)
{
	cr_assert_eq(prune_keep_count(0.75, false, 172, 8), 128); /* 129 -> nearest 8 */
	cr_assert_eq(prune_keep_count(0.5, false, 172, 1), 86);
	cr_assert_eq(prune_keep_count(1.0, false, 172, 8), 172);  /* 176 capped */
	cr_assert_eq(prune_keep_count(0.001, false, 172, 1), 0);  /* nothing left */
	cr_assert_eq(prune_keep_count(3, true, 4, 1), 3);
	cr_assert_eq(prune_keep_count(0.01, false, 172, 8), 8);   /* 2 -> at least 8 */
	cr_assert_eq(prune_keep_count(1, true, 6, 4), 4);
}

Test(prune_scores, names)
{
	cr_assert_eq(ir_vocab_find(&ir_score_vocab, "maw"), PS_MAW);
	cr_assert_eq(ir_vocab_find(&ir_score_vocab, "bi"), PS_BI);
	cr_assert_eq(ir_vocab_find(&ir_score_vocab, "nope"), -1);
	cr_assert_str_eq(ir_vocab_name(&ir_score_vocab, PS_ANGULAR), "angular");
}
