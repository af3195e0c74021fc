/* test_charlm.c - the compiled dense charlm (examples/charlm, linked from the object
 * `elide compile` wrote at build time) against its training script:
 *  - the logits of every position of a fixed prompt match the ones train.py stored
 *    (tests/fixtures/charlm_logits.f32), through step() and through prefill(), with a
 *    normalised error max|a - b| / max|b| <= 1e-4 per position;
 *  - bits per byte on the committed 4 KB held-out sample (examples/charlm/heldout_4k.txt),
 *    scored as train.py scores it, stays within 0.01 of the value train.py reported
 *    (examples/charlm/metrics.json). */
#include "charlm.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/support/compare.h"
#include "tests/support/slurp.h"

#define WEIGHTS ELIDE_BINARY_DIR "/examples/charlm/dense/charlm.weights"

static charlm_ctx *
open_model(void)
{
	charlm_ctx *c = charlm_create();
	cr_assert_not_null(c);
	cr_assert_eq(charlm_load_weights(c, WEIGHTS), CHARLM_OK, "cannot load %s", WEIGHTS);
	return c;
}

Test(charlm, logits_match_training_script)
{
	size_t np, nl;
	unsigned char *prompt = ts_slurp(ELIDE_SOURCE_DIR "/tests/fixtures/charlm_prompt.txt", &np);
	float *ref = (float *)ts_slurp(ELIDE_SOURCE_DIR "/tests/fixtures/charlm_logits.f32", &nl);
	cr_assert_eq(nl, np * CHARLM_VOCAB * sizeof(float), "fixture of %zu bytes for a %zu-byte prompt", nl, np);
	cr_assert(np > 1 && np <= CHARLM_CTX);
	charlm_ctx *c = open_model();
	float lo[CHARLM_VOCAB];
	for (size_t t = 0; t < np; t++) {
		cr_assert_eq(charlm_step(c, prompt[t], (int32_t)t, lo), CHARLM_OK);
		double e = ts_rel_err(lo, ref + t * CHARLM_VOCAB, CHARLM_VOCAB);
		cr_expect_leq(e, 1e-4, "step: position %zu: normalised error %g", t, e);
	}
	/* prefill of every prefix gives the logits of its last byte */
	int32_t toks[CHARLM_CTX];
	for (size_t t = 0; t < np; t++)
		toks[t] = prompt[t];
	for (size_t len = 1; len <= np; len += 5) {
		cr_assert_eq(charlm_reset(c), CHARLM_OK);
		cr_assert_eq(charlm_prefill(c, toks, (int32_t)len, 0, lo), CHARLM_OK);
		double e = ts_rel_err(lo, ref + (len - 1) * CHARLM_VOCAB, CHARLM_VOCAB);
		cr_expect_leq(e, 1e-4, "prefill of %zu bytes: normalised error %g", len, e);
	}
	charlm_destroy(c);
	free(prompt);
	free(ref);
}

Test(charlm, heldout_bits_per_byte)
{
	size_t n, nm;
	unsigned char *text = ts_slurp(ELIDE_SOURCE_DIR "/examples/charlm/heldout_4k.txt", &n);
	char *metrics = (char *)ts_slurp(ELIDE_SOURCE_DIR "/examples/charlm/metrics.json", &nm);
	const char *key = strstr(metrics, "\"heldout_4k_bpb\":");
	cr_assert_not_null(key, "metrics.json has no heldout_4k_bpb");
	double reported = strtod(key + strlen("\"heldout_4k_bpb\":"), NULL);
	cr_assert(reported > 0.5 && reported < 8.0, "implausible reported bits per byte %g", reported);
	cr_assert_eq(n, 4096);
	charlm_ctx *c = open_model();
	float lo[CHARLM_VOCAB];
	double bits = 0;
	size_t scored = 0;
	for (size_t s = 0; s < n; s += CHARLM_CTX) {
		size_t len = n - s < CHARLM_CTX ? n - s : CHARLM_CTX;
		cr_assert_eq(charlm_reset(c), CHARLM_OK);
		for (size_t i = 0; i + 1 < len; i++) {
			cr_assert_eq(charlm_step(c, text[s + i], (int32_t)i, lo), CHARLM_OK);
			bits += ts_bits(lo, CHARLM_VOCAB, text[s + i + 1]);
			scored++;
		}
	}
	double bpb = bits / (double)scored;
	cr_log_info("charlm: held-out 4 KB: %.4f bits/byte (train.py reported %.4f)", bpb, reported);
	cr_expect_lt(bpb, reported + 0.01, "bits per byte %.4f, train.py reported %.4f", bpb, reported);
	cr_expect_gt(bpb, reported - 0.01, "bits per byte %.4f, train.py reported %.4f", bpb, reported);
	charlm_destroy(c);
	free(text);
	free(metrics);
}
