/* test_prune_compiled.c - structured pruning of zero units, compiled: a seeded random
 * Llama with chosen FFN neurons, heads, KV groups or layers zeroed (on the side that
 * makes their contribution zero) is compiled twice through the JIT, dense and with a
 * policy that prunes exactly the zeroed units (prune-structured, then the default
 * pipeline, as `elide compile` runs them).  A 10-token prefill and 14 decode steps
 * of both must agree: max |a - b| / max |b| <= 1e-5, same argmax, for every unit
 * kind with multi-head and grouped-query attention.  `prune sublayer` leaves layers
 * with one block: the compiled model (a layer without attention, so without a KV
 * cache, beside layers with one) must match the interpreter run of the same pruned
 * module (<= 1e-4, same argmax) for prefill and decode. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "frontend/frontend.h"
#include "passes/passes.h"
#include "passes/prune.h"
#include "tests/e2e/cg_jit_support.h"
#include "tests/support/compare.h"
#include "tests/support/randmodel.h"

typedef int (*StepFn)(void *, int32_t, int32_t, float *);
typedef int (*PrefillFn)(void *, const int32_t *, int32_t, int32_t, float *);

#define NPRE 10
#define NSTEP 14

static Diag diag; /* modules keep pointers to the sources registered here */

/* Loads the model of source `src` (written to dir) with policy (NULL: dense), loads
 * the weights and runs the passes `elide compile` runs. */
static Module *
load(const char *src, const char *weights, const char *policy)
{
	diag_init(&diag, stderr);
	Module *m = fe_load(src, policy, &diag);
	cr_assert(m, "the model does not load");
	cr_assert(ir_load_params(m, weights, &diag));
	cr_assert(pass_run_default(m, &diag), "passes failed");
	cr_assert(ir_verify(m, &diag));
	return m;
}

/* A case on disk: a fresh directory holding the random model's weights, its source
 * with `policy p { body }`, and 80 calibration tokens (calib.txt). */
typedef struct CaseFiles {
	char dir[256], weights[300], src[300];
} CaseFiles;

static void
write_case(const RmConfig *c, const char *body, CaseFiles *cf)
{
	char calib[300];
	snprintf(cf->dir, sizeof cf->dir, "/tmp/elide_prune_cc_XXXXXX");
	cr_assert(mkdtemp(cf->dir));
	snprintf(cf->weights, sizeof cf->weights, "%s/w.safetensors", cf->dir);
	snprintf(cf->src, sizeof cf->src, "%s/m.elide", cf->dir);
	snprintf(calib, sizeof calib, "%s/calib.txt", cf->dir);
	cr_assert(rm_write_model(c, cf->weights));
	char *model = rm_elide_source(c, "llama");
	FILE *f = fopen(cf->src, "w");
	fprintf(f, "%s\npolicy p for llama {\n  %s\n}\n", model, body);
	fclose(f);
	free(model);
	f = fopen(calib, "w");
	for (int i = 0; i < 80; i++)
		fprintf(f, "%d\n", (i * 29 + 3) % c->vocab);
	fclose(f);
}

static void
remove_case(const CaseFiles *cf)
{
	char cmd[300];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", cf->dir);
	cr_assert_eq(system(cmd), 0);
}

static void
compiled_case(RmConfig c, const char *body)
{
	CaseFiles cf;
	write_case(&c, body, &cf);

	Module *dense = load(cf.src, cf.weights, NULL), *pruned = load(cf.src, cf.weights, "p");
	cr_assert_lt(pass_param_count(pruned), pass_param_count(dense), "nothing was pruned");
	cr_assert_eq(pruned->nlayers, dense->nlayers - 1);
	cr_assert(pruned->manifest_notes && strstr(pruned->manifest_notes, "removed 4 "), "%s", pruned->manifest_notes);
	TJit *td = tj_new(dense, true), *tp = tj_new(pruned, true);
	float *a = xmalloc((size_t)c.vocab * sizeof *a), *b = xmalloc((size_t)c.vocab * sizeof *b);
	int32_t toks[NPRE];
	for (int i = 0; i < NPRE; i++)
		toks[i] = (int32_t)((i * 37 + 11) % c.vocab);
	cr_assert_eq(((PrefillFn)tj_sym(td, "prefill"))(td->ctx, toks, NPRE, 0, a), ELIDE_OK);
	cr_assert_eq(((PrefillFn)tj_sym(tp, "prefill"))(tp->ctx, toks, NPRE, 0, b), ELIDE_OK);
	double e = ts_rel_err(b, a, c.vocab);
	cr_assert(e <= 1e-5, "prefill: relative error %g", e);
	cr_assert_eq(ts_argmax(b, c.vocab), ts_argmax(a, c.vocab));
	int32_t tok = (int32_t)ts_argmax(a, c.vocab);
	for (int pos = NPRE; pos < NPRE + NSTEP; pos++) {
		cr_assert_eq(((StepFn)tj_sym(td, "step"))(td->ctx, tok, pos, a), ELIDE_OK);
		cr_assert_eq(((StepFn)tj_sym(tp, "step"))(tp->ctx, tok, pos, b), ELIDE_OK);
		e = ts_rel_err(b, a, c.vocab);
		cr_assert(e <= 1e-5, "step at %d: relative error %g", pos, e);
		cr_assert_eq(ts_argmax(b, c.vocab), ts_argmax(a, c.vocab), "argmax at %d", pos);
		tok = (int32_t)((ts_argmax(a, c.vocab) + pos) % c.vocab);
	}
	free(a);
	free(b);
	tj_free(td);
	tj_free(tp);
	ir_free_module(dense);
	ir_free_module(pruned);
	remove_case(&cf);
}

static RmConfig
config(int heads, int kv_heads, int layers, uint64_t seed)
{
	RmConfig c = rm_default_config(); /* smaller than the default: compile time */
	c.dim = 32;
	c.ffn = 64;
	c.vocab = 64;
	c.ctx = 32;
	c.heads = heads;
	c.kv_heads = kv_heads;
	c.layers = layers;
	c.seed = seed;
	return c;
}

/* Every unit kind in one model (compiles are the slow part): layer 1 loses FFN
 * neurons, layer 2 query heads, layer 3 a KV group, and layer 4 (all zero) goes. */
static void
all_units(int heads, int kv_heads, const char *wscore, const char *lscore)
{
	RmConfig c = config(heads, kv_heads, 6, 41);
	static bool zf[6 * 64], zh[6 * 8], zk[6 * 8], zl[6];
	memset(zf, 0, sizeof zf);
	memset(zh, 0, sizeof zh);
	memset(zk, 0, sizeof zk);
	memset(zl, 0, sizeof zl);
	for (int j = 0; j < 24; j++) /* layer 1: 24 neurons -> 40 kept */
		zf[64 + (j * 7 + 3) % 64] = true;
	if (heads == kv_heads) /* multi-head: a head is a KV group of one */
		zk[2 * kv_heads + 1] = zk[2 * kv_heads + 3] = true;
	else                   /* one query head in each group */
		zh[2 * heads + 1] = zh[2 * heads + 2] = true;
	zk[3 * kv_heads + 0] = true;
	zl[4] = true;
	c.zero_ffn = zf;
	c.zero_head = zh;
	c.zero_kv = zk;
	c.zero_layer = zl;
	char body[512];
	snprintf(body, sizeof body,
	         "prune ffn_neuron keep 40 score %s layers 1..2 calibrate \"calib.txt\" tokens 48;\n"
	         "  prune head keep 2 score %s layers 2..3 calibrate \"calib.txt\" tokens 48;\n"
	         "  prune kv_group keep %d score l2 layers 3..4;\n"
	         "  prune layer keep 5 score %s calibrate \"calib.txt\" tokens 48;",
	         wscore, wscore, kv_heads - 1, lscore);
	compiled_case(c, body);
}

Test(prune_compiled, all_units_gqa) { all_units(4, 2, "l2", "angular"); }
Test(prune_compiled, all_units_mha) { all_units(4, 4, "act", "bi"); }

/* ---- sublayers: compiled against the interpreter of the same module ---- */

static void
agree(const float *got, const float *want, int vocab, const char *what, int pos)
{
	double e = ts_rel_err(got, want, vocab);
	cr_assert(e <= 1e-4, "%s at %d: relative error %g", what, pos, e);
	cr_assert_eq(ts_argmax(got, vocab), ts_argmax(want, vocab), "%s argmax at %d", what, pos);
}

/* Layer 1 loses its attention and layer 2 its FFN (their output projections are
 * zero, so every score ranks them lowest); the compiled code, with a layer that has
 * no KV cache between layers that have one, must follow the interpreter. */
static void
sublayer_compiled(int heads, int kv_heads, const char *score)
{
	RmConfig c = config(heads, kv_heads, 4, 43);
	static bool za[4], zm[4];
	memset(za, 0, sizeof za);
	memset(zm, 0, sizeof zm);
	za[1] = zm[2] = true;
	c.zero_attn = za;
	c.zero_mlp = zm;
	char body[256];
	snprintf(body, sizeof body, "prune sublayer keep 2 score %s calibrate \"calib.txt\" tokens 48;", score);
	CaseFiles cf;
	write_case(&c, body, &cf);
	Module *m = load(cf.src, cf.weights, "p");
	cr_assert_eq(m->nlayers, 4);
	cr_assert_eq((int)m->nstates, 3, "the KV cache of layer 1 is still there");
	cr_assert_eq(ir_find_param(m, "wq.1"), -1);
	cr_assert_eq(ir_find_param(m, "w2.2"), -1);
	bool attn1 = false;
	for (uint32_t i = 0; i < m->funcs[0]->nops; i++)
		attn1 |= m->funcs[0]->ops[i].code == OP_ATTENTION && m->funcs[0]->ops[i].layer == 1;
	cr_assert_not(attn1, "layer 1 still has an attention op");
	TJit *t = tj_new(m, true);
	InterpState *st = interp_new(m);
	float *a = xmalloc((size_t)c.vocab * sizeof *a), *b = xmalloc((size_t)c.vocab * sizeof *b);
	char err[256];
	int32_t toks[NPRE];
	for (int i = 0; i < NPRE; i++)
		toks[i] = (int32_t)((i * 37 + 11) % c.vocab);
	cr_assert_eq(((PrefillFn)tj_sym(t, "prefill"))(t->ctx, toks, NPRE, 0, b), ELIDE_OK);
	cr_assert(interp_run(st, "prefill", toks, NPRE, 0, a, err, sizeof err), "%s", err);
	agree(b, a, c.vocab, "prefill", 0);
	int32_t tok = (int32_t)ts_argmax(a, c.vocab);
	for (int pos = NPRE; pos < NPRE + NSTEP; pos++) {
		cr_assert_eq(((StepFn)tj_sym(t, "step"))(t->ctx, tok, pos, b), ELIDE_OK);
		cr_assert(interp_run(st, "step", &tok, 1, pos, a, err, sizeof err), "%s", err);
		agree(b, a, c.vocab, "step", pos);
		tok = (int32_t)((ts_argmax(a, c.vocab) + pos) % c.vocab);
	}
	free(a);
	free(b);
	interp_free(st);
	tj_free(t);
	ir_free_module(m);
	remove_case(&cf);
}

Test(prune_compiled, sublayer_gqa_bi) { sublayer_compiled(4, 2, "bi"); }
Test(prune_compiled, sublayer_mha_l2) { sublayer_compiled(4, 4, "l2"); }
