/* test_charlm8.c - the compiled charlm8 (examples/charlm8, objects `elide compile`
 * wrote at build time) against its training script:
 *  - the logits of every position of a fixed prompt match the ones train.py stored
 *    (tests/fixtures/charlm8_logits.f32) through step() and prefill(): normalised
 *    error max|a - b| / max|b| <= 1e-4 and the same argmax;
 *  - on the committed held-out sample (examples/charlm8/heldout_16k.txt), scored as
 *    train.py scores it, bits per byte with chunks of 1024 and of 128 bytes are within
 *    0.01 of what train.py reported (metrics.json), and the 1024-byte context is
 *    better than the 128-byte one by at least CTX_MARGIN;
 *  - the first exit (policy first1: every layer but the first dropped, then the
 *    shared head; run through its driver) is within 0.01 of train.py's first exit,
 *    and the last exit beats it by at least EXIT_MARGIN (the README states both). */
#include "charlm8.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/support/compare.h"
#include "tests/support/slurp.h"

#define SRC ELIDE_SOURCE_DIR
#define WEIGHTS ELIDE_BINARY_DIR "/examples/charlm8/dense/charlm8.weights"
#define HELDOUT SRC "/examples/charlm8/heldout_16k.txt"
#define METRICS SRC "/examples/charlm8/metrics.json"
#define CTX_MARGIN 0.03  /* bits per byte: 1024-byte chunks below 128-byte chunks */
#define EXIT_MARGIN 0.5  /* bits per byte: the last exit below the first */

static charlm8_ctx *
open_model(void)
{
	charlm8_ctx *c = charlm8_create();
	cr_assert_not_null(c);
	cr_assert_eq(charlm8_load_weights(c, WEIGHTS), CHARLM8_OK, "cannot load %s", WEIGHTS);
	return c;
}

/* The value `exit` (0-based; -1: the last) of the list "key": [a, b, ...] in
 * metrics.json. */
static double
metric(const char *key, int exit)
{
	size_t n;
	char *m = (char *)ts_slurp(METRICS, &n);
	char pat[128];
	snprintf(pat, sizeof pat, "\"%s\":", key);
	const char *p = strstr(m, pat);
	cr_assert_not_null(p, "metrics.json has no %s", key);
	p = strchr(p, '[');
	cr_assert_not_null(p);
	double v[CHARLM8_LAYERS];
	int k = 0;
	for (p++; k < CHARLM8_LAYERS; k++) {
		char *e;
		v[k] = strtod(p, &e);
		cr_assert(e != p, "metrics.json: %s: a number expected", key);
		p = e + strspn(e, " \t\n,");
		if (*p == ']') {
			k++;
			break;
		}
	}
	cr_assert_eq(k, CHARLM8_LAYERS, "metrics.json: %s has %d values", key, k);
	free(m);
	double r = v[exit < 0 ? CHARLM8_LAYERS - 1 : exit];
	cr_assert(r > 0.5 && r < 8.0, "implausible bits per byte %g", r);
	return r;
}

/* Bits per byte of text[0..n) in chunks of ctx bytes, each from an empty context
 * (train.py's chunk_eval). */
static double
chunk_bpb(charlm8_ctx *c, const unsigned char *text, size_t n, size_t ctx)
{
	float lo[CHARLM8_VOCAB];
	double bits = 0;
	size_t scored = 0;
	for (size_t s = 0; s < n; s += ctx) {
		size_t len = n - s < ctx ? n - s : ctx;
		cr_assert_eq(charlm8_reset(c), CHARLM8_OK);
		for (size_t i = 0; i + 1 < len; i++) {
			cr_assert_eq(charlm8_step(c, text[s + i], (int32_t)i, lo), CHARLM8_OK);
			bits += ts_bits(lo, CHARLM8_VOCAB, text[s + i + 1]);
			scored++;
		}
	}
	cr_assert(scored > 0);
	return bits / (double)scored;
}

Test(charlm8, logits_match_training_script)
{
	size_t np, nl;
	unsigned char *prompt = ts_slurp(SRC "/tests/fixtures/charlm8_prompt.txt", &np);
	float *ref = (float *)ts_slurp(SRC "/tests/fixtures/charlm8_logits.f32", &nl);
	cr_assert_eq(nl, np * CHARLM8_VOCAB * sizeof(float), "fixture of %zu bytes for a %zu-byte prompt", nl, np);
	cr_assert(np > 1 && np <= CHARLM8_CTX);
	charlm8_ctx *c = open_model();
	float lo[CHARLM8_VOCAB];
	for (size_t t = 0; t < np; t++) {
		const float *r = ref + t * CHARLM8_VOCAB;
		cr_assert_eq(charlm8_step(c, prompt[t], (int32_t)t, lo), CHARLM8_OK);
		double e = ts_rel_err(lo, r, CHARLM8_VOCAB);
		cr_expect_leq(e, 1e-4, "step: position %zu: normalised error %g", t, e);
		cr_expect_eq(ts_argmax(lo, CHARLM8_VOCAB), ts_argmax(r, CHARLM8_VOCAB), "step: position %zu: argmax", t);
	}
	/* prefill of every prefix gives the logits of its last byte */
	int32_t toks[CHARLM8_CTX];
	for (size_t t = 0; t < np; t++)
		toks[t] = prompt[t];
	for (size_t len = 1; len <= np; len += 4) {
		const float *r = ref + (len - 1) * CHARLM8_VOCAB;
		cr_assert_eq(charlm8_reset(c), CHARLM8_OK);
		cr_assert_eq(charlm8_prefill(c, toks, (int32_t)len, 0, lo), CHARLM8_OK);
		double e = ts_rel_err(lo, r, CHARLM8_VOCAB);
		cr_expect_leq(e, 1e-4, "prefill of %zu bytes: normalised error %g", len, e);
		cr_expect_eq(ts_argmax(lo, CHARLM8_VOCAB), ts_argmax(r, CHARLM8_VOCAB), "prefill of %zu bytes: argmax", len);
	}
	charlm8_destroy(c);
	free(prompt);
	free(ref);
}

Test(charlm8, heldout_long_context_helps)
{
	size_t n;
	unsigned char *text = ts_slurp(HELDOUT, &n);
	cr_assert_eq(n, 16384);
	double rep1024 = metric("heldout_ctx1024_bpb_per_exit", -1);
	double rep128 = metric("heldout_ctx128_bpb_per_exit", -1);
	charlm8_ctx *c = open_model();
	double b1024 = chunk_bpb(c, text, n, 1024);
	double b128 = chunk_bpb(c, text, n, 128);
	cr_log_info("charlm8: held-out 16 KB: %.4f bits/byte with 1024-byte chunks, %.4f with 128 "
	            "(train.py: %.4f, %.4f)", b1024, b128, rep1024, rep128);
	cr_expect(fabs(b1024 - rep1024) < 0.01, "ctx 1024: %.4f bits/byte, train.py reported %.4f", b1024, rep1024);
	cr_expect(fabs(b128 - rep128) < 0.01, "ctx 128: %.4f bits/byte, train.py reported %.4f", b128, rep128);
	cr_expect_lt(b1024, b128 - CTX_MARGIN, "1024 bytes of context (%.4f) not %.2f below 128 (%.4f)", b1024,
	             CTX_MARGIN, b128);
	charlm8_destroy(c);
	free(text);
}

Test(charlm8, last_exit_beats_first_exit)
{
	double rep_first = metric("heldout_ctx1024_bpb_per_exit", 0);
	double rep_last = metric("heldout_ctx1024_bpb_per_exit", -1);
	const char *cmd = "'" ELIDE_BINARY_DIR "/examples/charlm8_first1' -w '" ELIDE_BINARY_DIR
	                  "/examples/charlm8/first1/charlm8.weights' --eval '" HELDOUT "' --ctx 1024";
	FILE *p = popen(cmd, "r");
	cr_assert_not_null(p, "cannot run %s", cmd);
	char line[256] = "";
	double first = -1;
	while (fgets(line, sizeof line, p))
		if (!strncmp(line, "bits-per-byte ", 14))
			first = strtod(line + 14, NULL);
	cr_assert_eq(pclose(p), 0, "failed: %s", cmd);
	cr_assert(first > 0, "no bits-per-byte line from %s", cmd);
	cr_log_info("charlm8: first exit %.4f bits/byte (train.py: %.4f), last exit %.4f", first, rep_first, rep_last);
	cr_expect(fabs(first - rep_first) < 0.01, "first exit: %.4f bits/byte, train.py reported %.4f", first,
	          rep_first);
	cr_expect_lt(rep_last, first - EXIT_MARGIN, "last exit %.4f not %.2f below the first %.4f", rep_last,
	             EXIT_MARGIN, first);
}
