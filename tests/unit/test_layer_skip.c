/* test_layer_skip.c - the layer-skip pass through the reference interpreter, on
 * seeded random Llamas (tests/support/randmodel), multi-head and grouped-query:
 *   - neutral settings (linear(L, L, c), an FFN threshold above 1, one bucket) give
 *     the dense model's logits bit for bit, prefill and steps;
 *   - SkipDecode: every step runs budget(pos) layers (the statistics), the step holds
 *     one variant per distinct budget and no branch inside a variant, and with
 *     poisoned caches no NaN reaches the logits over 64 steps;
 *   - FFN skipping: blocks are skipped (statistics per layer), never in the warm-up
 *     positions, and no NaN reaches the logits from poisoned caches;
 *   - routing: the prefill's choice persists into the steps (skip.route), the
 *     skip.bucket knob overrides it, layers run follow the bucket; poisoned caches see
 *     no NaN, while switching the bucket to one that runs more layers in mid-sequence
 *     does (so the check can fail). */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "frontend/frontend.h"
#include "ir/ir.h"
#include "passes/passes.h"
#include "tests/support/policy_model.h"
#include "tests/support/randmodel.h"

#define NSTEP TP_NSTEP
#define VOCAB TP_VOCAB

static const char *calib_path;

Test(layer_skip, neutral_settings_equal_dense)
{
	calib_path = tp_write_calib("skip_calib.txt");
	char router[512];
	snprintf(router, sizeof router, "skip layers from router buckets 1 calibrate \"%s\";", calib_path);
	const char *neutral[] = { "skip schedule linear(6, 6, 64);", "skip ffn when cos(in, out) > 1;", router };
	for (int kv = 2; kv <= 4; kv += 2)
		for (size_t i = 0; i < sizeof neutral / sizeof neutral[0]; i++) {
			TpPair p = tp_pair(6, kv, 5 + i, neutral[i], true);
			tp_run_seq(&p, 0, true, false, NULL, NULL);
			tp_run_seq(&p, 8, true, false, NULL, NULL);
			tp_pair_free(&p);
		}
	/* T above 1 through the knob, with every layer a candidate and no warm-up */
	TpPair p = tp_pair(6, 2, 9, "skip ffn when cos(in, out) > 0.5;", true);
	InterpState *a = interp_new(p.dense), *b = interp_new(p.policy);
	cr_assert(interp_set_knob(b, "skip.ffn.threshold", 1.5));
	float la[VOCAB], lb[VOCAB];
	char err[256];
	for (int t = 0; t < NSTEP; t++) {
		int32_t tok = tp_token(t);
		cr_assert(interp_run(a, "step", &tok, 1, t, la, err, sizeof err), "%s", err);
		cr_assert(interp_run(b, "step", &tok, 1, t, lb, err, sizeof err), "%s", err);
		cr_assert(memcmp(la, lb, sizeof la) == 0, "step %d: logits differ from the dense model", t);
	}
	interp_free(a);
	interp_free(b);
	tp_pair_free(&p);
	remove(calib_path);
}

/* budget(t) of docs/ir.md: n_min + ceil((n_max - n_min) (ctx - t) / ctx), n_min past ctx */
static int64_t
budget(int64_t nmax, int64_t nmin, int64_t ctx, int64_t t)
{
	return t >= ctx ? nmin : nmin + ((nmax - nmin) * (ctx - t) + ctx - 1) / ctx;
}

Test(layer_skip, schedule_runs_the_budget_and_sees_no_nan)
{
	for (int kv = 2; kv <= 4; kv += 2) {
		TpPair p = tp_pair(6, kv, 31, "skip schedule linear(6, 2, 48);", true);
		int64_t layers[NSTEP];
		InterpState *s;
		cr_assert_eq(tp_run_seq(&p, 0, false, true, layers, &s), 0, "a NaN reached the logits");
		for (int t = 0; t < NSTEP; t++)
			cr_assert_eq(layers[t], budget(6, 2, 48, t), "step %d ran %lld layers, the budget is %lld", t,
			             (long long)layers[t], (long long)budget(6, 2, 48, t));
		interp_free(s);
		/* with a prefill first: the same budgets from the prompt's end on */
		cr_assert_eq(tp_run_seq(&p, 10, false, true, layers, NULL), 0, "a NaN reached the logits after a prefill");
		for (int t = 10; t < NSTEP; t++)
			cr_assert_eq(layers[t], budget(6, 2, 48, t));
		/* one ret per distinct budget; no 'if' inside a variant */
		const Func *f = ir_find_func(p.policy, "step");
		int rets = 0, depth = 0, maxdepth = 0;
		for (uint32_t i = 0; i < f->nops; i++) {
			rets += f->ops[i].code == OP_RET;
			depth += f->ops[i].code == OP_IF ? 1 : f->ops[i].code == OP_END ? -1 : 0;
			maxdepth = depth > maxdepth ? depth : maxdepth;
		}
		cr_assert_eq(rets, 5, "budgets 6, 5, 4, 3, 2: saw %d variants", rets);
		cr_assert_eq(maxdepth, 1, "a variant holds a branch");
		tp_pair_free(&p);
	}
}

static int64_t
slot(const Module *m, const InterpState *s, const char *name)
{
	int32_t k = ir_find_stat(m, name);
	cr_assert(k >= 0, "no stat %s", name);
	return interp_stats(s)->slots[k];
}

Test(layer_skip, ffn_skipping_counts_and_sees_no_nan)
{
	for (int kv = 2; kv <= 4; kv += 2) {
		/* a low threshold: most tokens skip every FFN block after the first candidate */
		TpPair p = tp_pair(6, kv, 41, "skip ffn when cos(in, out) > 0.2 warmup 8 cold 0, 5;", true);
		InterpState *s;
		cr_assert_eq(tp_run_seq(&p, 0, false, true, NULL, &s), 0, "a NaN reached the logits");
		cr_assert_lt(ir_find_stat(p.policy, "skip.ffn.layer1"), 0, "the first candidate is never skipped");
		cr_assert_lt(ir_find_stat(p.policy, "skip.ffn.layer5"), 0, "a cold layer is never skipped");
		int64_t total = 0;
		for (int l = 2; l <= 4; l++) {
			char nm[32];
			snprintf(nm, sizeof nm, "skip.ffn.layer%d", l);
			int64_t n = slot(p.policy, s, nm);
			cr_assert_leq(n, NSTEP - 8, "layer %d skipped %lld times, more than the steps past the warm-up", l,
			              (long long)n);
			total += n;
		}
		cr_log_info("kv_heads %d: %lld FFN blocks skipped", kv, (long long)total);
		cr_assert_gt(total, 0, "no FFN block was skipped");
		interp_free(s);
		/* the warm-up: the first 8 positions equal the dense model */
		InterpState *a = interp_new(p.dense), *b = interp_new(p.policy);
		float la[VOCAB], lb[VOCAB];
		char err[256];
		for (int t = 0; t < 8; t++) {
			int32_t tok = tp_token(t);
			cr_assert(interp_run(a, "step", &tok, 1, t, la, err, sizeof err), "%s", err);
			cr_assert(interp_run(b, "step", &tok, 1, t, lb, err, sizeof err), "%s", err);
			cr_assert(memcmp(la, lb, sizeof la) == 0, "warm-up step %d differs from the dense model", t);
		}
		interp_free(a);
		interp_free(b);
		tp_pair_free(&p);
	}
}

Test(layer_skip, routing_persists_and_sees_no_nan)
{
	calib_path = tp_write_calib("skip_calib.txt");
	char pol[512];
	snprintf(pol, sizeof pol, "skip layers from router buckets 3 calibrate \"%s\";", calib_path);
	for (int kv = 2; kv <= 4; kv += 2) {
		TpPair p = tp_pair(6, kv, 51, pol, true);
		int32_t route = ir_find_knob(p.policy, "skip.route"), bucket = ir_find_knob(p.policy, "skip.bucket");
		cr_assert(route >= 0 && bucket >= 0);
		/* each bucket forced: the steps run 6 - b layers, no NaN from poisoned caches */
		for (int b = 0; b < 3; b++) {
			int64_t layers[NSTEP];
			InterpState *s = interp_new(p.policy);
			interp_set_poison(s, true);
			cr_assert(interp_set_knob(s, "skip.bucket", b));
			float out[VOCAB];
			char err[256];
			int32_t toks[12];
			for (int t = 0; t < 12; t++)
				toks[t] = tp_token(t);
			cr_assert(interp_run(s, "prefill", toks, 12, 0, out, err, sizeof err), "%s", err);
			for (int t = 12; t < NSTEP; t++) {
				int32_t tok = tp_token(t);
				int64_t before = interp_stats(s)->layers;
				cr_assert(interp_run(s, "step", &tok, 1, t, out, err, sizeof err), "%s", err);
				layers[t] = interp_stats(s)->layers - before;
				cr_assert_eq(layers[t], 6 - b, "bucket %d: step %d ran %lld layers", b, t, (long long)layers[t]);
				cr_assert(!tp_has_nan(out, VOCAB), "bucket %d: a NaN reached the logits at step %d", b, t);
			}
			/* the prefill's choice is counted once */
			int64_t chosen = 0;
			for (int q = 0; q < 3; q++) {
				char nm[32];
				snprintf(nm, sizeof nm, "skip.router.bucket%d", q);
				chosen += slot(p.policy, s, nm);
			}
			cr_assert_eq(chosen, 1);
			/* switching to a bucket that runs more layers reads rows never written */
			if (b == 2) {
				cr_assert(interp_set_knob(s, "skip.bucket", 0));
				int32_t tok = 1;
				cr_assert(interp_run(s, "step", &tok, 1, NSTEP, out, err, sizeof err), "%s", err);
				cr_assert(tp_has_nan(out, VOCAB), "running skipped layers again must see unwritten (NaN) rows");
			}
			interp_free(s);
		}
		/* no override: the steps run the bucket the prefill chose, kept in skip.route */
		InterpState *s = interp_new(p.policy);
		float out[VOCAB];
		char err[256];
		int32_t toks[12];
		for (int t = 0; t < 12; t++)
			toks[t] = tp_token(t);
		cr_assert(interp_run(s, "prefill", toks, 12, 0, out, err, sizeof err), "%s", err);
		int chosen = -1;
		for (int q = 0; q < 3; q++) {
			char nm[32];
			snprintf(nm, sizeof nm, "skip.router.bucket%d", q);
			if (slot(p.policy, s, nm))
				chosen = q;
		}
		cr_assert(chosen >= 0);
		int64_t before = interp_stats(s)->layers;
		int32_t tok = tp_token(12);
		cr_assert(interp_run(s, "step", &tok, 1, 12, out, err, sizeof err), "%s", err);
		cr_assert_eq(interp_stats(s)->layers - before, 6 - chosen, "the step does not follow the prefill's bucket %d",
		             chosen);
		cr_log_info("kv_heads %d: the prefill chose bucket %d", kv, chosen);
		interp_free(s);
		tp_pair_free(&p);
	}
	remove(calib_path);
}
