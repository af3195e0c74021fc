/* test_interp_encoder.c - a bidirectional encoder (forward entry, attention without a
 * cache, biases added as rows, layernorm, erf GELU, a [CLS] classifier) through the
 * front end and the interpreter: row 0's output depends on later tokens (it would not
 * under a causal mask), and it is deterministic and finite. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "frontend/frontend.h"
#include "ir/ir.h"
#include "tests/support/randmodel.h"

static const char *const encoder_src =
	"model enc {\n"
	"  const dim = 16, layers = 2, heads = 2, ffn = 32, vocab = 20, ctx = 8, classes = 3;\n"
	"  weights safetensors {\n"
	"    emb: f32[vocab, dim] = \"emb\";\n"
	"    for l in 0..layers {\n"
	"      wq[l]: f32[dim, dim] = \"wq.{l}\"; bq[l]: f32[dim] = \"bq.{l}\";\n"
	"      wk[l]: f32[dim, dim] = \"wk.{l}\"; wv[l]: f32[dim, dim] = \"wv.{l}\";\n"
	"      wo[l]: f32[dim, dim] = \"wo.{l}\";\n"
	"      ln_w[l]: f32[dim] = \"ln_w.{l}\"; ln_b[l]: f32[dim] = \"ln_b.{l}\";\n"
	"      wi[l]: f32[ffn, dim] = \"wi.{l}\"; wf[l]: f32[dim, ffn] = \"wf.{l}\";\n"
	"    }\n"
	"    cls: f32[classes, dim] = \"cls\";\n"
	"  }\n"
	"  entry forward(tokens: i32[<=ctx]) -> f32[classes] {\n"
	"    x = embed(emb, tokens);\n"
	"    for l in 0..layers {\n"
	"      q = linear(x, wq[l]) + bq[l];\n"
	"      a = linear(attention(q, linear(x, wk[l]), linear(x, wv[l]), heads = heads), wo[l]);\n"
	"      x = layernorm(x + a, ln_w[l], ln_b[l], eps = 1e-12);\n"
	"      x = x + linear(gelu(linear(x, wi[l])), wf[l]);\n"
	"    }\n"
	"    return linear(row(x, 0), cls);\n"
	"  }\n"
	"}\n";

Test(interp_encoder, bidirectional_forward)
{
	static Diag d; /* the front end keeps its sources registered here */
	diag_init(&d, stderr);
	Module *m = fe_load_text("enc.elide", encoder_src, strlen(encoder_src), NULL, &d);
	cr_assert(m, "the encoder does not load");
	/* random weights for every param, by its source name and shape */
	RmTensor *t = calloc(m->nparams, sizeof *t);
	RmRng rng = { 5 };
	for (uint32_t i = 0; i < m->nparams; i++) {
		const Param *p = &m->params[i];
		int64_t n = ir_type_numel(p->type);
		float *data = malloc((size_t)n * sizeof *data);
		for (int64_t k = 0; k < n; k++)
			data[k] = rm_rng_uniform(&rng, -0.5f, 0.5f);
		t[i] = (RmTensor){ .name = p->source, .dtype = RM_F32, .rank = p->type.rank, .data = data };
		for (int k = 0; k < p->type.rank; k++)
			t[i].shape[k] = p->type.dims[k];
	}
	const char *path = ELIDE_BINARY_DIR "/interp_encoder.safetensors";
	cr_assert(rm_st_write(t, (int)m->nparams, path));
	for (uint32_t i = 0; i < m->nparams; i++)
		free((void *)t[i].data);
	free(t);
	cr_assert(ir_load_params(m, path, &d));
	remove(path);

	InterpState *s = interp_new(m);
	float a[3], b[3], c[3];
	char err[256];
	int32_t toks[5] = { 1, 2, 3, 4, 5 };
	cr_assert(interp_run(s, "forward", toks, 5, 0, a, err, sizeof err), "%s", err);
	cr_assert(interp_run(s, "forward", toks, 5, 0, b, err, sizeof err), "%s", err);
	cr_expect(memcmp(a, b, sizeof a) == 0, "no state: the same input gives the same output");
	for (int i = 0; i < 3; i++)
		cr_expect(isfinite(a[i]));
	toks[4] = 9;
	cr_assert(interp_run(s, "forward", toks, 5, 0, c, err, sizeof err), "%s", err);
	cr_expect(memcmp(a, c, sizeof a) != 0, "row 0 must see the last token (bidirectional attention)");
	/* more tokens than the bound */
	int32_t many[9] = { 0 };
	cr_expect_not(interp_run(s, "forward", many, 9, 0, c, err, sizeof err));
	cr_expect(strstr(err, "longer than the bound of 8"), "%s", err);
	interp_free(s);
	ir_free_module(m);
}
