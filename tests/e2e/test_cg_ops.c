/* test_cg_ops.c - the ops a Llama does not use, compiled and run in process against
 * the interpreter: an encoder (forward entry, attention without a cache, row biases,
 * layernorm, erf GELU, a [CLS] classifier) for every sequence length, and a mixed
 * model (interleaved rope with another theta, tanh, tanh-GELU, sub, scale, slice,
 * concat, softmax, a linear whose weight is computed, and an entry returning argmax),
 * and learned absolute positions: the BERT encoder's and a GPT-2-style decoder's
 * (decode and prefill of every length), and a position past the table as an error. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "frontend/frontend.h"
#include "tests/e2e/cg_jit_support.h"
#include "tests/support/compare.h"
#include "tests/support/randmodel.h"

static const char *const mix_src =
	"model mix {\n"
	"  const dim = 24, vocab = 30, ctx = 16, heads = 3, layers = 1;\n"
	"  weights safetensors {\n"
	"    emb: f32[vocab, dim] = \"emb\"; w: f32[dim, dim] = \"w\";\n"
	"    w2: f32[vocab, 48] = \"w2\"; g: f32[dim] = \"g\";\n"
	"  }\n"
	"  state kv[l in 0..layers]: kvcache(ctx, heads, dim / heads);\n"
	"  entry step(token: i32, pos: i32) -> f32[vocab] {\n"
	"    x = rmsnorm(embed(emb, token), g, eps = 1e-6);\n"
	"    q = rope(linear(x, w), pos, heads, theta = 500.0, style = interleaved);\n"
	"    a = attention(q, rope(x, pos, heads, style = interleaved), x, kv[0], pos, heads, heads);\n"
	"    h = concat(slice(tanh(a), 0, 12), slice(gelu(x - a, approx = tanh) * 0.5, 12, 12));\n"
	"    y = concat(softmax(h), h);\n"
	"    return linear(y, w2) + linear(y, w2 * 0.25);\n"
	"  }\n"
	"  entry pick(token: i32, pos: i32) -> i32 {\n"
	"    x = embed(emb, token);\n"
	"    return argmax(linear(concat(x, gelu(x)), w2));\n"
	"  }\n"
	"}\n";

static Diag diag; /* the front end keeps its sources registered here */

/* The model of the source text src (or, when src is NULL, of the file `name`) with
 * seeded random weights. */
static Module *
load(const char *name, const char *src, uint64_t seed)
{
	if (!diag.out)
		diag_init(&diag, stderr);
	Module *m = src ? fe_load_text(name, src, strlen(src), NULL, &diag) : fe_load(name, NULL, &diag);
	cr_assert(m, "%s does not load", name);
	char path[256];
	snprintf(path, sizeof path, "%s/cg_ops_%d_%s.safetensors", ELIDE_BINARY_DIR, (int)getpid(), m->name);
	cr_assert(rm_write_params(m, seed, path));
	cr_assert(ir_load_params(m, path, &diag));
	remove(path);
	return m;
}

Test(cg_ops, encoder_every_length)
{
	for (int fuse = 0; fuse < 2; fuse++) {
		Module *m = load(ELIDE_SOURCE_DIR "/tests/fixtures/tiny_encoder.elide", NULL, 5);
		TJit *t = tj_new(m, fuse);
		int (*fwd)(void *, const int32_t *, int32_t, float *) =
			(int (*)(void *, const int32_t *, int32_t, float *))tj_sym(t, "forward");
		InterpState *s = interp_new(m);
		char err[256];
		int32_t toks[17] = { 1, 7, 3, 19, 5, 0, 11, 2, 49, 23, 8, 8, 30, 4, 41, 16, 6 };
		for (int n = 1; n <= 16; n++) {
			float a[3], r[3];
			cr_assert_eq(fwd(t->ctx, toks, n, a), ELIDE_OK);
			cr_assert(interp_run(s, "forward", toks, n, 0, r, err, sizeof err), "%s", err);
			double e = ts_rel_err(a, r, 3);
			cr_assert(e <= 1e-4, "fuse %d, %d tokens: relative error %g", fuse, n, e);
		}
		int32_t bad[8] = { 1, 50, 3 };
		float a[3];
		cr_assert_eq(fwd(t->ctx, bad, 3, a), ELIDE_ERR_TOKEN);
		cr_assert_eq(fwd(t->ctx, toks, 17, a), ELIDE_ERR_SEQ_LEN);
		interp_free(s);
		tj_free(t);
		ir_free_module(m);
	}
}

Test(cg_ops, mixed_ops_and_argmax)
{
	Module *m = load("mix.elide", mix_src, 9);
	TJit *t = tj_new(m, true);
	int (*step)(void *, int32_t, int32_t, float *) = (int (*)(void *, int32_t, int32_t, float *))tj_sym(t, "step");
	int (*pick)(void *, int32_t, int32_t, int32_t *) = (int (*)(void *, int32_t, int32_t, int32_t *))tj_sym(t, "pick");
	InterpState *s = interp_new(m);
	char err[256];
	for (int pos = 0; pos < 16; pos++) {
		int32_t tok = (pos * 7 + 2) % 30;
		float a[30], r[30];
		cr_assert_eq(step(t->ctx, tok, pos, a), ELIDE_OK);
		cr_assert(interp_run(s, "step", &tok, 1, pos, r, err, sizeof err), "%s", err);
		double e = ts_rel_err(a, r, 30);
		cr_assert(e <= 1e-4, "step at %d: relative error %g", pos, e);
		int32_t pa = -1, pr = -2;
		cr_assert_eq(pick(t->ctx, tok, pos, &pa), ELIDE_OK);
		cr_assert(interp_run(s, "pick", &tok, 1, pos, (float *)&pr, err, sizeof err), "%s", err);
		cr_assert_eq(pa, pr, "argmax at %d", pos);
	}
	interp_free(s);
	tj_free(t);
	ir_free_module(m);
}

/* A GPT-2-style decoder: token plus learned position embeddings (a table of npos
 * rows), pre-LN blocks with a cache of 16 positions, a tied head. */
static char *
gpt_src(int npos)
{
	static char buf[2048];
	snprintf(buf, sizeof buf,
		"model gpt {\n"
		"  const dim = 16, vocab = 20, ctx = 16, npos = %d, heads = 2, layers = 2;\n"
		"  weights safetensors {\n"
		"    wte: f32[vocab, dim] = \"wte\"; wpe: f32[npos, dim] = \"wpe\";\n"
		"    for l in 0..layers { g[l]: f32[dim] = \"g.{l}\"; b[l]: f32[dim] = \"b.{l}\";\n"
		"      wq[l]: f32[dim, dim] = \"wq.{l}\"; wk[l]: f32[dim, dim] = \"wk.{l}\";\n"
		"      wv[l]: f32[dim, dim] = \"wv.{l}\"; wo[l]: f32[dim, dim] = \"wo.{l}\"; }\n"
		"  }\n"
		"  state kv[l in 0..layers]: kvcache(ctx, heads, dim / heads);\n"
		"  entry step(token: i32, pos: i32) -> f32[vocab] {\n"
		"    x = embed(wte, token) + embed(wpe, positions(token, pos));\n"
		"    for l in 0..layers {\n"
		"      h = layernorm(x, g[l], b[l]);\n"
		"      x = x + linear(attention(linear(h, wq[l]), linear(h, wk[l]), linear(h, wv[l]), kv[l], pos, heads,"
		" heads), wo[l]);\n"
		"    }\n"
		"    return linear(x, wte);\n"
		"  }\n"
		"  entry prefill(tokens: i32[<=ctx], pos: i32) -> f32[vocab] {\n"
		"    x = embed(wte, tokens) + embed(wpe, positions(tokens, pos));\n"
		"    for l in 0..layers {\n"
		"      h = layernorm(x, g[l], b[l]);\n"
		"      x = x + linear(attention(linear(h, wq[l]), linear(h, wk[l]), linear(h, wv[l]), kv[l], pos, heads,"
		" heads), wo[l]);\n"
		"    }\n"
		"    return linear(row(x, -1), wte);\n"
		"  }\n"
		"}\n",
		npos);
	return buf;
}

typedef int (*StepFn)(void *, int32_t, int32_t, float *);
typedef int (*PrefillFn)(void *, const int32_t *, int32_t, int32_t, float *);

/* Prefill of every length 1..16 at position 0 and at 16 - n, then decode of all 16
 * positions, compiled (fused and unfused) against the interpreter. */
Test(cg_ops, learned_positions_decode_and_prefill)
{
	static const int32_t toks[16] = { 3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 8, 9, 7, 9, 19 };
	char err[256];
	for (int fuse = 0; fuse < 2; fuse++) {
		Module *m = load("gpt.elide", gpt_src(16), 13);
		TJit *t = tj_new(m, fuse);
		StepFn step = (StepFn)tj_sym(t, "step");
		PrefillFn prefill = (PrefillFn)tj_sym(t, "prefill");
		InterpState *s = interp_new(m);
		for (int n = 1; n <= 16; n++) {
			for (int at = 0; at <= 16 - n; at += 16 - n > 0 ? 16 - n : 1) {
				float a[20], r[20];
				cr_assert_eq(prefill(t->ctx, toks, n, at, a), ELIDE_OK, "fuse %d, %d tokens at %d", fuse, n, at);
				cr_assert(interp_run(s, "prefill", toks, n, at, r, err, sizeof err), "%s", err);
				double e = ts_rel_err(a, r, 20);
				cr_assert(e <= 1e-4, "fuse %d, prefill of %d at %d: relative error %g", fuse, n, at, e);
			}
		}
		for (int p = 0; p < 16; p++) {
			float a[20], r[20];
			cr_assert_eq(step(t->ctx, toks[p], p, a), ELIDE_OK);
			cr_assert(interp_run(s, "step", &toks[p], 1, p, r, err, sizeof err), "%s", err);
			double e = ts_rel_err(a, r, 20);
			cr_assert(e <= 1e-4, "fuse %d, step at %d: relative error %g", fuse, p, e);
		}
		interp_free(s);
		tj_free(t);
		ir_free_module(m);
	}
}

/* A position table of 12 rows under a cache of 16: positions 12.. pass the cache's
 * check but not the table's, so the compiled entries return ELIDE_ERR_POS (never
 * read past the table) and the interpreter reports the position. */
Test(cg_ops, position_past_the_table)
{
	static const int32_t toks[16] = { 0 };
	char err[256];
	Module *m = load("gpt.elide", gpt_src(12), 13);
	TJit *t = tj_new(m, true);
	StepFn step = (StepFn)tj_sym(t, "step");
	PrefillFn prefill = (PrefillFn)tj_sym(t, "prefill");
	InterpState *s = interp_new(m);
	float a[20];
	cr_expect_eq(step(t->ctx, 1, 11, a), ELIDE_OK);
	cr_expect_eq(prefill(t->ctx, toks, 12, 0, a), ELIDE_OK);
	cr_expect_eq(prefill(t->ctx, toks, 4, 8, a), ELIDE_OK);
	for (int p = 12; p < 16; p++) {
		cr_expect_eq(step(t->ctx, 1, p, a), ELIDE_ERR_POS, "step at %d", p);
		cr_expect_not(interp_run(s, "step", toks, 1, p, a, err, sizeof err), "interpreter, step at %d", p);
		cr_expect(strstr(err, "past the table of 12 positions"), "%s", err);
	}
	cr_expect_eq(prefill(t->ctx, toks, 13, 0, a), ELIDE_ERR_POS);
	cr_expect_eq(prefill(t->ctx, toks, 3, 10, a), ELIDE_ERR_POS);
	cr_expect_eq(prefill(t->ctx, toks, 1, -1, a), ELIDE_ERR_POS);
	cr_expect_not(interp_run(s, "prefill", toks, 3, 10, a, err, sizeof err));
	cr_expect(strstr(err, "position 12 past the table of 12 positions"), "%s", err);
	interp_free(s);
	tj_free(t);
	ir_free_module(m);
}

/* An embed whose index the graph computes (the argmax of 8 logits into a table of 5
 * rows) is checked where it runs: an index past the table is ELIDE_ERR_TOKEN from
 * the compiled code and an error from the interpreter, and an index inside it gives
 * the interpreter's row. */
static const char *const computed_index_src =
	"model pick {\n"
	"  const dim = 4, vocab = 24, n = 8, rows = 5;\n"
	"  weights safetensors {\n"
	"    emb: f32[vocab, dim] = \"emb\";\n"
	"    w: f32[n, dim] = \"w\";\n"
	"    table: f32[rows, dim] = \"table\";\n"
	"  }\n"
	"  entry step(token: i32, pos: i32) -> f32[dim] {\n"
	"    return embed(table, argmax(linear(embed(emb, token), w)));\n"
	"  }\n"
	"}\n";

Test(cg_ops, computed_embed_index_checked)
{
	Module *m = load("pick.elide", computed_index_src, 21);
	InterpState *s = interp_new(m);
	int inside = 0, outside = 0;
	for (int fuse = 0; fuse < 2; fuse++) {
		TJit *t = tj_new(m, fuse);
		StepFn step = (StepFn)tj_sym(t, "step");
		for (int32_t tok = 0; tok < 24; tok++) {
			float a[4], r[4];
			char err[256] = "";
			int32_t one = tok;
			bool ok = interp_run(s, "step", &one, 1, 0, r, err, sizeof err);
			int st = step(t->ctx, tok, 0, a);
			if (ok) {
				cr_expect_eq(st, ELIDE_OK, "token %d: status %d", tok, st);
				cr_expect(memcmp(a, r, sizeof a) == 0, "token %d: row differs", tok);
				inside++;
			} else {
				cr_expect_eq(st, ELIDE_ERR_TOKEN, "token %d: status %d (interpreter: %s)", tok, st, err);
				cr_expect(strstr(err, "out of range"), "token %d: %s", tok, err);
				outside++;
			}
		}
		tj_free(t);
	}
	/* the seed gives both kinds of index, so both paths ran */
	cr_expect_gt(inside, 0);
	cr_expect_gt(outside, 0);
	interp_free(s);
	ir_free_module(m);
}
