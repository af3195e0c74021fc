/* test_cg_ops.c - the ops a Llama does not use, compiled and run in process against
 * the interpreter: an encoder (forward entry, attention without a cache, row biases,
 * layernorm, erf GELU, a [CLS] classifier) for every sequence length, and a mixed
 * model (interleaved rope with another theta, tanh, tanh-GELU, sub, scale, slice,
 * concat, softmax, a linear whose weight is computed, and an entry returning argmax). */
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
