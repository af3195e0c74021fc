/* test_pipeline_agree.c - one pass pipeline for every way of running a model: the
 * object of `elide compile` (linked with cc into tests/e2e/cg_driver.c), the JIT
 * (`elide run`) and the interpreter (`elide run --interp`) must agree under a policy
 * (max relative error <= 1e-4 per row, same argmax), for decode and prefill:
 *   - every policy of examples/llama/llama.elide, on its committed tiny weights
 *     (policies no pass applies yet compile to the dense model in all three);
 *   - mixes of `drop layers` with `prune layer` / `prune sublayer` on a seeded random
 *     5-layer Llama, where the order of the two passes changes the model (drops run
 *     first, then pruning scores the layers left). */
#include <criterion/criterion.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/support/compare.h"
#include "tests/support/randmodel.h"
#include "tests/support/slurp.h"

#define NTOK 12 /* decode steps */
#define NPRE 9  /* prefill tokens */

static char dir[256];

static int
shrc(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static int
shrc(const char *fmt, ...)
{
	char cmd[8192];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(cmd, sizeof cmd, fmt, ap);
	va_end(ap);
	int rc = system(cmd);
	rc = WIFEXITED(rc) ? WEXITSTATUS(rc) : 128;
	cr_assert_eq(rc, 0, "command failed (%d): %s", rc, cmd);
	return rc;
}

static void
setup(void)
{
	snprintf(dir, sizeof dir, "%s/pipeline_agree_%d", ELIDE_BINARY_DIR, (int)getpid());
	mkdir(dir, 0777);
}

static void
teardown(void)
{
	char cmd[300];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", dir);
}

/* Largest relative error over rows of vocab floats; every argmax must agree. */
static double
compare_rows(const char *got_path, const char *ref_path, int vocab, const char *what)
{
	size_t n, nr;
	float *got = ts_slurp_floats(got_path, &n), *ref = ts_slurp_floats(ref_path, &nr);
	cr_assert(got && ref, "%s: missing logits", what);
	cr_assert_eq(n, nr, "%s: %zu floats against %zu", what, n, nr);
	cr_assert(n > 0 && n % (size_t)vocab == 0, "%s: %zu floats", what, n);
	double worst = 0;
	for (size_t t = 0; t < n / (size_t)vocab; t++) {
		const float *g = got + t * (size_t)vocab, *r = ref + t * (size_t)vocab;
		double e = ts_rel_err(g, r, vocab);
		if (e > worst)
			worst = e;
		cr_expect(e <= 1e-4, "%s row %zu: relative error %.3g", what, t, e);
		cr_expect_eq(ts_argmax(g, vocab), ts_argmax(r, vocab), "%s row %zu: argmax differs", what, t);
	}
	free(got);
	free(ref);
	return worst;
}

/* Runs model `src` with weights `w` under `policy` (NULL: dense) three ways and
 * compares the compiled object and the JIT with the interpreter. */
static void
three_ways(const char *src, const char *w, const char *policy, int vocab)
{
	char pol[128] = "", tag[64];
	if (policy)
		snprintf(pol, sizeof pol, "--policy %s", policy);
	snprintf(tag, sizeof tag, "%s", policy ? policy : "dense");
	char toks[256] = "", targs[256] = "", ptoks[256] = "", pargs[256] = "";
	for (int i = 0; i < NTOK; i++) {
		int t = (i * 37 + 11) % vocab;
		snprintf(toks + strlen(toks), sizeof toks - strlen(toks), "%s%d", i ? "," : "", t);
		snprintf(targs + strlen(targs), sizeof targs - strlen(targs), " %d", t);
	}
	for (int i = 0; i < NPRE; i++) {
		int t = (i * 53 + 5) % vocab;
		snprintf(ptoks + strlen(ptoks), sizeof ptoks - strlen(ptoks), "%s%d", i ? "," : "", t);
		snprintf(pargs + strlen(pargs), sizeof pargs - strlen(pargs), " %d", t);
	}
	const char *q = "2>/dev/null >/dev/null";
	shrc("%s compile %s -w %s -o %s/%s.out %s 2>/dev/null", ELIDE_BIN, src, w, dir, tag, pol);
	shrc("cc -std=c17 -O1 %s -I%s/%s.out -I%s %s/tests/e2e/cg_driver.c %s/%s.out/llama.o %s/runtime/libelide_rt.a "
	     "-lpthread -lm -o %s/%s.out/driver",
	     ELIDE_DRIVER_CFLAGS, dir, tag, ELIDE_SOURCE_DIR, ELIDE_SOURCE_DIR, dir, tag, ELIDE_BINARY_DIR, dir, tag);
	shrc("%s/%s.out/driver decode %s/%s.out/llama.weights 1 %s/%s.obj %s", dir, tag, dir, tag, dir, tag, targs);
	shrc("%s/%s.out/driver prefill %s/%s.out/llama.weights 1 %s/%s.pobj %s", dir, tag, dir, tag, dir, tag, pargs);
	shrc("%s run %s -w %s %s --tokens %s --dump-logits %s/%s.jit %s", ELIDE_BIN, src, w, pol, toks, dir, tag, q);
	shrc("%s run --prefill %s -w %s %s --tokens %s --dump-logits %s/%s.pjit %s", ELIDE_BIN, src, w, pol, ptoks, dir,
	     tag, q);
	shrc("%s run --interp %s -w %s %s --tokens %s --dump-logits %s/%s.int %s", ELIDE_BIN, src, w, pol, toks, dir, tag,
	     q);
	shrc("%s run --interp --prefill %s -w %s %s --tokens %s --dump-logits %s/%s.pint %s", ELIDE_BIN, src, w, pol,
	     ptoks, dir, tag, q);
	const char *pairs[4][3] = { { "obj", "int", "compiled object vs interpreter (decode)" },
		                    { "jit", "int", "JIT vs interpreter (decode)" },
		                    { "pobj", "pint", "compiled object vs interpreter (prefill)" },
		                    { "pjit", "pint", "JIT vs interpreter (prefill)" } };
	for (int i = 0; i < 4; i++) {
		char a[512], b[512], what[256];
		snprintf(a, sizeof a, "%s/%s.%s", dir, tag, pairs[i][0]);
		snprintf(b, sizeof b, "%s/%s.%s", dir, tag, pairs[i][1]);
		snprintf(what, sizeof what, "policy %s: %s", tag, pairs[i][2]);
		double e = compare_rows(a, b, vocab, what);
		fprintf(stderr, "pipeline_agree: %-56s max relative error %.3g\n", what, e);
	}
}

/* Every policy of the example (names read from the file, so a new one is covered). */
Test(pipeline_agree, every_policy_of_the_llama_example, .init = setup, .fini = teardown, .timeout = 900)
{
	const char *src = ELIDE_SOURCE_DIR "/examples/llama/llama.elide";
	const char *w = ELIDE_SOURCE_DIR "/tests/fixtures/llama_tiny.safetensors";
	size_t n;
	char *text = ts_slurp(src, &n);
	cr_assert(text);
	static char names[64][64];
	int npol = 0;
	for (char *p = text; npol < 64 && (p = strstr(p, "\npolicy ")); p++)
		npol += sscanf(p + 8, "%63[A-Za-z0-9_]", names[npol]) == 1;
	free(text);
	cr_assert_geq(npol, 10, "only %d policies found", npol);
	three_ways(src, w, NULL, 256);
	for (int i = 0; i < npol; i++)
		three_ways(src, w, names[i], 256);
}

/* A seeded 5-layer Llama with policies whose result depends on the order of
 * drop-layers and prune-structured. */
Test(pipeline_agree, drop_and_prune_mixes, .init = setup, .fini = teardown, .timeout = 900)
{
	RmConfig c = rm_default_config();
	c.layers = 5;
	c.dim = 32;
	c.ffn = 64;
	c.vocab = 64;
	c.ctx = 32;
	c.seed = 5;
	char w[300], src[300], calib[300];
	snprintf(w, sizeof w, "%s/m.safetensors", dir);
	snprintf(src, sizeof src, "%s/m.elide", dir);
	snprintf(calib, sizeof calib, "%s/calib.txt", dir);
	cr_assert(rm_write_model(&c, w));
	char *model = rm_elide_source(&c, "llama");
	FILE *f = fopen(src, "w");
	cr_assert(f);
	fprintf(f, "%s\n"
	           "policy mix for llama { prune layer keep 4 score l2; drop layers 1; }\n"
	           "policy mix2 for llama { drop layers 3; prune layer keep 3 score l1; }\n"
	           "policy mixbi for llama { prune layer keep 3 score bi calibrate \"calib.txt\" tokens 24; drop layers 0, 2; }\n"
	           "policy mixsub for llama { prune sublayer keep 2 block attention score l2 protect none; drop layers 2; }\n"
	           "policy mixsub2 for llama { prune sublayer keep 2 block ffn score angular protect none "
	           "calibrate \"calib.txt\" tokens 24; drop layers 1..3; }\n",
	           model);
	fclose(f);
	free(model);
	f = fopen(calib, "w");
	cr_assert(f);
	for (int i = 0; i < 40; i++)
		fprintf(f, "%d\n", (i * 29 + 3) % c.vocab);
	fclose(f);
	const char *pols[] = { "mix", "mix2", "mixbi", "mixsub", "mixsub2" };
	for (int i = 0; i < 5; i++)
		three_ways(src, w, pols[i], c.vocab);
}
