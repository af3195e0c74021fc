/* test_run_cli.c - `elide run --interp` end to end: the logits it dumps for the
 * committed fixture match the independent torch reference (max relative error
 * <= 1e-4, same argmax), and for a seeded random model written to disk (weights and
 * .elide text) they equal the interpreter run of the same model built in memory. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ir/ir.h"
#include "tests/support/compare.h"
#include "tests/support/randmodel.h"
#include "tests/support/slurp.h"

static int
run(const char *args)
{
	char cmd[2048];
	snprintf(cmd, sizeof cmd, "%s run --interp %s > /dev/null", ELIDE_BIN, args);
	return system(cmd);
}

Test(run_cli, fixture_logits_match_the_reference)
{
	const char *dump = ELIDE_BINARY_DIR "/run_cli_fixture.logits";
	remove(dump);
	cr_assert_eq(run(ELIDE_SOURCE_DIR "/examples/llama/llama.elide -w " ELIDE_SOURCE_DIR
	                 "/tests/fixtures/llama_tiny.safetensors --tokens 1,17,42,255,0,99,3,3,128,7,64,200,31,5,250,12"
	                 " --dump-logits " ELIDE_BINARY_DIR "/run_cli_fixture.logits"),
	             0);
	size_t n, nref;
	float *got = ts_slurp_floats(dump, &n);
	float *ref = ts_slurp_floats(ELIDE_SOURCE_DIR "/tests/fixtures/llama_tiny.logits", &nref);
	cr_assert_eq(n, nref);
	cr_assert_eq(n, 16 * 256);
	for (int t = 0; t < 16; t++) {
		const float *g = got + t * 256, *r = ref + t * 256;
		double e = ts_rel_err(g, r, 256);
		int64_t ag = ts_argmax(g, 256), ar = ts_argmax(r, 256);
		cr_expect(e <= 1e-4, "position %d: relative error %.3g", t, e);
		cr_expect_eq(ag, ar, "position %d: argmax %lld, reference %lld", t, (long long)ag, (long long)ar);
	}
	free(got);
	free(ref);
	remove(dump);
}

Test(run_cli, random_model_from_disk_equals_in_memory)
{
	RmConfig c = rm_default_config();
	c.seed = 7;
	const char *w = ELIDE_BINARY_DIR "/run_cli_rand.safetensors", *src = ELIDE_BINARY_DIR "/run_cli_rand.elide";
	const char *dump = ELIDE_BINARY_DIR "/run_cli_rand.logits";
	cr_assert(rm_write_model(&c, w));
	char *text = rm_elide_source(&c, "rand");
	FILE *f = fopen(src, "w");
	cr_assert(f);
	fputs(text, f);
	fclose(f);
	free(text);
	const int32_t toks[5] = { 3, 1, 4, 1, 5 };
	cr_assert_eq(run(ELIDE_BINARY_DIR "/run_cli_rand.elide -w " ELIDE_BINARY_DIR
	                 "/run_cli_rand.safetensors --tokens 3,1,4,1,5 --dump-logits " ELIDE_BINARY_DIR
	                 "/run_cli_rand.logits"),
	             0);
	size_t n;
	float *got = ts_slurp_floats(dump, &n);
	cr_assert_eq(n, (size_t)5 * c.vocab);
	Module *m = rm_build_module(&c, "rand");
	Diag d;
	diag_init(&d, stderr);
	cr_assert(ir_load_params(m, w, &d));
	InterpState *s = interp_new(m);
	float *want = malloc((size_t)c.vocab * sizeof *want);
	char err[256];
	for (int t = 0; t < 5; t++) {
		cr_assert(interp_run(s, "step", &toks[t], 1, t, want, err, sizeof err), "%s", err);
		cr_expect(memcmp(want, got + t * c.vocab, (size_t)c.vocab * sizeof *want) == 0,
		          "position %d: logits differ", t);
	}
	/* --prefill dumps one row: the last position's logits */
	cr_assert_eq(run(ELIDE_BINARY_DIR "/run_cli_rand.elide -w " ELIDE_BINARY_DIR
	                 "/run_cli_rand.safetensors --tokens 3,1,4,1,5 --prefill --dump-logits " ELIDE_BINARY_DIR
	                 "/run_cli_rand.logits"),
	             0);
	free(got);
	got = ts_slurp_floats(dump, &n);
	cr_assert_eq(n, (size_t)c.vocab);
	double e = ts_rel_err(got, want, c.vocab);
	cr_expect(e <= 1e-5, "prefill vs decode: relative error %.3g", e);
	free(want);
	free(got);
	interp_free(s);
	ir_free_module(m);
	remove(w);
	remove(src);
	remove(dump);
}
