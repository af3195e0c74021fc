/* test_prune_compiled.c - structured pruning of zero units, compiled: a seeded random
 * Llama with chosen FFN neurons, heads, KV groups or layers zeroed (on the side that
 * makes their contribution zero) is compiled twice through the JIT, dense and with a
 * policy that prunes exactly the zeroed units (prune-structured, then the default
 * pipeline, as `elide compile` runs them).  A 10-token prefill and 14 decode steps
 * of both must agree: max |a - b| / max |b| <= 1e-5, same argmax, for every unit
 * kind with multi-head and grouped-query attention. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "frontend/frontend.h"
#include "passes/passes.h"
#include "passes/prune.h"
#include "tests/e2e/cg_jit_support.h"
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

static void
compiled_case(RmConfig c, const char *body)
{
	char dir[256], weights[300], src[300], calib[300];
	snprintf(dir, sizeof dir, "/tmp/elide_prune_cc_XXXXXX");
	cr_assert(mkdtemp(dir));
	snprintf(weights, sizeof weights, "%s/w.safetensors", dir);
	snprintf(src, sizeof src, "%s/m.elide", dir);
	snprintf(calib, sizeof calib, "%s/calib.txt", dir);
	cr_assert(rm_write_model(&c, weights));
	char *model = rm_elide_source(&c, "llama");
	FILE *f = fopen(src, "w");
	fprintf(f, "%s\npolicy p for llama {\n  %s\n}\n", model, body);
	fclose(f);
	free(model);
	f = fopen(calib, "w");
	for (int i = 0; i < 80; i++)
		fprintf(f, "%d\n", (i * 29 + 3) % c.vocab);
	fclose(f);

	Module *dense = load(src, weights, NULL), *pruned = load(src, weights, "p");
	cr_assert_lt(prune_param_count(pruned), prune_param_count(dense), "nothing was pruned");
	TJit *td = tj_new(dense, true), *tp = tj_new(pruned, true);
	float *a = xmalloc((size_t)c.vocab * sizeof *a), *b = xmalloc((size_t)c.vocab * sizeof *b);
	int32_t toks[NPRE];
	for (int i = 0; i < NPRE; i++)
		toks[i] = (int32_t)((i * 37 + 11) % c.vocab);
	cr_assert_eq(((PrefillFn)tj_sym(td, "prefill"))(td->ctx, toks, NPRE, 0, a), ELIDE_OK);
	cr_assert_eq(((PrefillFn)tj_sym(tp, "prefill"))(tp->ctx, toks, NPRE, 0, b), ELIDE_OK);
	double e = tj_rel_err(b, a, c.vocab);
	cr_assert(e <= 1e-5, "prefill: relative error %g", e);
	cr_assert_eq(tj_argmax(b, c.vocab), tj_argmax(a, c.vocab));
	int32_t tok = (int32_t)tj_argmax(a, c.vocab);
	for (int pos = NPRE; pos < NPRE + NSTEP; pos++) {
		cr_assert_eq(((StepFn)tj_sym(td, "step"))(td->ctx, tok, pos, a), ELIDE_OK);
		cr_assert_eq(((StepFn)tj_sym(tp, "step"))(tp->ctx, tok, pos, b), ELIDE_OK);
		e = tj_rel_err(b, a, c.vocab);
		cr_assert(e <= 1e-5, "step at %d: relative error %g", pos, e);
		cr_assert_eq(tj_argmax(b, c.vocab), tj_argmax(a, c.vocab), "argmax at %d", pos);
		tok = (int32_t)((tj_argmax(a, c.vocab) + pos) % c.vocab);
	}
	free(a);
	free(b);
	tj_free(td);
	tj_free(tp);
	ir_free_module(dense);
	ir_free_module(pruned);
	char cmd[300];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
	cr_assert_eq(system(cmd), 0);
}

static RmConfig
config(int heads, int kv_heads, int layers, uint64_t seed)
{
	RmConfig c = rm_default_config();
	c.heads = heads;
	c.kv_heads = kv_heads;
	c.layers = layers;
	c.seed = seed;
	return c;
}

static void
ffn(int heads, int kv_heads, const char *score)
{
	RmConfig c = config(heads, kv_heads, 3, 41);
	static bool z[3 * 172];
	memset(z, 0, sizeof z);
	for (int j = 0; j < 44; j++) /* layer 1: 44 neurons -> 128 kept */
		z[172 + (j * 7 + 3) % 172] = true;
	c.zero_ffn = z;
	char body[160];
	snprintf(body, sizeof body, "prune ffn_neuron keep 128 score %s calibrate \"calib.txt\" tokens 48;", score);
	compiled_case(c, body);
}

Test(prune_compiled, ffn_maw_gqa) { ffn(4, 2, "maw"); }
Test(prune_compiled, ffn_act_mha) { ffn(4, 4, "act"); }

static void
attn(int heads, int kv_heads, const char *unit, bool by_head)
{
	RmConfig c = config(heads, kv_heads, 3, 43);
	static bool zk[3 * 8], zh[3 * 8];
	memset(zk, 0, sizeof zk);
	memset(zh, 0, sizeof zh);
	if (by_head) {
		zh[heads + 1] = zh[heads + heads - 2] = true; /* one query head in each group */
		c.zero_head = zh;
	} else {
		for (int g = 0; g < kv_heads; g += 2)
			zk[kv_heads + g] = true;
		c.zero_kv = zk;
	}
	int keep = by_head ? heads - 2 : kv_heads / 2;
	char body[160];
	snprintf(body, sizeof body, "prune %s keep %d score l2;", unit, keep);
	compiled_case(c, body);
}

Test(prune_compiled, kv_group_gqa) { attn(4, 2, "kv_group", false); }
Test(prune_compiled, kv_group_mha) { attn(4, 4, "kv_group", false); }
Test(prune_compiled, head_mha) { attn(4, 4, "head", false); }
Test(prune_compiled, head_gqa) { attn(4, 2, "head", true); }

static void
layers(int heads, int kv_heads, const char *score, int n)
{
	RmConfig c = config(heads, kv_heads, 5, 47);
	static bool zl[5];
	memset(zl, 0, sizeof zl);
	zl[1] = true;
	zl[2] = n > 1;
	c.zero_layer = zl;
	char body[160];
	snprintf(body, sizeof body, "prune layer keep %d score %s calibrate \"calib.txt\" tokens 64;", 5 - n, score);
	compiled_case(c, body);
}

Test(prune_compiled, layer_angular_2_gqa) { layers(4, 2, "angular", 2); }
Test(prune_compiled, layer_bi_1_mha) { layers(4, 4, "bi", 1); }
