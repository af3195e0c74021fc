/* test_interp_ref.c - the interpreter against the independent reference: the
 * committed fixture of tests/fixtures/make_llama_fixture.py (a random GQA Llama in
 * Hugging Face layout and the logits Hugging Face's algorithm gives for a fixed token
 * sequence).  Max relative error (max|a-b| / max|b|) <= 1e-4 and identical argmax at
 * every position, for step-by-step decode and for prefill. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ir/ir.h"
#include "tests/support/randmodel.h"

#define FIX ELIDE_SOURCE_DIR "/tests/fixtures/"
#define MAXT 64
#define TOL 1e-4

static int32_t tokens[MAXT];
static int ntok;
static float *ref; /* [ntok, vocab] */
static int vocab;
static double worst; /* largest relative error seen in a test, for the log */

static void
load_fixture(void)
{
	FILE *f = fopen(FIX "llama_tiny.tokens", "r");
	cr_assert(f);
	while (ntok < MAXT && fscanf(f, "%d", &tokens[ntok]) == 1) {
		ntok++;
		if (fgetc(f) != ',')
			break;
	}
	fclose(f);
	cr_assert(ntok > 1);
	f = fopen(FIX "llama_tiny.logits", "rb");
	cr_assert(f);
	fseek(f, 0, SEEK_END);
	long n = ftell(f);
	fseek(f, 0, SEEK_SET);
	cr_assert(n % (4 * ntok) == 0);
	vocab = (int)(n / 4 / ntok);
	ref = malloc((size_t)n);
	cr_assert(fread(ref, 1, (size_t)n, f) == (size_t)n);
	fclose(f);
}

/* The model at the fixture's config: dim 64, 2 layers, 4 heads, 2 kv heads, ffn 172,
 * vocab 256, ctx 64. */
static Module *
load_model(void)
{
	RmConfig c = rm_default_config();
	Module *m = rm_build_module(&c, "llama");
	Diag d;
	diag_init(&d, stderr);
	cr_assert(ir_load_params(m, FIX "llama_tiny.safetensors", &d), "loading the fixture weights");
	return m;
}

static int
argmax(const float *x, int n)
{
	int b = 0;
	for (int i = 1; i < n; i++)
		if (x[i] > x[b])
			b = i;
	return b;
}

/* Compares one row of logits with the reference row t. */
static void
check_row(const float *got, int t, const char *what)
{
	const float *want = ref + (size_t)t * vocab;
	double maxd = 0, maxb = 0;
	for (int i = 0; i < vocab; i++) {
		maxd = fmax(maxd, fabs((double)got[i] - want[i]));
		maxb = fmax(maxb, fabs((double)want[i]));
	}
	worst = fmax(worst, maxd / maxb);
	cr_expect(maxd / maxb <= TOL, "%s, position %d: max relative error %.3g > %g", what, t, maxd / maxb, TOL);
	cr_expect_eq(argmax(got, vocab), argmax(want, vocab), "%s, position %d: argmax differs", what, t);
}

TestSuite(interp_ref, .init = load_fixture);

Test(interp_ref, step_by_step_decode)
{
	Module *m = load_model();
	cr_assert_eq(vocab, ir_config_get(m, "vocab", 0));
	InterpState *s = interp_new(m);
	float *out = malloc((size_t)vocab * sizeof *out);
	char err[256];
	for (int t = 0; t < ntok; t++) {
		cr_assert(interp_run(s, "step", &tokens[t], 1, t, out, err, sizeof err), "%s", err);
		check_row(out, t, "step");
	}
	cr_log_info("max relative error %.3g", worst);
	free(out);
	interp_free(s);
	ir_free_module(m);
}

Test(interp_ref, prefill_every_prefix)
{
	Module *m = load_model();
	InterpState *s = interp_new(m);
	float *out = malloc((size_t)vocab * sizeof *out);
	char err[256];
	for (int t = 0; t < ntok; t++) {
		interp_reset(s);
		cr_assert(interp_run(s, "prefill", tokens, t + 1, 0, out, err, sizeof err), "%s", err);
		check_row(out, t, "prefill");
	}
	cr_log_info("max relative error %.3g", worst);
	free(out);
	interp_free(s);
	ir_free_module(m);
}

/* Prefill in two chunks, then decode the rest: the cache carries across entries. */
Test(interp_ref, chunked_prefill_then_decode)
{
	Module *m = load_model();
	InterpState *s = interp_new(m);
	float *out = malloc((size_t)vocab * sizeof *out);
	char err[256];
	int a = ntok / 3, b = 2 * ntok / 3;
	cr_assert(interp_run(s, "prefill", tokens, a, 0, out, err, sizeof err), "%s", err);
	check_row(out, a - 1, "prefill chunk 1");
	cr_assert(interp_run(s, "prefill", tokens + a, b - a, a, out, err, sizeof err), "%s", err);
	check_row(out, b - 1, "prefill chunk 2");
	for (int t = b; t < ntok; t++) {
		cr_assert(interp_run(s, "step", &tokens[t], 1, t, out, err, sizeof err), "%s", err);
		check_row(out, t, "decode after prefill");
	}
	cr_log_info("max relative error %.3g", worst);
	free(out);
	interp_free(s);
	ir_free_module(m);
}
