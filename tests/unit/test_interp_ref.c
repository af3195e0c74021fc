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

#include "frontend/frontend.h"
#include "ir/ir.h"
#include "tests/support/compare.h"
#include "tests/support/randmodel.h"
#include "tests/support/slurp.h"

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
	size_t n;
	ref = ts_slurp_floats(FIX "llama_tiny.logits", &n);
	cr_assert(n % (size_t)ntok == 0);
	vocab = (int)(n / (size_t)ntok);
}

/* The fixture's sizes (tests/fixtures/make_llama_fixture.py), which are those of
 * examples/llama/llama.elide. */
static const RmConfig fixture_config = { .dim = 64, .layers = 6, .heads = 4, .kv_heads = 2, .ffn = 172,
                                         .vocab = 256, .ctx = 128, .seed = 1 };

/* Where the model comes from: examples/llama/llama.elide as it is, the randmodel
 * text at the fixture's sizes, and the randmodel IR built without the front end. */
enum { SRC_LLAMA_ELIDE, SRC_RANDMODEL_TEXT, SRC_RANDMODEL_IR, NSRC };
static const char *const src_names[NSRC] = { "examples/llama/llama.elide", "randmodel text", "randmodel IR" };

static Module *
load_model(int src)
{
	Diag d;
	diag_init(&d, stderr);
	Module *m = NULL;
	if (src == SRC_LLAMA_ELIDE) {
		m = fe_load(ELIDE_SOURCE_DIR "/examples/llama/llama.elide", NULL, &d);
	} else if (src == SRC_RANDMODEL_TEXT) {
		char *text = rm_elide_source(&fixture_config, "llama");
		m = fe_load_text("randmodel.elide", text, strlen(text), NULL, &d);
		free(text);
	} else {
		m = rm_build_module(&fixture_config, "llama");
	}
	cr_assert(m, "%s: the model does not load", src_names[src]);
	static const char *const keys[] = { "dim", "layers", "heads", "kv_heads", "ffn", "vocab", "ctx" };
	const int want[] = { fixture_config.dim, fixture_config.layers, fixture_config.heads, fixture_config.kv_heads,
	                     fixture_config.ffn, fixture_config.vocab, fixture_config.ctx };
	for (int i = 0; i < 7; i++)
		cr_assert_eq(ir_config_get(m, keys[i], -1), want[i],
		             "%s: '%s' is %lld, the fixture has %d (regenerate the fixture for new sizes)",
		             src_names[src], keys[i], (long long)ir_config_get(m, keys[i], -1), want[i]);
	cr_assert(ir_load_params(m, FIX "llama_tiny.safetensors", &d), "%s: loading the fixture weights",
	          src_names[src]);
	return m;
}

/* Compares one row of logits with the reference row t. */
static void
check_row(const float *got, int t, const char *what, int src)
{
	const float *want = ref + (size_t)t * vocab;
	double e = ts_rel_err(got, want, vocab);
	worst = fmax(worst, e);
	cr_expect(e <= TOL, "%s, %s, position %d: max relative error %.3g > %g", src_names[src], what, t, e, TOL);
	cr_expect_eq(ts_argmax(got, vocab), ts_argmax(want, vocab), "%s, %s, position %d: argmax differs",
	             src_names[src], what, t);
}

/* The three ways of feeding the sequence. */
static void
decode(InterpState *s, float *out, int src)
{
	char err[256];
	for (int t = 0; t < ntok; t++) {
		cr_assert(interp_run(s, "step", &tokens[t], 1, t, out, err, sizeof err), "%s", err);
		check_row(out, t, "step", src);
	}
}

static void
prefill_prefixes(InterpState *s, float *out, int src)
{
	char err[256];
	for (int t = 0; t < ntok; t++) {
		interp_reset(s);
		cr_assert(interp_run(s, "prefill", tokens, t + 1, 0, out, err, sizeof err), "%s", err);
		check_row(out, t, "prefill", src);
	}
}

/* Prefill in two chunks, then decode the rest: the cache carries across entries. */
static void
chunked(InterpState *s, float *out, int src)
{
	char err[256];
	int a = ntok / 3, b = 2 * ntok / 3;
	cr_assert(interp_run(s, "prefill", tokens, a, 0, out, err, sizeof err), "%s", err);
	check_row(out, a - 1, "prefill chunk 1", src);
	cr_assert(interp_run(s, "prefill", tokens + a, b - a, a, out, err, sizeof err), "%s", err);
	check_row(out, b - 1, "prefill chunk 2", src);
	for (int t = b; t < ntok; t++) {
		cr_assert(interp_run(s, "step", &tokens[t], 1, t, out, err, sizeof err), "%s", err);
		check_row(out, t, "decode after prefill", src);
	}
}

static void
each_source(void (*mode)(InterpState *, float *, int))
{
	for (int src = 0; src < NSRC; src++) {
		Module *m = load_model(src);
		InterpState *s = interp_new(m);
		float *out = malloc((size_t)vocab * sizeof *out);
		worst = 0;
		mode(s, out, src);
		cr_log_info("%s: max relative error %.3g", src_names[src], worst);
		free(out);
		interp_free(s);
		ir_free_module(m);
	}
}

TestSuite(interp_ref, .init = load_fixture);

Test(interp_ref, step_by_step_decode)
{
	each_source(decode);
}

Test(interp_ref, prefill_every_prefix)
{
	each_source(prefill_prefixes);
}

Test(interp_ref, chunked_prefill_then_decode)
{
	each_source(chunked);
}
