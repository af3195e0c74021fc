/* test_interp_encoder.c - a bidirectional encoder (forward entry, attention without a
 * cache, learned positions, biases added as rows, layernorm, erf GELU, a [CLS] classifier) through the
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

Test(interp_encoder, bidirectional_forward)
{
	static Diag d; /* the front end keeps its sources registered here */
	diag_init(&d, stderr);
	Module *m = fe_load(ELIDE_SOURCE_DIR "/tests/fixtures/tiny_encoder.elide", NULL, &d);
	cr_assert(m, "the encoder does not load");
	const char *path = ELIDE_BINARY_DIR "/interp_encoder.safetensors";
	cr_assert(rm_write_params(m, 5, path));
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
	int32_t many[17] = { 0 };
	cr_expect_not(interp_run(s, "forward", many, 17, 0, c, err, sizeof err));
	cr_expect(strstr(err, "longer than the bound of 16"), "%s", err);
	/* learned positions: swapping two tokens after [CLS] changes its row; without
	 * positions attention sees the same set of keys and only rounding would differ */
	int32_t abc[3] = { 4, 7, 9 }, acb[3] = { 4, 9, 7 };
	float x[3], y[3];
	cr_assert(interp_run(s, "forward", abc, 3, 0, x, err, sizeof err), "%s", err);
	cr_assert(interp_run(s, "forward", acb, 3, 0, y, err, sizeof err), "%s", err);
	double diff = 0, mag = 0;
	for (int i = 0; i < 3; i++) {
		diff = fmax(diff, fabs((double)x[i] - y[i]));
		mag = fmax(mag, fabs((double)x[i]));
	}
	cr_expect(diff > 1e-3 * mag, "the order of the tokens must matter: %g of %g", diff, mag);
	interp_free(s);
	ir_free_module(m);
}
