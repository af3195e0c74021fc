/* test_exit_compiled.c - early exit compiled against the interpreter, on seeded random
 * Llamas (tests/support/randmodel), multi-head and grouped-query, 4 layers:
 *   - neutral settings (threshold 1, patience above the number of sites) give the
 *     compiled dense model's logits bit for bit;
 *   - every measure (margin, maxprob, entropy, state_cos) and patience, sites after
 *     1, 2 and 3 layers, thresholds that make tokens exit at different sites: over 64
 *     decode steps the compiled logits equal the interpreter's (relative error
 *     <= 1e-4, same argmax) and the statistics match after every step (so every
 *     token exits at the same site), with 1 and 2 threads; the interpreter's caches
 *     are poisoned with NaN, so a cache row no path wrote would show. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "frontend/frontend.h"
#include "ir/ir.h"
#include "passes/passes.h"
#include "tests/e2e/cg_jit_support.h"
#include "tests/support/compare.h"
#include "tests/support/policy_model.h"
#include "tests/support/randmodel.h"

#define NSTEP TP_NSTEP
#define VOCAB TP_VOCAB

typedef int (*StepFn)(void *, int32_t, int32_t, float *);

Test(exit_compiled, neutral_settings_equal_compiled_dense)
{
	static const char *const neutral[] = {
		"exit at 1, 2, 3 head head measure margin threshold 1 kv propagate;",
		"exit at 2 head head measure entropy threshold 0 kv propagate;",
		"exit at 1, 3 head head measure state_cos threshold 1 kv propagate;",
		"exit at 1, 2 head head measure maxprob threshold 1 decay 4 patience 3 kv propagate;",
	};
	for (int kv = 2; kv <= 4; kv += 2) {
		RmConfig c = tp_config(4, kv, 3);
		const char *w = tp_write_weights(&c, "exitc");
		Module *dm = tp_load_ok(&c, w, "", false);
		TJit *dense = tj_new(dm, true);
		for (size_t i = 0; i < sizeof neutral / sizeof neutral[0]; i++) {
			Module *em = tp_load_ok(&c, w, neutral[i], false);
			TJit *ex = tj_new(em, true);
			int (*reset)(void *) = (int (*)(void *))tj_sym(dense, "reset");
			reset(dense->ctx);
			float a[VOCAB], b[VOCAB];
			for (int t = 0; t < NSTEP; t++) {
				cr_assert_eq(((StepFn)tj_sym(dense, "step"))(dense->ctx, tp_token(t), t, a), ELIDE_OK);
				cr_assert_eq(((StepFn)tj_sym(ex, "step"))(ex->ctx, tp_token(t), t, b), ELIDE_OK);
				cr_assert(memcmp(a, b, sizeof a) == 0, "'%s', kv_heads %d, step %d: logits differ from dense",
				          neutral[i], kv, t);
			}
			tj_free(ex);
			ir_free_module(em);
		}
		tj_free(dense);
		ir_free_module(dm);
		remove(w);
	}
}

typedef struct Case {
	const char *policy;
	int kv_heads;
} Case;

/* One policy, 64 steps at 1 and 2 threads: compiled == interpreter, same stats. */
static void
run_case(const Case *k, uint64_t seed)
{
	RmConfig c = tp_config(4, k->kv_heads, seed);
	const char *w = tp_write_weights(&c, "exitc");
	Module *m = tp_load_ok(&c, w, k->policy, false);
	remove(w);
	TJit *t = tj_new(m, true);
	int (*reset)(void *) = (int (*)(void *))tj_sym(t, "reset");
	int (*threads)(void *, int) = (int (*)(void *, int))tj_sym(t, "set_threads");
	void (*get_stats)(const void *, uint64_t *) = (void (*)(const void *, uint64_t *))tj_sym(t, "get_stats");
	int64_t (*stat)(const void *, int) = (int64_t(*)(const void *, int))tj_sym(t, "stat");
	StepFn step = (StepFn)tj_sym(t, "step");
	int64_t exits_seen = 0, sites_seen = 0;
	for (int th = 1; th <= 2; th++) {
		cr_assert_eq(threads(t->ctx, th), ELIDE_OK);
		cr_assert_eq(reset(t->ctx), ELIDE_OK);
		InterpState *s = interp_new(m);
		interp_set_poison(s, true);
		float a[VOCAB], b[VOCAB];
		char err[256];
		for (int i = 0; i < NSTEP; i++) {
			int32_t tok = tp_token(i);
			cr_assert(interp_run(s, "step", &tok, 1, i, a, err, sizeof err), "%s", err);
			cr_assert_eq(step(t->ctx, tok, i, b), ELIDE_OK);
			double e = ts_rel_err(b, a, VOCAB);
			cr_assert(e <= 1e-4, "'%s' kv %d, %d thread(s), step %d: relative error %g", k->policy, k->kv_heads, th,
			          i, e);
			cr_assert_eq(ts_argmax(b, VOCAB), ts_argmax(a, VOCAB), "'%s' step %d: argmax", k->policy, i);
			uint64_t st[4];
			get_stats(t->ctx, st);
			const InterpStats *is = interp_stats(s);
			cr_assert_eq((int64_t)st[2], is->layers, "'%s' step %d: layers run %llu, interpreter %lld", k->policy,
			             i, (unsigned long long)st[2], (long long)is->layers);
			for (uint32_t q = 0; q < m->nstats; q++)
				cr_assert_eq(stat(t->ctx, (int)q), is->slots[q], "'%s' step %d: stat '%s'", k->policy, i,
				             m->stats[q].name);
		}
		const InterpStats *is = interp_stats(s);
		exits_seen = sites_seen = 0;
		for (uint32_t q = 0; q < m->nstats; q++)
			if (strncmp(m->stats[q].name, "exit.site", 9) == 0) {
				exits_seen += is->slots[q];
				sites_seen += is->slots[q] > 0;
			}
		interp_free(s);
	}
	cr_log_info("'%s' kv_heads %d: %lld of %d tokens exit, at %lld sites", k->policy, k->kv_heads,
	            (long long)exits_seen, NSTEP, (long long)sites_seen);
	cr_assert(exits_seen > 0 && exits_seen < NSTEP && sites_seen >= 2,
	          "'%s': the threshold should make tokens exit at different sites (%lld exits at %lld sites)", k->policy,
	          (long long)exits_seen, (long long)sites_seen);
	tj_free(t);
	ir_free_module(m);
}

Test(exit_compiled, every_measure_matches_the_interpreter)
{
	static const char *const policies[] = {
		"exit at 1, 2, 3 head head measure margin threshold 0.011 kv propagate;",
		"exit at 1, 2, 3 head head measure maxprob threshold 0.05 kv propagate;",
		"exit at 1, 2, 3 head head measure entropy threshold 4.0 kv propagate;",
		"exit at 1, 2, 3 head head measure state_cos threshold 0.985 kv propagate;",
		"exit at 1, 2, 3 head head measure maxprob threshold 0.055 decay 4 kv propagate;",
		"exit at 1, 2, 3 head head patience 1 kv propagate;",
	};
	for (int kv = 2; kv <= 4; kv += 2)
		for (size_t i = 0; i < sizeof policies / sizeof policies[0]; i++) {
			Case k = { policies[i], kv };
			run_case(&k, 21);
		}
}
