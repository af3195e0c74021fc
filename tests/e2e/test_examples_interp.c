/* test_examples_interp.c - each trained example model (examples/charlm, examples/charlm8)
 * with its trained weights, run by `elide run --interp`, against the logits its
 * training script (examples/NAME/train.py) stored for a fixed prompt
 * (tests/fixtures/NAME_logits.f32), position by position, with a normalised error
 * max|a - b| / max|b| <= 1e-4 and the same argmax.  This pins the model files (GQA
 * head mapping, RoPE style, norms) to the training code independently of code
 * generation. */
#include <criterion/criterion.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/support/compare.h"
#include "tests/support/slurp.h"

#define SRC ELIDE_SOURCE_DIR
#define VOCAB 256 /* both examples model bytes */

/* The interpreter's logits for example `name`'s fixture prompt against the fixture. */
static void
check_example(const char *name)
{
	char path[1024];
	size_t np, nl, nd;
	snprintf(path, sizeof path, SRC "/tests/fixtures/%s_prompt.txt", name);
	unsigned char *prompt = ts_slurp(path, &np);
	snprintf(path, sizeof path, SRC "/tests/fixtures/%s_logits.f32", name);
	float *ref = (float *)ts_slurp(path, &nl);
	cr_assert_eq(nl, np * VOCAB * sizeof(float));
	char toks[4096] = { 0 };
	size_t k = 0;
	for (size_t t = 0; t < np; t++)
		k += (size_t)snprintf(toks + k, sizeof toks - k, "%s%u", t ? "," : "", prompt[t]);
	char out[512];
	snprintf(out, sizeof out, "%s/%s_interp_logits.f32", ELIDE_BINARY_DIR, name);
	remove(out);
	char cmd[8192];
	snprintf(cmd, sizeof cmd,
	         "'%s' run --interp '%s/examples/%s/%s.elide' -w '%s/examples/%s/%s.safetensors'"
	         " --tokens %s --dump-logits '%s' > /dev/null",
	         ELIDE_BIN, SRC, name, name, SRC, name, name, toks, out);
	cr_assert_eq(system(cmd), 0, "failed: %s", cmd);
	float *got = (float *)ts_slurp(out, &nd);
	cr_assert_eq(nd, nl, "interpreter wrote %zu bytes of logits, the fixture has %zu", nd, nl);
	for (size_t t = 0; t < np; t++) {
		const float *a = got + t * VOCAB, *b = ref + t * VOCAB;
		double e = ts_rel_err(a, b, VOCAB);
		cr_expect_leq(e, 1e-4, "%s position %zu: normalised error %g", name, t, e);
		cr_expect_eq(ts_argmax(a, VOCAB), ts_argmax(b, VOCAB), "%s position %zu: argmax", name, t);
	}
	remove(out);
	free(got);
	free(prompt);
	free(ref);
}

Test(examples_interp, charlm_logits_match_training_script)
{
	check_example("charlm");
}

Test(examples_interp, charlm8_logits_match_training_script)
{
	check_example("charlm8");
}
