/* test_skip_compiled.c - layer skipping compiled against the interpreter, on seeded
 * random Llamas (tests/support/randmodel), multi-head and grouped-query, 6 layers:
 *   - neutral settings (linear(L, L, c), an FFN threshold above 1 by the policy or by
 *     the knob, one router bucket) give the compiled dense model's logits bit for bit,
 *     prefill and steps;
 *   - SkipDecode schedules that cross several budgets, FFN skipping at thresholds
 *     (knob) that make some tokens skip some blocks, routing with a prefill (the
 *     bucket chosen by the prefill at several router thresholds, and the bucket
 *     override): over 64 positions the compiled logits equal the interpreter's
 *     (relative error <= 1e-4, same argmax) and the statistics (calls, tokens, layers
 *     run, every stat slot) match after every call, with 1 and 2 threads; the
 *     interpreter's caches are poisoned with NaN, so a cache row no path wrote would
 *     show.  Each case checks that its settings make the variants differ. */
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
#define LAYERS 6
#ifndef FFN_T1
#define FFN_T1 0.99
#define FFN_T2 0.999
#endif

typedef int (*StepFn)(void *, int32_t, int32_t, float *);
typedef int (*PrefillFn)(void *, const int32_t *, int32_t, int32_t, float *);

static const char *calib_path;

/* A prefill of np tokens (none when 0), then steps to NSTEP: every output into
 * out[pos] (the prefill's at its last position). */
static void
run_compiled(TJit *t, int np, float out[NSTEP][VOCAB])
{
	int32_t toks[NSTEP];
	for (int i = 0; i < NSTEP; i++)
		toks[i] = tp_token(i);
	if (np)
		cr_assert_eq(((PrefillFn)tj_sym(t, "prefill"))(t->ctx, toks, np, 0, out[np - 1]), ELIDE_OK);
	for (int i = np; i < NSTEP; i++)
		cr_assert_eq(((StepFn)tj_sym(t, "step"))(t->ctx, toks[i], i, out[i]), ELIDE_OK);
}

Test(skip_compiled, neutral_settings_equal_compiled_dense)
{
	calib_path = tp_write_calib("skipc_calib.txt");
	char router[512];
	snprintf(router, sizeof router, "skip layers from router buckets 1 calibrate \"%s\";", calib_path);
	const char *neutral[] = { "skip schedule linear(6, 6, 64);", "skip ffn when cos(in, out) > 1;",
		                  "skip ffn when cos(in, out) > 0.3;", router };
	static float a[NSTEP][VOCAB], b[NSTEP][VOCAB];
	for (int kv = 2; kv <= 4; kv += 2) {
		RmConfig c = tp_config(LAYERS, kv, 3);
		const char *w = tp_write_weights(&c, "skipc");
		Module *dm = tp_load_ok(&c, w, "", true);
		TJit *dense = tj_new(dm, true);
		int (*reset)(void *) = (int (*)(void *))tj_sym(dense, "reset");
		for (size_t i = 0; i < sizeof neutral / sizeof neutral[0]; i++) {
			Module *sm = tp_load_ok(&c, w, neutral[i], true);
			TJit *sk = tj_new(sm, true);
			int (*sreset)(void *) = (int (*)(void *))tj_sym(sk, "reset");
			if (i == 2) { /* T = 0.3 in the policy, above 1 through the knob */
				int32_t k = ir_find_knob(sm, "skip.ffn.threshold");
				cr_assert(k >= 0);
				int (*set)(void *, int, double) = (int (*)(void *, int, double))tj_sym(sk, "set_knob");
				cr_assert_eq(set(sk->ctx, k, 1.5), ELIDE_OK);
			}
			for (int np = 0; np <= 8; np += 8) {
				cr_assert_eq(reset(dense->ctx), ELIDE_OK);
				cr_assert_eq(sreset(sk->ctx), ELIDE_OK);
				run_compiled(dense, np, a);
				run_compiled(sk, np, b);
				for (int t = np ? np - 1 : 0; t < NSTEP; t++)
					cr_assert(memcmp(a[t], b[t], sizeof a[t]) == 0,
					          "'%s', kv_heads %d, prefill %d, position %d: logits differ from dense", neutral[i],
					          kv, np, t);
			}
			tj_free(sk);
			ir_free_module(sm);
		}
		tj_free(dense);
		ir_free_module(dm);
		remove(w);
	}
	remove(calib_path);
}

typedef struct Setting {  /* one run of a case: knobs set before it */
	const char *knob[2];  /* names (NULL: none) */
	double value[2];
} Setting;

typedef struct Case {
	const char *policy;
	int kv_heads;
	int prefill;          /* tokens in the prefill before the steps (0: none) */
	Setting settings[4];
	int nsettings;
} Case;

typedef struct Seen {     /* what the interpreter ran, over all settings of a case */
	int64_t layer_counts[LAYERS + 1]; /* steps that ran n layers */
	int64_t ffn_skip_steps, ffn_dense_steps; /* steps that skipped >= 1 FFN block, none */
	int64_t ffn_layers_skipped;       /* stat slots skip.ffn.* that counted */
	int64_t routes[LAYERS];           /* settings whose prefill chose bucket b */
} Seen;

/* The compiled statistics equal the interpreter's. */
static void
same_stats(const Module *m, TJit *t, InterpState *s, const char *what, int pos)
{
	uint64_t st[4];
	((void (*)(const void *, uint64_t *))tj_sym(t, "get_stats"))(t->ctx, st);
	int64_t (*stat)(const void *, int) = (int64_t(*)(const void *, int))tj_sym(t, "stat");
	const InterpStats *is = interp_stats(s);
	cr_assert_eq((int64_t)st[0], is->calls, "%s, position %d: calls", what, pos);
	cr_assert_eq((int64_t)st[1], is->tokens, "%s, position %d: tokens", what, pos);
	cr_assert_eq((int64_t)st[2], is->layers, "%s, position %d: layers run %llu, interpreter %lld", what, pos,
	             (unsigned long long)st[2], (long long)is->layers);
	for (uint32_t q = 0; q < m->nstats; q++)
		cr_assert_eq(stat(t->ctx, (int)q), is->slots[q], "%s, position %d: stat '%s' %lld, interpreter %lld", what,
		             pos, m->stats[q].name, (long long)stat(t->ctx, (int)q), (long long)is->slots[q]);
}

static int64_t
ffn_skipped(const Module *m, const InterpState *s)
{
	int64_t n = 0;
	for (uint32_t q = 0; q < m->nstats; q++)
		if (strncmp(m->stats[q].name, "skip.ffn.", 9) == 0)
			n += interp_stats(s)->slots[q];
	return n;
}

/* One setting, 1 and 2 threads: compiled == interpreter after every call. */
static void
run_setting(const Case *k, const Setting *g, Module *m, TJit *t, Seen *seen)
{
	int (*reset)(void *) = (int (*)(void *))tj_sym(t, "reset");
	int (*threads)(void *, int) = (int (*)(void *, int))tj_sym(t, "set_threads");
	int (*set_knob)(void *, int, double) = (int (*)(void *, int, double))tj_sym(t, "set_knob");
	StepFn step = (StepFn)tj_sym(t, "step");
	PrefillFn prefill = (PrefillFn)tj_sym(t, "prefill");
	char what[256];
	snprintf(what, sizeof what, "'%s' kv %d, %s = %g", k->policy, k->kv_heads, g->knob[0] ? g->knob[0] : "-",
	         g->knob[0] ? g->value[0] : 0.0);
	for (int th = 1; th <= 2; th++) {
		cr_assert_eq(threads(t->ctx, th), ELIDE_OK);
		cr_assert_eq(reset(t->ctx), ELIDE_OK);
		InterpState *s = interp_new(m);
		interp_set_poison(s, true);
		for (int q = 0; q < 2 && g->knob[q]; q++) {
			int32_t kn = ir_find_knob(m, g->knob[q]);
			cr_assert(kn >= 0, "no knob '%s'", g->knob[q]);
			cr_assert_eq(set_knob(t->ctx, kn, g->value[q]), ELIDE_OK, "set_knob %s", g->knob[q]);
			cr_assert(interp_set_knob(s, g->knob[q], g->value[q]));
		}
		float a[VOCAB], b[VOCAB];
		char err[256];
		int32_t toks[NSTEP];
		for (int i = 0; i < NSTEP; i++)
			toks[i] = tp_token(i);
		if (k->prefill) {
			cr_assert(interp_run(s, "prefill", toks, k->prefill, 0, a, err, sizeof err), "%s", err);
			cr_assert_eq(prefill(t->ctx, toks, k->prefill, 0, b), ELIDE_OK);
			double e = ts_rel_err(b, a, VOCAB);
			cr_assert(e <= 1e-4, "%s, %d thread(s), prefill: relative error %g", what, th, e);
			cr_assert_eq(ts_argmax(b, VOCAB), ts_argmax(a, VOCAB), "%s prefill: argmax", what);
			same_stats(m, t, s, what, -1);
			if (th == 1)
				for (int q = 0; q < LAYERS; q++) {
					char nm[32];
					snprintf(nm, sizeof nm, "skip.router.bucket%d", q);
					int32_t slot = ir_find_stat(m, nm);
					if (slot >= 0 && interp_stats(s)->slots[slot])
						seen->routes[q]++;
				}
		}
		for (int i = k->prefill; i < NSTEP; i++) {
			int64_t layers0 = interp_stats(s)->layers, ffn0 = ffn_skipped(m, s);
			cr_assert(interp_run(s, "step", &toks[i], 1, i, a, err, sizeof err), "%s", err);
			cr_assert_eq(step(t->ctx, toks[i], i, b), ELIDE_OK);
			double e = ts_rel_err(b, a, VOCAB);
			cr_assert(e <= 1e-4, "%s, %d thread(s), step %d: relative error %g", what, th, i, e);
			cr_assert_eq(ts_argmax(b, VOCAB), ts_argmax(a, VOCAB), "%s step %d: argmax", what, i);
			same_stats(m, t, s, what, i);
			if (th == 1) {
				int64_t n = interp_stats(s)->layers - layers0;
				cr_assert(n >= 1 && n <= LAYERS);
				seen->layer_counts[n]++;
				if (ffn_skipped(m, s) > ffn0)
					seen->ffn_skip_steps++;
				else
					seen->ffn_dense_steps++;
			}
		}
		if (th == 1)
			for (uint32_t q = 0; q < m->nstats; q++)
				if (strncmp(m->stats[q].name, "skip.ffn.", 9) == 0 && interp_stats(s)->slots[q])
					seen->ffn_layers_skipped++;
		interp_free(s);
	}
}

/* Every setting of a case on one compiled model; returns what the interpreter ran. */
static Seen
run_case(const Case *k, uint64_t seed)
{
	RmConfig c = tp_config(LAYERS, k->kv_heads, seed);
	const char *w = tp_write_weights(&c, "skipc");
	Module *m = tp_load_ok(&c, w, k->policy, true);
	remove(w);
	TJit *t = tj_new(m, true);
	Seen seen = { 0 };
	for (int i = 0; i < k->nsettings; i++)
		run_setting(k, &k->settings[i], m, t, &seen);
	tj_free(t);
	ir_free_module(m);
	return seen;
}

static int
distinct_counts(const Seen *s)
{
	int n = 0;
	for (int l = 0; l <= LAYERS; l++)
		n += s->layer_counts[l] > 0;
	return n;
}

Test(skip_compiled, schedule_matches_the_interpreter)
{
	for (int kv = 2; kv <= 4; kv += 2) {
		/* budgets 6, 5, 4, 3, 2 over the 64 steps; then from a 10-token prompt on */
		Case a = { "skip schedule linear(6, 2, 48);", kv, 0, { { { NULL, NULL }, { 0, 0 } } }, 1 };
		Seen s = run_case(&a, 31);
		cr_assert_eq(distinct_counts(&s), 5, "'%s': %d distinct budgets run", a.policy, distinct_counts(&s));
		Case b = { "skip schedule linear(5, 1, 40);", kv, 10, { { { NULL, NULL }, { 0, 0 } } }, 1 };
		s = run_case(&b, 33);
		cr_assert_geq(distinct_counts(&s), 3, "'%s': %d distinct budgets run", b.policy, distinct_counts(&s));
		cr_log_info("kv_heads %d: schedules ran %d budgets", kv, distinct_counts(&s));
	}
}

Test(skip_compiled, ffn_skipping_matches_the_interpreter)
{
	for (int kv = 2; kv <= 4; kv += 2) {
		Case a = { "skip ffn when cos(in, out) > 0.5;", kv, 0,
			   { { { "skip.ffn.threshold" }, { FFN_T1 } }, { { "skip.ffn.threshold" }, { FFN_T2 } } }, 2 };
		Seen s = run_case(&a, 41);
		cr_log_info("kv_heads %d: %lld steps skip FFN blocks, %lld run them all, %lld layers skip", kv,
		            (long long)s.ffn_skip_steps, (long long)s.ffn_dense_steps, (long long)s.ffn_layers_skipped);
		cr_assert(s.ffn_skip_steps > 0 && s.ffn_dense_steps > 0 && s.ffn_layers_skipped >= 2,
		          "'%s': the thresholds should make some tokens skip some FFN blocks", a.policy);
		/* warm-up, cold layers and a range, with a prefill */
		Case b = { "skip ffn when cos(in, out) > 0.5 warmup 14 cold 3 layers 1..6;", kv, 8,
			   { { { "skip.ffn.threshold" }, { FFN_T1 } } }, 1 };
		s = run_case(&b, 43);
		cr_assert(s.ffn_skip_steps > 0 && s.ffn_dense_steps > 0,
		          "'%s': the threshold should make some tokens skip some FFN blocks", b.policy);
	}
}

Test(skip_compiled, routing_matches_the_interpreter)
{
	calib_path = tp_write_calib("skipc_calib.txt");
	char pol[512];
	snprintf(pol, sizeof pol, "skip layers from router buckets 3 calibrate \"%s\";", calib_path);
	for (int kv = 2; kv <= 4; kv += 2) {
		/* the prefill chooses (default threshold, everything passes, nothing passes),
		 * then the override forces bucket 1 */
		Case a = { pol, kv, 12,
			   { { { NULL, NULL }, { 0, 0 } },
			     { { "skip.router.threshold" }, { -1 } },
			     { { "skip.router.threshold" }, { 1.5 } },
			     { { "skip.bucket", "skip.router.threshold" }, { 1, 1.5 } } },
			   4 };
		Seen s = run_case(&a, 51);
		cr_log_info("kv_heads %d: routes chosen %lld %lld %lld", kv, (long long)s.routes[0],
		            (long long)s.routes[1], (long long)s.routes[2]);
		cr_assert_geq(s.routes[0], 2, "nothing passes: bucket 0 (and the override's run)");
		cr_assert_geq(s.routes[2], 1, "everything passes: bucket 2");
		cr_assert(s.layer_counts[6] > 0 && s.layer_counts[5] > 0 && s.layer_counts[4] > 0,
		          "the steps should run 6, 5 and 4 layers across the settings");
	}
	remove(calib_path);
}
