/* test_sparse_prefill.c - block-sparse prefill attention (attention_block,
 * docs/sparse.md) compiled and interpreted, on seeded random Llamas, multi-head and
 * grouped-query, with blocks of B = 8 (4 for gamma 0.9) and prompts of 1, B-1, B,
 * 3B+5 and 8B tokens, plus a prompt in two calls whose second starts inside a block:
 *   - top-K of every block, and prompts shorter than min_tokens, give the dense
 *     logits bit for bit, compiled and interpreted;
 *   - small top-K and coverage (gamma 0.5, 0.9): compiled == interpreter (relative
 *     error <= 1e-4, same argmax) at 1 and 2 threads for the prefill and the decode
 *     steps after it (so the cache, and the page bounds of a Quest decode, are written
 *     in full), and the stat slots (key blocks and pages visited per layer) are equal;
 *   - the sparse prefill visits fewer key blocks than dense and changes the logits. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/e2e/cg_jit_support.h"
#include "tests/support/compare.h"
#include "tests/support/policy_model.h"
#include "tests/support/randmodel.h"

typedef int (*StepFn)(void *, int32_t, int32_t, float *);
typedef int (*PrefillFn)(void *, const int32_t *, int32_t, int32_t, float *);
typedef int (*ThreadsFn)(void *, int);
typedef int (*ResetFn)(void *);
typedef int64_t (*StatFn)(const void *, int);

enum { B = 8, NSTEP = 12, VOCAB = 64, NCASE = 6, MAXOUT = 2 + NSTEP };

/* Prompt lengths; the last case is 3B+5 tokens then 35 more from position 3B+5. */
static const int first_len[NCASE] = { 1, B - 1, B, 3 * B + 5, 8 * B, 3 * B + 5 };
static const int second_len[NCASE] = { 0, 0, 0, 0, 0, 35 };

static RmConfig
config(int kv_heads)
{
	return (RmConfig){ .dim = 32, .layers = 2, .heads = 4, .kv_heads = kv_heads, .ffn = 48, .vocab = VOCAB,
	                   .ctx = 128, .seed = 400 + (uint64_t)kv_heads };
}

static Module *
load(int kv_heads, const char *body)
{
	RmConfig c = config(kv_heads);
	char path[256];
	snprintf(path, sizeof path, "%s/sprefill_%d.safetensors", ELIDE_BINARY_DIR, kv_heads);
	cr_assert(rm_write_model(&c, path));
	int warnings = 0;
	/* without row-sink: it runs the dense model's last query row alone (a GEMV where
	 * attention_block's model, which it does not sink through, runs a GEMM row), and
	 * bit-for-bit equality with dense holds for the same kernels only; row-sink is
	 * checked against the interpreter in test_row_sink.c */
	Module *m = tp_load_skip(&c, path, body, "row-sink", &warnings);
	cr_assert(m, "the model does not load, or the pipeline fails");
	cr_assert_eq(warnings, 0, "the policy '%s' is not applied in full", body);
	return m;
}

static int32_t
token(int i)
{
	return (int32_t)((i * 37 + 11) % VOCAB);
}

/* One case's logits: the prefill call(s), then NSTEP greedy-fed steps; rows of
 * VOCAB, *nrows of them.  Stats are those of the case alone (reset before). */
typedef struct Outs {
	float o[MAXOUT * VOCAB];
	int nrows;
	int64_t stats[16];
} Outs;

static int32_t
next_token(const float *logits, int s)
{
	return (int32_t)((ts_argmax(logits, VOCAB) * 7 + s) % VOCAB);
}

static void
run_compiled(TJit *t, const Module *m, int k, Outs *out)
{
	int32_t toks[128];
	for (int i = 0; i < first_len[k] + second_len[k]; i++)
		toks[i] = token(i);
	cr_assert_eq(((ResetFn)tj_sym(t, "reset"))(t->ctx), ELIDE_OK);
	PrefillFn pre = (PrefillFn)tj_sym(t, "prefill");
	int r = 0, pos = first_len[k];
	cr_assert_eq(pre(t->ctx, toks, first_len[k], 0, out->o), ELIDE_OK);
	if (second_len[k]) {
		cr_assert_eq(pre(t->ctx, toks + pos, second_len[k], pos, out->o + (size_t)++r * VOCAB), ELIDE_OK);
		pos += second_len[k];
	}
	StepFn step = (StepFn)tj_sym(t, "step");
	for (int s = 0; s < NSTEP; s++, r++)
		cr_assert_eq(step(t->ctx, next_token(out->o + (size_t)r * VOCAB, s), pos + s, out->o + (size_t)(r + 1) * VOCAB),
		             ELIDE_OK);
	out->nrows = r + 1;
	StatFn stat = (StatFn)tj_sym(t, "stat");
	for (uint32_t q = 0; q < m->nstats; q++)
		out->stats[q] = stat(t->ctx, (int)q);
}

static void
run_interp(InterpState *is, const Module *m, int k, Outs *out)
{
	int32_t toks[128];
	char err[256];
	for (int i = 0; i < first_len[k] + second_len[k]; i++)
		toks[i] = token(i);
	interp_reset(is);
	int r = 0, pos = first_len[k];
	cr_assert(interp_run(is, "prefill", toks, first_len[k], 0, out->o, err, sizeof err), "%s", err);
	if (second_len[k]) {
		cr_assert(interp_run(is, "prefill", toks + pos, second_len[k], pos, out->o + (size_t)++r * VOCAB, err,
		                     sizeof err),
		          "%s", err);
		pos += second_len[k];
	}
	for (int s = 0; s < NSTEP; s++, r++) {
		int32_t tok = next_token(out->o + (size_t)r * VOCAB, s);
		cr_assert(interp_run(is, "step", &tok, 1, pos + s, out->o + (size_t)(r + 1) * VOCAB, err, sizeof err), "%s",
		          err);
	}
	out->nrows = r + 1;
	for (uint32_t q = 0; q < m->nstats; q++)
		out->stats[q] = interp_stats(is)->slots[q];
}

/* Every case of `body` gives the dense model's logits bit for bit, compiled and
 * interpreted. */
static void
same_as_dense(int kv_heads, const char *body)
{
	Module *dense = load(kv_heads, ""), *m = load(kv_heads, body);
	cr_assert_eq(tj_count_ops(m, OP_ATTENTION_BLOCK), 2);
	cr_assert_eq(tj_count_ops(dense, OP_ATTENTION_BLOCK), 0);
	TJit *td = tj_new(dense, true), *tm = tj_new(m, true);
	InterpState *id = interp_new(dense), *im = interp_new(m);
	Outs *a = xmalloc(sizeof *a), *b = xmalloc(sizeof *b);
	for (int k = 0; k < NCASE; k++) {
		run_compiled(td, dense, k, a);
		run_compiled(tm, m, k, b);
		cr_assert(memcmp(a->o, b->o, (size_t)a->nrows * VOCAB * sizeof(float)) == 0,
		          "compiled, case %d: '%s' differs from dense", k, body);
		run_interp(id, dense, k, a);
		run_interp(im, m, k, b);
		cr_assert(memcmp(a->o, b->o, (size_t)a->nrows * VOCAB * sizeof(float)) == 0,
		          "interpreted, case %d: '%s' differs from dense", k, body);
	}
	free(a);
	free(b);
	interp_free(id);
	interp_free(im);
	tj_free(td);
	tj_free(tm);
	ir_free_module(dense);
	ir_free_module(m);
}

Test(sparse_prefill, topk_of_every_block_is_dense_mha) { same_as_dense(4, "attend prefill block_topk(block 8, topk 16);"); }
Test(sparse_prefill, topk_of_every_block_is_dense_gqa) { same_as_dense(2, "attend prefill block_topk(block 8, topk 15);"); }
Test(sparse_prefill, short_prompts_are_dense)
{
	same_as_dense(2, "attend prefill block_topk(block 8, topk 1) min_tokens 65;");
}

/* Key blocks of `block` positions a dense prefill of the case's calls visits, per kv
 * head (per layer). */
static int64_t
dense_blocks(int k, int block)
{
	int64_t n = 0;
	for (int p = 0; p < first_len[k] + second_len[k]; p++)
		n += p / block + 1;
	return n;
}

/* Compiled == interpreter for every case at 1 and 2 threads, stats equal; the
 * sparse prefill visits fewer blocks than dense in the long cases and changes the
 * logits there. */
static void
agrees(int kv_heads, int block, const char *body)
{
	Module *m = load(kv_heads, body), *dense = load(kv_heads, "");
	cr_assert_eq(tj_count_ops(m, OP_ATTENTION_BLOCK), 2);
	cr_assert_leq(m->nstats, 16);
	int32_t sl[2] = { ir_find_stat(m, "attend.prefill.layer0"), ir_find_stat(m, "attend.prefill.layer1") };
	cr_assert(sl[0] >= 0 && sl[1] >= 0, "the prefill stat slots are missing");
	InterpState *is = interp_new(m), *id = interp_new(dense);
	Outs *ref = xmalloc(sizeof *ref), *got = xmalloc(sizeof *got), *dn = xmalloc(sizeof *dn);
	TJit *t = tj_new(m, true);
	int fewer = 0, differ = 0;
	for (int k = 0; k < NCASE; k++) {
		run_interp(is, m, k, ref);
		run_interp(id, dense, k, dn);
		for (int l = 0; l < 2; l++) {
			int64_t all = dense_blocks(k, block) * kv_heads;
			cr_assert_leq(ref->stats[sl[l]], all, "case %d layer %d: %lld blocks visited, dense %lld", k, l,
			              (long long)ref->stats[sl[l]], (long long)all);
			cr_assert_geq(ref->stats[sl[l]], (first_len[k] + second_len[k]) * (int64_t)kv_heads);
			fewer += ref->stats[sl[l]] < all;
		}
		differ += memcmp(ref->o, dn->o, (size_t)ref->nrows * VOCAB * sizeof(float)) != 0;
		for (int threads = 1; threads <= 2; threads++) {
			cr_assert_eq(((ThreadsFn)tj_sym(t, "set_threads"))(t->ctx, threads), ELIDE_OK);
			run_compiled(t, m, k, got);
			cr_assert_eq(got->nrows, ref->nrows);
			for (int r = 0; r < ref->nrows; r++) {
				const float *x = got->o + (size_t)r * VOCAB, *y = ref->o + (size_t)r * VOCAB;
				double e = ts_rel_err(x, y, VOCAB);
				cr_assert(e <= 1e-4, "'%s' case %d, %d threads, row %d: relative error %g", body, k, threads, r, e);
				cr_assert_eq(ts_argmax(x, VOCAB), ts_argmax(y, VOCAB), "'%s' case %d, %d threads, row %d: argmax",
				             body, k, threads, r);
			}
			for (uint32_t q = 0; q < m->nstats; q++)
				cr_assert_eq(got->stats[q], ref->stats[q], "'%s' case %d, %d threads: stat '%s' %lld, interpreter %lld",
				             body, k, threads, m->stats[q].name, (long long)got->stats[q], (long long)ref->stats[q]);
		}
	}
	cr_assert_gt(fewer, 0, "'%s' never visits fewer key blocks than dense", body);
	cr_assert_gt(differ, 0, "'%s' gives the dense logits in every case: the test sees nothing", body);
	tj_free(t);
	interp_free(is);
	interp_free(id);
	free(ref);
	free(got);
	free(dn);
	ir_free_module(m);
	ir_free_module(dense);
}

Test(sparse_prefill, topk1_mha) { agrees(4, B, "attend prefill block_topk(block 8, topk 1);"); }
Test(sparse_prefill, topk2_gqa) { agrees(2, B, "attend prefill block_topk(block 8, topk 2);"); }
Test(sparse_prefill, coverage_05_mha) { agrees(4, B, "attend prefill coverage gamma 0.5 block 8;"); }
/* The random models attend almost uniformly: gamma 0.9 leaves blocks out only when a
 * prompt has more than ten blocks, so these use blocks of 4 (64 tokens: 16 blocks). */
Test(sparse_prefill, coverage_09_gqa) { agrees(2, 4, "attend prefill coverage gamma 0.9 block 4;"); }
Test(sparse_prefill, coverage_09_mha_min_tokens) { agrees(4, 4, "attend prefill coverage gamma 0.9 block 4 min_tokens 8;"); }

/* With Quest decode after it: the decode reads the sparse prefill's cache and page
 * bounds; the pages visited are counted per layer too, equal in both. */
Test(sparse_prefill, then_quest_decode_gqa)
{
	const char *body = "attend prefill block_topk(block 8, topk 1);\n  attend decode quest(page 8, budget 16) sinks 4;";
	agrees(2, B, body);
	Module *m = load(2, body);
	cr_assert_eq(tj_count_ops(m, OP_ATTENTION_QUEST), 2);
	cr_assert_geq(ir_find_stat(m, "attend.decode.layer0"), 0);
	cr_assert_geq(ir_find_stat(m, "attend.decode.layer1"), 0);
	ir_free_module(m);
}
