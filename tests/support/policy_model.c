/* policy_model.c - a random model with a policy through the front end and the default
 * pipeline, the dense/policy pair and its interpreted step runner (policy_model.h). */
#include "tests/support/policy_model.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "frontend/frontend.h"
#include "passes/passes.h"

Module *
tp_load(const RmConfig *c, const char *weights, const char *policy_body, int *nwarnings)
{
	return tp_load_skip(c, weights, policy_body, NULL, nwarnings);
}

Module *
tp_load_skip(const RmConfig *c, const char *weights, const char *policy_body, const char *skip, int *nwarnings)
{
	PassOptions o = { .skip = skip };
	char *model = rm_elide_source(c, "llama");
	size_t n = strlen(model) + strlen(policy_body) + 64;
	char *text = malloc(n);
	snprintf(text, n, "%s\npolicy p for llama {\n  %s\n}\n", model, policy_body);
	free(model);
	Diag d;
	diag_init(&d, stderr);
	Module *m = fe_load_text("policy.elide", text, strlen(text), policy_body[0] ? "p" : NULL, &d);
	free(text);
	if (m && !(ir_load_params(m, weights, &d) && pass_run_default_opts(m, &o, &d) && ir_verify(m, &d))) {
		ir_free_module(m);
		m = NULL;
	}
	if (nwarnings)
		*nwarnings = d.nwarnings;
	return m;
}

Module *
tp_load_ok(const RmConfig *c, const char *weights, const char *policy_body, bool no_warnings)
{
	int warnings = 0;
	Module *m = tp_load(c, weights, policy_body, &warnings);
	cr_assert(m, "the model does not load, or the pipeline fails");
	if (no_warnings)
		cr_assert_eq(warnings, 0, "'%s' was not applied", policy_body);
	return m;
}

RmConfig
tp_config(int layers, int kv_heads, uint64_t seed)
{
	return (RmConfig){ .dim = 32, .layers = layers, .heads = 4, .kv_heads = kv_heads, .ffn = 48,
		           .vocab = TP_VOCAB, .ctx = TP_NSTEP + 8, .seed = seed };
}

const char *
tp_write_weights(const RmConfig *c, const char *prefix)
{
	static char path[256];
	snprintf(path, sizeof path, "%s/%s_%d_%llu_%ld.safetensors", ELIDE_BINARY_DIR, prefix, c->kv_heads,
	         (unsigned long long)c->seed, (long)getpid());
	cr_assert(rm_write_model(c, path), "cannot write %s", path);
	return path;
}

int32_t
tp_token(int t)
{
	return (int32_t)((t * 37 + 11) % TP_VOCAB);
}

const char *
tp_write_calib(const char *name)
{
	static char path[256];
	snprintf(path, sizeof path, "%s/%s", ELIDE_BINARY_DIR, name);
	FILE *f = fopen(path, "w");
	cr_assert(f, "cannot write %s", path);
	for (int i = 0; i < 96; i++)
		fprintf(f, "%d ", tp_token(i * 7 + 3));
	fclose(f);
	return path;
}

TpPair
tp_pair(int layers, int kv_heads, uint64_t seed, const char *policy_body, bool no_warnings)
{
	TpPair p = { .c = tp_config(layers, kv_heads, seed) };
	const char *path = tp_write_weights(&p.c, "pair");
	p.dense = tp_load_ok(&p.c, path, "", no_warnings);
	p.policy = tp_load_ok(&p.c, path, policy_body, no_warnings);
	remove(path);
	return p;
}

void
tp_pair_free(TpPair *p)
{
	ir_free_module(p->dense);
	ir_free_module(p->policy);
}

bool
tp_has_nan(const float *x, int n)
{
	for (int k = 0; k < n; k++)
		if (isnan(x[k]))
			return true;
	return false;
}

int
tp_run_seq(TpPair *p, int np, bool same, bool poison, int64_t *layers, InterpState **keep)
{
	InterpState *a = interp_new(p->dense), *b = interp_new(p->policy);
	interp_set_poison(b, poison);
	float la[TP_VOCAB], lb[TP_VOCAB];
	char err[256];
	int nan_calls = 0;
	if (np) {
		int32_t toks[TP_NSTEP];
		for (int t = 0; t < np; t++)
			toks[t] = tp_token(t);
		cr_assert(interp_run(a, "prefill", toks, np, 0, la, err, sizeof err), "%s", err);
		cr_assert(interp_run(b, "prefill", toks, np, 0, lb, err, sizeof err), "%s", err);
		if (same)
			cr_assert(memcmp(la, lb, sizeof la) == 0, "prefill: logits differ from the dense model");
		nan_calls += tp_has_nan(lb, TP_VOCAB);
	}
	for (int t = np; t < TP_NSTEP; t++) {
		int32_t tok = tp_token(t);
		int64_t before = interp_stats(b)->layers;
		cr_assert(interp_run(a, "step", &tok, 1, t, la, err, sizeof err), "%s", err);
		cr_assert(interp_run(b, "step", &tok, 1, t, lb, err, sizeof err), "%s", err);
		if (layers)
			layers[t] = interp_stats(b)->layers - before;
		if (same)
			cr_assert(memcmp(la, lb, sizeof la) == 0, "step %d: logits differ from the dense model", t);
		nan_calls += tp_has_nan(lb, TP_VOCAB);
	}
	interp_free(a);
	if (keep)
		*keep = b;
	else
		interp_free(b);
	return nan_calls;
}
