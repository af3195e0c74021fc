/* test_bert_ref.c - the encoder against the independent reference: the committed
 * fixture of tests/fixtures/make_bert_fixture.py (a random BERT sequence classifier
 * in Hugging Face layout and the logits torch computes, as BertForSequenceClassification
 * does, for every prefix of a fixed token sequence).  tests/fixtures/tiny_encoder.elide
 * runs through the interpreter and through the compiled code (fused and unfused);
 * each must give a maximum relative error (max|a-b| / max|b|) <= 1e-4 and the same
 * argmax for every length.  Learned positions matter: the fixture's position table is
 * as large as its word embeddings, so a model without them is far off. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "frontend/frontend.h"
#include "tests/e2e/cg_jit_support.h"
#include "tests/support/compare.h"
#include "tests/support/slurp.h"

#define FIX ELIDE_SOURCE_DIR "/tests/fixtures/"
#define MAXT 16
#define NCLS 3
#define TOL 1e-4

static int32_t tokens[MAXT];
static int ntok;
static float *ref; /* [ntok, classes]: row n-1 from the first n tokens */

static void
load_fixture(void)
{
	FILE *f = fopen(FIX "bert_tiny.tokens", "r");
	cr_assert(f);
	ntok = 0;
	while (ntok < MAXT && fscanf(f, "%d", &tokens[ntok]) == 1) {
		ntok++;
		if (fgetc(f) != ',')
			break;
	}
	fclose(f);
	cr_assert_eq(ntok, MAXT);
	size_t n;
	ref = ts_slurp(FIX "bert_tiny.logits", &n);
	cr_assert_eq(n, (size_t)MAXT * NCLS * sizeof(float), "bert_tiny.logits holds %zu bytes", n);
}

static Module *
load_model(Diag *d)
{
	Module *m = fe_load(FIX "tiny_encoder.elide", NULL, d);
	cr_assert(m, "tiny_encoder.elide does not load");
	cr_assert(ir_load_params(m, FIX "bert_tiny.safetensors", d), "loading the fixture weights");
	return m;
}

/* Checks the logits of the first n tokens; returns the relative error. */
static double
check(const float *got, int n, const char *what)
{
	const float *want = ref + (size_t)(n - 1) * NCLS;
	double e = ts_rel_err(got, want, NCLS);
	cr_expect(e <= TOL, "%s, %d tokens: max relative error %.3g > %g", what, n, e, TOL);
	cr_expect_eq(ts_argmax(got, NCLS), ts_argmax(want, NCLS), "%s, %d tokens: argmax differs", what, n);
	return e;
}

Test(bert_ref, interpreter_every_length)
{
	static Diag d; /* the front end keeps its sources registered here */
	diag_init(&d, stderr);
	load_fixture();
	Module *m = load_model(&d);
	InterpState *s = interp_new(m);
	char err[256];
	double worst = 0;
	for (int n = 1; n <= ntok; n++) {
		float out[NCLS];
		cr_assert(interp_run(s, "forward", tokens, n, 0, out, err, sizeof err), "%d tokens: %s", n, err);
		worst = fmax(worst, check(out, n, "interpreter"));
	}
	cr_log_info("interpreter vs torch: max relative error %.3g", worst);
	printf("bert_ref: interpreter vs torch: max relative error %.3g\n", worst);
	interp_free(s);
	ir_free_module(m);
	free(ref);
}

Test(bert_ref, compiled_every_length)
{
	static Diag d;
	diag_init(&d, stderr);
	load_fixture();
	for (int fuse = 0; fuse < 2; fuse++) {
		Module *m = load_model(&d);
		TJit *t = tj_new(m, fuse);
		int (*fwd)(void *, const int32_t *, int32_t, float *) =
			(int (*)(void *, const int32_t *, int32_t, float *))tj_sym(t, "forward");
		double worst = 0;
		for (int n = 1; n <= ntok; n++) {
			float out[NCLS];
			cr_assert_eq(fwd(t->ctx, tokens, n, out), ELIDE_OK, "fuse %d, %d tokens", fuse, n);
			worst = fmax(worst, check(out, n, fuse ? "compiled, fused" : "compiled, unfused"));
		}
		printf("bert_ref: compiled (fuse %d) vs torch: max relative error %.3g\n", fuse, worst);
		tj_free(t);
		ir_free_module(m);
	}
	free(ref);
}
