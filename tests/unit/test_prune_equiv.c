/* test_prune_equiv.c - structured pruning of zero units changes nothing, through the
 * reference interpreter.  A seeded random Llama (tests/support/randmodel) has chosen
 * FFN neurons, heads, KV groups or layers zeroed on the side that makes their
 * contribution zero; the policy prunes exactly as many units as were zeroed, so
 * every score (l1, l2, maw, act, angular, bi) must pick the zero ones.  The pruned
 * module must verify, have the expected shapes, and give the dense model's logits
 * (max |a - b| / max |b| <= 1e-5) for 12 decode steps and a 10-token prefill, with
 * multi-head (kv_heads = heads) and grouped-query attention.  keep 1.0 leaves the
 * module byte-identical to the dense one apart from the policy.  The same holds for
 * `prune sublayer` of attention or FFN blocks whose output projection is zero (every
 * score), and for `drop layers` of zeroed layers (the drop-layers pass). */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "frontend/frontend.h"
#include "ir/ir.h"
#include "passes/passes.h"
#include "passes/prune.h"
#include "tests/support/compare.h"
#include "tests/support/randmodel.h"

#define NSTEP 12
#define NPRE 10

typedef struct Case {
	char dir[256];
	char weights[300];
	char src[300];
	Module *dense, *pruned;
	char *diag;       /* diagnostics of the pruned load and pass */
	size_t ndiag;
} Case;

static const int32_t toks[NSTEP] = { 1, 17, 42, 255, 0, 99, 3, 3, 128, 7, 64, 200 };

static Module *
load(const Case *k, const char *policy, Diag *d)
{
	Module *m = fe_load(k->src, policy, d);
	cr_assert(m, "the model does not load");
	cr_assert(ir_load_params(m, k->weights, d));
	return m;
}

/* Writes the model, its source with `policy p { body }`, and calibration tokens;
 * loads the dense and the pruned module and runs the pass on the latter. */
static bool
setup(Case *k, const RmConfig *c, const char *body)
{
	memset(k, 0, sizeof *k);
	snprintf(k->dir, sizeof k->dir, "%s/prune_equiv_XXXXXX", ELIDE_BINARY_DIR);
	cr_assert(mkdtemp(k->dir));
	snprintf(k->weights, sizeof k->weights, "%s/w.safetensors", k->dir);
	snprintf(k->src, sizeof k->src, "%s/m.elide", k->dir);
	cr_assert(rm_write_model(c, k->weights));
	char *model = rm_elide_source(c, "llama");
	FILE *f = fopen(k->src, "w");
	fprintf(f, "%s\npolicy p for llama {\n  %s\n}\n", model, body);
	fclose(f);
	free(model);
	char calib[300];
	snprintf(calib, sizeof calib, "%s/calib.txt", k->dir);
	f = fopen(calib, "w");
	RmRng r = { 7 };
	for (int i = 0; i < 96; i++)
		fprintf(f, "%d ", (int)(rm_rng_next(&r) % (uint64_t)c->vocab));
	fclose(f);
	Diag d;
	diag_init(&d, stderr);
	k->dense = load(k, NULL, &d);
	FILE *mem = open_memstream(&k->diag, &k->ndiag);
	diag_init(&d, mem);
	k->pruned = load(k, "p", &d);
	bool ok = pass_drop_layers(k->pruned, &d) && pass_prune_structured(k->pruned, &d);
	if (ok) {
		ok = ir_verify(k->pruned, &d);
		cr_assert(ok, "pruned module does not verify");
	}
	fclose(mem);
	return ok;
}

static void
teardown(Case *k)
{
	char cmd[600];
	ir_free_module(k->dense);
	ir_free_module(k->pruned);
	free(k->diag);
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", k->dir);
	cr_assert_eq(system(cmd), 0);
}

static void
run(Module *m, int vocab, float *step_out, float *pre_out)
{
	char err[256];
	InterpState *s = interp_new(m);
	for (int t = 0; t < NSTEP; t++)
		cr_assert(interp_run(s, "step", &toks[t], 1, t, step_out + t * vocab, err, sizeof err), "%s", err);
	interp_reset(s);
	cr_assert(interp_run(s, "prefill", toks, NPRE, 0, pre_out, err, sizeof err), "%s", err);
	interp_free(s);
}

/* The dense and pruned logits agree. */
static void
check_equal(Case *k, int vocab)
{
	float *a = malloc(sizeof(float) * vocab * (NSTEP + 1)), *b = malloc(sizeof(float) * vocab * (NSTEP + 1));
	run(k->dense, vocab, a, a + NSTEP * vocab);
	run(k->pruned, vocab, b, b + NSTEP * vocab);
	double e1 = ts_rel_err(b, a, (int64_t)NSTEP * vocab), e2 = ts_rel_err(b + NSTEP * vocab, a + NSTEP * vocab, vocab);
	cr_assert(e1 <= 1e-5, "decode: max relative error %g", e1);
	cr_assert(e2 <= 1e-5, "prefill: max relative error %g", e2);
	/* the pruning did something: the parameter count went down */
	cr_assert_lt(pass_param_count(k->pruned), pass_param_count(k->dense));
	free(a);
	free(b);
}

static Type
ptype(const Module *m, const char *name)
{
	int32_t i = ir_find_param(m, name);
	cr_assert_geq(i, 0, "no param '%s'", name);
	return m->params[i].type;
}

static RmConfig
config(int heads, int kv_heads, int layers)
{
	RmConfig c = rm_default_config();
	c.heads = heads;
	c.kv_heads = kv_heads;
	c.layers = layers;
	return c;
}

/* ---- FFN neurons ---- */

static void
ffn_case(int heads, int kv_heads, const char *score)
{
	RmConfig c = config(heads, kv_heads, 3);
	bool *z = calloc((size_t)c.layers * c.ffn, 1);
	RmRng r = { 11 };
	int nz = 0;
	while (nz < 44) { /* layer 1: 44 random neurons -> 128 kept */
		int j = (int)(rm_rng_next(&r) % (uint64_t)c.ffn);
		if (!z[c.ffn + j])
			z[c.ffn + j] = true, nz++;
	}
	c.zero_ffn = z;
	char body[200];
	snprintf(body, sizeof body, "prune ffn_neuron keep 128 score %s calibrate \"calib.txt\" tokens 64;", score);
	Case k;
	cr_assert(setup(&k, &c, body), "%s", k.diag);
	cr_assert_eq(ptype(k.pruned, "w1.1").dims[0], 128);
	cr_assert_eq(ptype(k.pruned, "w3.1").dims[0], 128);
	cr_assert_eq(ptype(k.pruned, "w2.1").dims[1], 128);
	cr_assert_eq(ptype(k.pruned, "w1.0").dims[0], 172); /* first and last protected */
	cr_assert_eq(ptype(k.pruned, "w1.2").dims[0], 172);
	cr_assert(k.pruned->manifest_notes && strstr(k.pruned->manifest_notes, "layer 1: 172 -> 128"));
	check_equal(&k, c.vocab);
	teardown(&k);
	free(z);
}

Test(prune_equiv, ffn_l1_mha) { ffn_case(4, 4, "l1"); }
Test(prune_equiv, ffn_l2_gqa) { ffn_case(4, 2, "l2"); }
Test(prune_equiv, ffn_maw_gqa) { ffn_case(4, 2, "maw"); }
Test(prune_equiv, ffn_act_mha) { ffn_case(4, 4, "act"); }
Test(prune_equiv, ffn_act_gqa) { ffn_case(4, 2, "act"); }

/* every layer, multiple 8, a fraction: 172 * 0.75 = 129 -> 128 */
Test(prune_equiv, ffn_all_layers_fraction)
{
	RmConfig c = config(4, 2, 2);
	bool *z = calloc((size_t)c.layers * c.ffn, 1);
	for (int l = 0; l < 2; l++)
		for (int j = 0; j < 44; j++)
			z[l * c.ffn + (j * 3 + l) % c.ffn] = true;
	c.zero_ffn = z;
	Case k;
	cr_assert(setup(&k, &c, "prune ffn_neuron keep 0.75 score l2 protect none;"), "%s", k.diag);
	cr_assert_eq(ptype(k.pruned, "w1.0").dims[0], 128);
	cr_assert_eq(ptype(k.pruned, "w2.1").dims[1], 128);
	check_equal(&k, c.vocab);
	teardown(&k);
	free(z);
}

/* ---- attention ---- */

static void
kv_case(int heads, int kv_heads, const char *unit, const char *score, bool by_head)
{
	RmConfig c = config(heads, kv_heads, 3);
	bool *zk = calloc((size_t)c.layers * kv_heads, 1), *zh = calloc((size_t)c.layers * heads, 1);
	int hd = c.dim / heads;
	if (by_head) { /* GQA head pruning: one query head of each group (heads 0 and 3) */
		zh[heads + 0] = zh[heads + heads - 1] = true;
		c.zero_head = zh;
	} else { /* half the KV groups: kv heads 1, 3, ... */
		for (int g = 1; g < kv_heads; g += 2)
			zk[kv_heads + g] = true;
		c.zero_kv = zk;
	}
	char body[200];
	int keep = by_head ? heads - 2 : kv_heads - kv_heads / 2;
	snprintf(body, sizeof body, "prune %s keep %d score %s calibrate \"calib.txt\" tokens 48;", unit, keep, score);
	Case k;
	cr_assert(setup(&k, &c, body), "%s", k.diag);
	int nq = by_head ? heads - 2 : (heads / kv_heads) * keep, nkv = by_head ? kv_heads : keep;
	cr_assert_eq(ptype(k.pruned, "wq.1").dims[0], nq * hd);
	cr_assert_eq(ptype(k.pruned, "wk.1").dims[0], nkv * hd);
	cr_assert_eq(ptype(k.pruned, "wv.1").dims[0], nkv * hd);
	cr_assert_eq(ptype(k.pruned, "wo.1").dims[1], nq * hd);
	cr_assert_eq(ptype(k.pruned, "wq.0").dims[0], c.dim);
	cr_assert_eq(k.pruned->states[1].kv_heads, nkv);
	cr_assert_eq(k.pruned->states[0].kv_heads, kv_heads);
	check_equal(&k, c.vocab);
	teardown(&k);
	free(zk);
	free(zh);
}

Test(prune_equiv, kv_group_gqa_l2) { kv_case(4, 2, "kv_group", "l2", false); }
Test(prune_equiv, kv_group_gqa_act) { kv_case(8, 4, "kv_group", "act", false); }
Test(prune_equiv, kv_group_mha_l1) { kv_case(4, 4, "kv_group", "l1", false); }
Test(prune_equiv, head_mha_l2) { kv_case(4, 4, "head", "l2", false); }
Test(prune_equiv, head_mha_act) { kv_case(4, 4, "head", "act", false); }
Test(prune_equiv, head_gqa_l2) { kv_case(4, 2, "head", "l2", true); }
Test(prune_equiv, head_gqa_act) { kv_case(4, 2, "head", "act", true); }

/* ---- layers ---- */

static void
layer_case(int heads, int kv_heads, const char *score, int n)
{
	RmConfig c = config(heads, kv_heads, 5);
	bool zl[5] = { false, false, true, n > 1, false };
	c.zero_layer = zl;
	char body[200];
	snprintf(body, sizeof body, "prune layer keep %d score %s calibrate \"calib.txt\" tokens 80;", 5 - n, score);
	Case k;
	cr_assert(setup(&k, &c, body), "%s", k.diag);
	cr_assert_eq(k.pruned->nlayers, 5 - n);
	cr_assert_eq((int)k.pruned->nstates, 5 - n);
	/* the layer after the removed ones is now layer 2 */
	cr_assert_eq(ir_find_param(k.pruned, n > 1 ? "wq.3" : "wq.2"), -1);
	cr_assert_geq(ir_find_param(k.pruned, "wq.4"), 0);
	check_equal(&k, c.vocab);
	teardown(&k);
}

Test(prune_equiv, layer_angular_1_gqa) { layer_case(4, 2, "angular", 1); }
Test(prune_equiv, layer_angular_2_mha) { layer_case(4, 4, "angular", 2); }
Test(prune_equiv, layer_bi_1_mha) { layer_case(4, 4, "bi", 1); }
Test(prune_equiv, layer_bi_2_gqa) { layer_case(4, 2, "bi", 2); }

/* ---- sublayers (residual blocks) ---- */

/* Five layers; the attention of layers za and the FFN of layers zm add nothing
 * (o_proj, down_proj zero).  The policy keeps all candidate blocks but those, so
 * every score must pick exactly the neutral ones: bi and angular see in == out,
 * l1 and l2 a zero output projection.  Attention that goes takes its KV cache. */
static void
sublayer_case(int heads, int kv_heads, const char *score, const char *block, const bool *za, const bool *zm)
{
	RmConfig c = config(heads, kv_heads, 5);
	c.zero_attn = za;
	c.zero_mlp = zm;
	int ncand = 0, ngone = 0, nattn = 0;
	for (int l = 1; l < 4; l++) { /* first and last protected */
		ncand += (strcmp(block, "") == 0 ? 2 : 1);
		ngone += (za[l] && strcmp(block, "ffn") != 0) + (zm[l] && strcmp(block, "attention") != 0);
		nattn += za[l] && strcmp(block, "ffn") != 0;
	}
	char body[200];
	snprintf(body, sizeof body, "prune sublayer keep %d %s%s score %s calibrate \"calib.txt\" tokens 80;",
	         ncand - ngone, block[0] ? "block " : "", block, score);
	Case k;
	cr_assert(setup(&k, &c, body), "%s", k.diag);
	cr_assert_eq(k.pruned->nlayers, 5);
	cr_assert_eq((int)k.pruned->nstates, 5 - nattn);
	for (int l = 0; l < 5; l++) {
		char wq[16], w2[16], an[32], fn[32];
		snprintf(wq, sizeof wq, "wq.%d", l);
		snprintf(an, sizeof an, "attn_norm.%d", l);
		snprintf(w2, sizeof w2, "w2.%d", l);
		snprintf(fn, sizeof fn, "ffn_norm.%d", l);
		bool ga = za[l] && l > 0 && l < 4 && strcmp(block, "ffn") != 0;
		bool gm = zm[l] && l > 0 && l < 4 && strcmp(block, "attention") != 0;
		cr_assert_eq(ir_find_param(k.pruned, wq) < 0, ga, "%s", wq);
		cr_assert_eq(ir_find_param(k.pruned, an) < 0, ga, "%s", an);
		cr_assert_eq(ir_find_param(k.pruned, w2) < 0, gm, "%s", w2);
		cr_assert_eq(ir_find_param(k.pruned, fn) < 0, gm, "%s", fn);
	}
	cr_assert(k.pruned->manifest_notes && strstr(k.pruned->manifest_notes, "prune sublayer ("), "notes: %s",
	          k.pruned->manifest_notes ? k.pruned->manifest_notes : "none");
	check_equal(&k, c.vocab);
	teardown(&k);
}

static const bool za13[5] = { false, true, false, true, false }, zm2[5] = { false, false, true, false, false };
static const bool za2[5] = { false, false, true, false, false }, zm13[5] = { false, true, false, true, false };
static const bool none5[5] = { false };

Test(prune_equiv, sublayer_bi_mha) { sublayer_case(4, 4, "bi", "", za13, zm2); }
Test(prune_equiv, sublayer_bi_gqa) { sublayer_case(4, 2, "bi", "", za2, zm13); }
Test(prune_equiv, sublayer_angular_mha) { sublayer_case(4, 4, "angular", "", za2, zm13); }
Test(prune_equiv, sublayer_angular_gqa) { sublayer_case(4, 2, "angular", "", za13, zm2); }
Test(prune_equiv, sublayer_l1_mha) { sublayer_case(4, 4, "l1", "", za13, zm2); }
Test(prune_equiv, sublayer_l1_gqa) { sublayer_case(4, 2, "l1", "", za2, zm13); }
Test(prune_equiv, sublayer_l2_mha) { sublayer_case(4, 4, "l2", "", za2, zm13); }
Test(prune_equiv, sublayer_l2_gqa) { sublayer_case(4, 2, "l2", "", za13, zm2); }
/* `block` limits the candidates to one kind: the other kind's neutral blocks stay */
Test(prune_equiv, sublayer_attention_only_gqa) { sublayer_case(4, 2, "bi", "attention", za13, zm2); }
Test(prune_equiv, sublayer_ffn_only_mha) { sublayer_case(4, 4, "l2", "ffn", none5, zm13); }

/* ---- static layer drop (the drop-layers pass) ---- */

/* `drop layers` of layers whose o_proj and down_proj are zero (identity blocks):
 * the model that is left gives the dense logits. */
static void
drop_case(int heads, int kv_heads, const bool *zl, const char *body, int nlayers, const char *gone,
          const char *left)
{
	RmConfig c = config(heads, kv_heads, 5);
	c.zero_layer = zl;
	Case k;
	cr_assert(setup(&k, &c, body), "%s", k.diag);
	cr_assert_eq(k.pruned->nlayers, nlayers);
	cr_assert_eq((int)k.pruned->nstates, nlayers);
	cr_assert_eq(ir_find_param(k.pruned, gone), -1, "%s is still there", gone);
	cr_assert_geq(ir_find_param(k.pruned, left), 0, "%s went", left);
	cr_assert(k.pruned->manifest_notes && strstr(k.pruned->manifest_notes, "drop layers: "), "notes: %s",
	          k.pruned->manifest_notes ? k.pruned->manifest_notes : "none");
	cr_assert_eq(k.pruned->policy->nstmts, 0, "the realised statements stay in the policy");
	check_equal(&k, c.vocab);
	teardown(&k);
}

Test(prune_equiv, drop_range_mha)
{
	static const bool zl[5] = { false, false, true, true, false };
	drop_case(4, 4, zl, "drop layers 2..4;", 3, "wq.3", "wq.4");
}

Test(prune_equiv, drop_list_gqa)
{
	static const bool zl[5] = { false, true, false, true, false };
	drop_case(4, 2, zl, "drop layers 1, 3;", 3, "wq.1", "wq.2");
}

/* Drops come first and indices are those of the model as written: after `drop layers
 * 1`, `layers 3..4` of the prune statement still names the original layer 3, and
 * `keep 3` counts the layers left. */
Test(prune_equiv, drop_then_prune_layer)
{
	static const bool zl[5] = { false, true, false, true, false };
	drop_case(4, 2, zl, "prune layer keep 3 score l2 layers 3..4; drop layers 1;", 3, "wq.3", "wq.2");
}

Test(prune_equiv, drop_every_remaining_layer)
{
	RmConfig c = config(4, 4, 3);
	Case k;
	cr_assert_not(setup(&k, &c, "drop layers 0; drop layers 1, 2;"));
	cr_expect(strstr(k.diag, "drop removes every remaining layer of the model (2)"), "%s", k.diag);
	teardown(&k);
}

/* ---- neutral settings ---- */

static char *
print_model_only(const Module *m)
{
	char *s = ir_print_module_str(m);
	char *p = strstr(s, "\npolicy");
	if (p) { /* cut the policy block: up to the next blank line */
		char *e = strstr(p + 1, "}\n");
		memmove(p, e + 2, strlen(e + 2) + 1);
	}
	return s;
}

Test(prune_equiv, keep_one_is_identity)
{
	RmConfig c = config(4, 2, 3);
	Case k;
	cr_assert(setup(&k, &c,
	                "prune ffn_neuron keep 1.0 score maw protect none; prune kv_group keep 1.0; "
	                "prune head keep 4 score l1; prune layer keep 3 score l2; prune sublayer keep 1.0 score l2;"),
	          "%s", k.diag);
	Diag d;
	diag_init(&d, stderr);
	cr_assert(pass_prune_structured(k.dense, &d));
	char *a = print_model_only(k.dense), *b = print_model_only(k.pruned);
	cr_assert_str_eq(b, a);
	cr_assert_null(k.pruned->manifest_notes);
	cr_assert_eq(k.pruned->policy->nstmts, 0); /* realised, so a second run cuts nothing */
	free(a);
	free(b);
	teardown(&k);
}

/* ---- errors the pass reports (the front end checks what needs no model) ---- */

static void
error_case(const RmConfig *c, const char *body, const char *want)
{
	Case k;
	cr_assert_not(setup(&k, c, body), "expected an error for: %s", body);
	cr_assert(strstr(k.diag, want), "expected '%s' in:\n%s", want, k.diag);
	cr_assert(strstr(k.diag, "m.elide:"), "no location in:\n%s", k.diag);
	teardown(&k);
}

Test(prune_equiv, errors)
{
	RmConfig c = config(4, 2, 3);
	error_case(&c, "prune ffn_neuron keep 400;", "keep 400 is larger than the 172 ffn neurons of layer 1");
	error_case(&c, "prune kv_group keep 3;", "keep 3 is larger than the 2 kv groups of layer 1");
	error_case(&c, "prune ffn_neuron keep 0.001 multiple 1;", "keep 0.001 leaves none of the 172 ffn neurons");
	error_case(&c, "prune layer keep 0.1 score l2;", "keep 0.1 of 3 layers prunes every layer");
	error_case(&c, "prune layer keep 1 score l2;", "but only 1 may be removed");
	error_case(&c, "prune layer keep 2 score angular;", "score 'angular' needs calibration tokens");
	error_case(&c, "prune sublayer keep 3 score l2;", "keep 3 is larger than the 2 candidate blocks");
	error_case(&c, "prune sublayer keep 1 block ffn score l2 layers 0..1;",
	           "keep 1 is larger than the 0 candidate ffn blocks");
	error_case(&c, "prune sublayer keep 0.05 score l2 protect none;", "keep 0.05 leaves none of the 6 candidate blocks");
	error_case(&c, "prune sublayer keep 4 score bi protect none;", "score 'bi' needs calibration tokens");
}

/* Both blocks of a zeroed layer rank lowest: an error that names the layer and the
 * units that remove whole layers. */
Test(prune_equiv, sublayer_both_blocks_is_an_error)
{
	RmConfig c = config(4, 2, 3);
	static const bool zl[3] = { false, true, false };
	c.zero_layer = zl;
	error_case(&c, "prune sublayer keep 4 score l1 protect none;",
	           "keep 4 removes both blocks of layer 1; remove the whole layer with 'prune layer' or 'drop layers'");
}
