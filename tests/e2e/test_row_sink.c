/* test_row_sink.c - the row-sink pass end to end (passes/row_sink.c, docs/ir.md
 * "Row sinking"): a prefill computes its last layer on the last row only.
 *   - seeded random Llamas, multi-head and grouped-query: the prefill's attention
 *     takes its one-row form; for prefills of 1, 2, 17 and 64 tokens the compiled
 *     code at 1 and 2 threads follows the interpreter (max relative error <= 1e-4,
 *     same argmax), the logits with the pass equal those without it within 1e-4,
 *     compiled and interpreted, and decode steps after the prefill agree with the
 *     build without the pass (every K/V row was still written to the cache);
 *   - an empty prefill is still refused (ELIDE_ERR_SEQ_LEN);
 *   - the encoder fixture (bidirectional attention, CLS pooling: row 0) after the
 *     default pipeline against torch's logits for every length. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "frontend/frontend.h"
#include "passes/passes.h"
#include "tests/e2e/cg_jit_support.h"
#include "tests/support/compare.h"
#include "tests/support/randmodel.h"
#include "tests/support/slurp.h"

typedef int (*StepFn)(void *, int32_t, int32_t, float *);
typedef int (*PrefillFn)(void *, const int32_t *, int32_t, int32_t, float *);
typedef int (*ResetFn)(void *);
typedef int (*ThreadsFn)(void *, int);

#define TOL 1e-4
#define NSTEP 6

static Module *
load(const RmConfig *c, const char *path, bool sink)
{
	Module *m = rm_build_module(c, "llama");
	Diag d;
	diag_init(&d, stderr);
	cr_assert(ir_load_params(m, path, &d), "cannot load params");
	if (sink)
		cr_assert(pass_row_sink(m, &d) && pass_dce(m, &d) && ir_verify(m, &d));
	return m;
}

/* Attention ops of entry `fn` in their one-row form (q of one row, k of T). */
static int
one_row_attention(Module *m, const char *fn)
{
	Func *f = ir_find_func(m, fn);
	int n = 0;
	for (uint32_t i = 0; f && i < f->nops; i++)
		n += f->ops[i].code == OP_ATTENTION && ir_vtype(f, f->ops[i].args[0]).rank == 1 &&
		     ir_vtype(f, f->ops[i].args[1]).rank == 2;
	return n;
}

static void
expect_close(const float *got, const float *want, int n, const char *what, int np, int nt)
{
	double e = ts_rel_err(got, want, n);
	cr_assert(e <= TOL, "%s, prefill of %d, %d threads: relative error %g", what, np, nt, e);
	cr_assert_eq(ts_argmax(got, n), ts_argmax(want, n), "%s, prefill of %d, %d threads: argmax", what, np, nt);
}

/* Prefill of np tokens then NSTEP steps: outs[0] the prefill's logits, outs[1..] the
 * steps' (tokens fixed, so both builds see the same inputs). */
static void
run_compiled(TJit *t, int nt, const int32_t *toks, int np, int vocab, float *outs)
{
	cr_assert_eq(((ThreadsFn)tj_sym(t, "set_threads"))(t->ctx, nt), ELIDE_OK);
	cr_assert_eq(((ResetFn)tj_sym(t, "reset"))(t->ctx), ELIDE_OK);
	cr_assert_eq(((PrefillFn)tj_sym(t, "prefill"))(t->ctx, toks, np, 0, outs), ELIDE_OK);
	for (int s = 0; s < NSTEP; s++)
		cr_assert_eq(((StepFn)tj_sym(t, "step"))(t->ctx, toks[np + s], np + s, outs + (size_t)(s + 1) * vocab),
		             ELIDE_OK);
}

static void
run_interp(Module *m, const int32_t *toks, int np, int vocab, float *outs)
{
	InterpState *is = interp_new(m);
	char err[256];
	cr_assert(interp_run(is, "prefill", toks, np, 0, outs, err, sizeof err), "%s", err);
	for (int s = 0; s < NSTEP; s++)
		cr_assert(interp_run(is, "step", &toks[np + s], 1, np + s, outs + (size_t)(s + 1) * vocab, err, sizeof err),
		          "%s", err);
	interp_free(is);
}

static void
prefill_lengths(RmConfig c)
{
	char path[256];
	snprintf(path, sizeof path, "/tmp/elide_row_sink_%d_%llu.safetensors", (int)getpid(),
	         (unsigned long long)c.seed);
	cr_assert(rm_write_model(&c, path));
	Module *full = load(&c, path, false), *sunk = load(&c, path, true);
	cr_assert_eq(one_row_attention(sunk, "prefill"), 1, "the last layer's attention takes one query row");
	cr_assert_eq(one_row_attention(full, "prefill"), 0);
	TJit *tf = tj_new(full, true), *ts = tj_new(sunk, true);
	size_t n = (size_t)(NSTEP + 1) * (size_t)c.vocab;
	float *cf = xmalloc(n * sizeof *cf), *cs = xmalloc(n * sizeof *cs);
	float *rf = xmalloc(n * sizeof *rf), *rs = xmalloc(n * sizeof *rs);
	int32_t toks[64 + NSTEP];
	for (int i = 0; i < 64 + NSTEP; i++)
		toks[i] = (int32_t)((i * 29 + 5) % c.vocab);
	static const int lens[] = { 1, 2, 17, 64 };
	for (size_t k = 0; k < sizeof lens / sizeof *lens; k++) {
		int np = lens[k];
		run_interp(full, toks, np, c.vocab, rf);
		run_interp(sunk, toks, np, c.vocab, rs);
		expect_close(rs, rf, c.vocab, "interpreter, with the pass vs without", np, 1);
		for (int nt = 1; nt <= 2; nt++) {
			run_compiled(tf, nt, toks, np, c.vocab, cf);
			run_compiled(ts, nt, toks, np, c.vocab, cs);
			expect_close(cs, rs, c.vocab, "compiled vs interpreter", np, nt);
			expect_close(cs, cf, c.vocab, "compiled, with the pass vs without", np, nt);
			for (int s = 1; s <= NSTEP; s++) {
				expect_close(cs + (size_t)s * c.vocab, rs + (size_t)s * c.vocab, c.vocab, "a step after it", np, nt);
				expect_close(cs + (size_t)s * c.vocab, cf + (size_t)s * c.vocab, c.vocab,
				             "a step after it, with the pass vs without", np, nt);
			}
		}
	}
	cr_assert_eq(((PrefillFn)tj_sym(ts, "prefill"))(ts->ctx, toks, 0, 0, cs), ELIDE_ERR_SEQ_LEN);
	free(cf);
	free(cs);
	free(rf);
	free(rs);
	tj_free(tf);
	tj_free(ts);
	ir_free_module(full);
	ir_free_module(sunk);
	remove(path);
}

Test(row_sink, gqa_prefill_lengths)
{
	RmConfig c = rm_default_config();
	c.ctx = 80; /* 64 tokens, then the steps */
	c.seed = 31;
	prefill_lengths(c);
}

Test(row_sink, mha_prefill_lengths)
{
	RmConfig c = rm_default_config();
	c.kv_heads = c.heads;
	c.ctx = 80;
	c.seed = 32;
	prefill_lengths(c);
}

/* The encoder fixture (test_bert_ref.c's) after the default pipeline: attention's
 * one-row form without a cache (row 0, every row a key), against torch. */
#define FIX ELIDE_SOURCE_DIR "/tests/fixtures/"
#define MAXT 16
#define NCLS 3

Test(row_sink, encoder_cls_row)
{
	static Diag d; /* the front end keeps its sources registered here */
	diag_init(&d, stderr);
	int32_t tokens[MAXT];
	FILE *tf = fopen(FIX "bert_tiny.tokens", "r");
	cr_assert(tf);
	for (int i = 0; i < MAXT; i++) {
		cr_assert_eq(fscanf(tf, "%d", &tokens[i]), 1);
		fgetc(tf);
	}
	fclose(tf);
	size_t nref;
	float *ref = ts_slurp(FIX "bert_tiny.logits", &nref);
	cr_assert_eq(nref, (size_t)MAXT * NCLS * sizeof(float));
	Module *m = fe_load(FIX "tiny_encoder.elide", NULL, &d);
	cr_assert(m && ir_load_params(m, FIX "bert_tiny.safetensors", &d));
	cr_assert(pass_run_default(m, &d) && ir_verify(m, &d));
	cr_assert_eq(one_row_attention(m, "forward"), 1);
	InterpState *is = interp_new(m);
	TJit *t = tj_new(m, true);
	int (*fwd)(void *, const int32_t *, int32_t, float *) =
		(int (*)(void *, const int32_t *, int32_t, float *))tj_sym(t, "forward");
	char err[256];
	for (int n = 1; n <= MAXT; n++) {
		float got[NCLS], want[NCLS];
		cr_assert(interp_run(is, "forward", tokens, n, 0, want, err, sizeof err), "%s", err);
		expect_close(want, ref + (size_t)(n - 1) * NCLS, NCLS, "encoder, interpreter vs torch", n, 1);
		cr_assert_eq(fwd(t->ctx, tokens, n, got), ELIDE_OK);
		expect_close(got, ref + (size_t)(n - 1) * NCLS, NCLS, "encoder, compiled vs torch", n, 1);
	}
	tj_free(t);
	interp_free(is);
	ir_free_module(m);
	free(ref);
}
