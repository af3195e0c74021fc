/* test_charlm8_interp.c - examples/charlm8/charlm8.elide with the trained weights, run by
 * the reference interpreter (`elide run --interp`), reproduces the logits that
 * examples/charlm8/train.py stored for a fixed prompt (tests/fixtures/charlm8_logits.f32),
 * position by position, with a normalised error max|a - b| / max|b| <= 1e-4 and the
 * same argmax.  This pins the model file (GQA head mapping, RoPE style, norms) to the
 * training code independently of code generation. */
#include <criterion/criterion.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/support/compare.h"
#include "tests/support/slurp.h"

#define SRC ELIDE_SOURCE_DIR
#define CHARLM8_VOCAB 256

Test(charlm8_interp, logits_match_training_script)
{
	size_t np, nl, nd;
	unsigned char *prompt = ts_slurp(SRC "/tests/fixtures/charlm8_prompt.txt", &np);
	float *ref = (float *)ts_slurp(SRC "/tests/fixtures/charlm8_logits.f32", &nl);
	cr_assert_eq(nl, np * CHARLM8_VOCAB * sizeof(float));
	char toks[4096] = { 0 };
	size_t k = 0;
	for (size_t t = 0; t < np; t++)
		k += (size_t)snprintf(toks + k, sizeof toks - k, "%s%u", t ? "," : "", prompt[t]);
	char out[512];
	snprintf(out, sizeof out, "%s/charlm8_interp_logits.f32", ELIDE_BINARY_DIR);
	remove(out);
	char cmd[8192];
	snprintf(cmd, sizeof cmd,
	         "'%s' run --interp '%s/examples/charlm8/charlm8.elide' -w '%s/examples/charlm8/charlm8.safetensors'"
	         " --tokens %s --dump-logits '%s' > /dev/null",
	         ELIDE_BIN, SRC, SRC, toks, out);
	cr_assert_eq(system(cmd), 0, "failed: %s", cmd);
	float *got = (float *)ts_slurp(out, &nd);
	cr_assert_eq(nd, nl, "interpreter wrote %zu bytes of logits, the fixture has %zu", nd, nl);
	for (size_t t = 0; t < np; t++) {
		const float *a = got + t * CHARLM8_VOCAB, *b = ref + t * CHARLM8_VOCAB;
		double e = ts_rel_err(a, b, CHARLM8_VOCAB);
		cr_expect_leq(e, 1e-4, "position %zu: normalised error %g", t, e);
		cr_expect_eq(ts_argmax(a, CHARLM8_VOCAB), ts_argmax(b, CHARLM8_VOCAB), "position %zu: argmax", t);
	}
	remove(out);
	free(got);
	free(prompt);
	free(ref);
}
