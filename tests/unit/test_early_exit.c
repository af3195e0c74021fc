/* test_early_exit.c - the early-exit pass through the reference interpreter, on seeded
 * random Llamas (tests/support/randmodel), multi-head and grouped-query:
 *   - neutral settings (a threshold no confidence reaches, patience above the number
 *     of sites) give the dense model's logits bit for bit, every measure;
 *   - K/V propagation is exact: after an exit at site s at position p, the cache rows
 *     of every later layer at p equal K and V computed here by hand from the exit
 *     state (RMSNorm with the layer's attention norm, the projections, RoPE);
 *   - with caches poisoned with NaN, tokens that exit at different sites over 64
 *     steps never let a NaN reach the logits, while the same run with the K/V writes
 *     of the exit tails removed does (so the check can fail);
 *   - the statistics count the exits per site and the layers run. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "frontend/frontend.h"
#include "ir/ir.h"
#include "passes/passes.h"
#include "tests/support/compare.h"
#include "tests/support/policy_model.h"
#include "tests/support/randmodel.h"

#define NSTEP TP_NSTEP

Test(early_exit, neutral_settings_equal_dense)
{
	static const char *const neutral[] = {
		"exit at 1, 2, 3 head head measure margin threshold 1 kv propagate;",
		"exit at 1, 3 head head measure maxprob threshold 1 decay 4 kv propagate;",
		"exit at 2 head head measure entropy threshold 0 kv propagate;",
		"exit at 1, 2 head head measure state_cos threshold 1 kv propagate;",
		"exit at 1, 2, 3 head head patience 4 kv propagate;",
		"exit at 1, 2 head head measure maxprob threshold 1 patience 3 kv propagate;",
	};
	for (int kv = 2; kv <= 4; kv += 2)
		for (size_t i = 0; i < sizeof neutral / sizeof neutral[0]; i++) {
			TpPair p = tp_pair(4, kv, 5 + i, neutral[i], false);
			tp_run_seq(&p, 0, true, false, NULL, NULL);
			tp_pair_free(&p);
		}
}

/* y = x / rms(x) * w (eps 1e-5), in double like the interpreter */
static void
rmsnorm(const float *x, const float *w, int n, double *y)
{
	double ss = 0;
	for (int i = 0; i < n; i++)
		ss += (double)x[i] * x[i];
	double r = 1.0 / sqrt(ss / n + 1e-5);
	for (int i = 0; i < n; i++)
		y[i] = (double)(float)(x[i] * r) * w[i];
}

static const float *
param(const Module *m, const char *name)
{
	int32_t k = ir_find_param(m, name);
	cr_assert(k >= 0, "no param %s", name);
	return m->params[k].data;
}

/* The hidden state leaving layer l of the last run: captured by the op hook as the
 * value of the last op of layer l's first region (the dense path). */
typedef struct Capture {
	int32_t layer;
	uint32_t last_op;
	float h[64];
} Capture;

static void
capture(void *user, const Func *f, const Op *op, const float *val, int64_t rows, int64_t cols)
{
	Capture *c = user;
	if (strcmp(f->name, "step") == 0 && (uint32_t)(op - f->ops) == c->last_op && rows == 1 && cols <= 64)
		memcpy(c->h, val, (size_t)cols * sizeof *val);
}

Test(early_exit, kv_propagation_is_exact)
{
	/* maxprob > 0 always holds: every token exits at site 2 */
	TpPair p = tp_pair(4, 2, 11, "exit at 2 head head measure maxprob threshold 0 kv propagate;", false);
	const RmConfig *c = &p.c;
	const Func *f = ir_find_func(p.policy, "step");
	Capture cap = { .layer = 1, .last_op = 0 };
	for (uint32_t i = 0; i < f->nops && f->ops[i].code != OP_IF; i++)
		if (f->ops[i].layer == 1)
			cap.last_op = i;
	InterpState *s = interp_new(p.policy);
	interp_set_op_hook(s, capture, &cap);
	int hd = c->dim / c->heads, kvw = c->kv_heads * hd;
	float out[64];
	char err[256];
	for (int pos = 0; pos < 6; pos++) {
		int32_t tok = tp_token(pos);
		cr_assert(interp_run(s, "step", &tok, 1, pos, out, err, sizeof err), "%s", err);
		for (int j = 2; j < c->layers; j++) {
			char nm[32];
			double hn[64], k[64], v[64];
			snprintf(nm, sizeof nm, "attn_norm.%d", j);
			rmsnorm(cap.h, param(p.policy, nm), c->dim, hn);
			float hf[64];
			for (int i = 0; i < c->dim; i++)
				hf[i] = (float)hn[i];
			snprintf(nm, sizeof nm, "wk.%d", j);
			const float *wk = param(p.policy, nm);
			snprintf(nm, sizeof nm, "wv.%d", j);
			const float *wv = param(p.policy, nm);
			for (int r = 0; r < kvw; r++) {
				double ak = 0, av = 0;
				for (int i = 0; i < c->dim; i++) {
					ak += (double)hf[i] * wk[r * c->dim + i];
					av += (double)hf[i] * wv[r * c->dim + i];
				}
				k[r] = (float)ak;
				v[r] = (float)av;
			}
			/* RoPE, rotate_half form, theta 1e4, per KV head */
			double kr[64];
			for (int g = 0; g < c->kv_heads; g++)
				for (int i = 0; i < hd / 2; i++) {
					double ang = pos * pow(10000.0, -2.0 * i / hd), cs = cos(ang), sn = sin(ang);
					double x0 = k[g * hd + i], x1 = k[g * hd + i + hd / 2];
					kr[g * hd + i] = x0 * cs - x1 * sn;
					kr[g * hd + i + hd / 2] = x1 * cs + x0 * sn;
				}
			const float *kc, *vc;
			cr_assert(interp_kv(s, (uint32_t)j, &kc, &vc));
			for (int r = 0; r < kvw; r++) {
				cr_assert(fabs(kc[pos * kvw + r] - kr[r]) <= 1e-5 * (1 + fabs(kr[r])),
				          "layer %d pos %d: K[%d] = %g, by hand %g", j, pos, r, kc[pos * kvw + r], kr[r]);
				cr_assert(fabs(vc[pos * kvw + r] - v[r]) <= 1e-5 * (1 + fabs(v[r])),
				          "layer %d pos %d: V[%d] = %g, by hand %g", j, pos, r, vc[pos * kvw + r], v[r]);
			}
		}
	}
	const InterpStats *st = interp_stats(s);
	cr_assert_eq(st->layers, 6 * 2, "every token runs 2 layers, saw %lld in all", (long long)st->layers);
	int32_t site = ir_find_stat(p.policy, "exit.site2"), kvs = ir_find_stat(p.policy, "exit.kv_only_layers");
	cr_assert(site >= 0 && kvs >= 0);
	cr_assert_eq(st->slots[site], 6);
	cr_assert_eq(st->slots[kvs], 6 * 2);
	interp_free(s);
	tp_pair_free(&p);
}

/* Removes the kv_write ops of the exit tails (what 'kv none' would leave). */
static void
drop_kv_writes(Module *m)
{
	Func *f = ir_find_func(m, "step");
	bool *keep = malloc(f->nops * sizeof *keep);
	for (uint32_t i = 0; i < f->nops; i++)
		keep[i] = f->ops[i].code != OP_KV_WRITE;
	pass_rebuild_func(m, f, keep, NULL);
	free(keep);
}

Test(early_exit, poisoned_cache_sees_no_nan)
{
	for (int kv = 2; kv <= 4; kv += 2) {
		TpPair p =
			tp_pair(4, kv, 21, "exit at 1, 2, 3 head head measure maxprob threshold 0.05 kv propagate;", false);
		InterpState *s;
		cr_assert_eq(tp_run_seq(&p, 0, false, true, NULL, &s), 0, "a NaN reached the logits");
		const InterpStats *st = interp_stats(s);
		int64_t exits = 0, sites = 0;
		for (uint32_t k = 0; k < p.policy->nstats; k++)
			if (strncmp(p.policy->stats[k].name, "exit.site", 9) == 0) {
				exits += st->slots[k];
				sites += st->slots[k] > 0;
			}
		cr_log_info("kv_heads %d: %lld of %d tokens exit, at %lld sites, %lld layers run", kv, (long long)exits,
		            NSTEP, (long long)sites, (long long)st->layers);
		cr_assert(exits > 0 && exits < NSTEP && sites >= 2,
		          "the threshold should make tokens exit at different sites (exits %lld, sites %lld)",
		          (long long)exits, (long long)sites);
		interp_free(s);
		drop_kv_writes(p.policy);
		cr_assert_gt(tp_run_seq(&p, 0, false, true, NULL, NULL), 0, "without the K/V tails, NaN must show");
		tp_pair_free(&p);
	}
}
