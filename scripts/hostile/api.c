/* api.c - the generated-code harness of scripts/hostile_campaign.sh, linked with the
 * object and header of the tiny test model (model name 'tiny'; compiled by the script,
 * with a policy that gives it knobs and stat slots for the `api` cases) and the runtime
 * built from source under ASan/UBSan.
 *   api blob FILE BASELINE   loads FILE with tiny_load_weights and, copied to 64-aligned
 *                            memory that ends at an inaccessible page, with
 *                            tiny_load_weights_mem; an accepted blob runs a decode step
 *                            and a prefill whose logits must equal BASELINE's bytes
 *   api baseline FILE OUT    writes the logits of FILE (a good blob) to OUT
 *   api case N WEIGHTS       one misuse of the API (N in [0, api count)); the call must
 *                            return the documented error (or, where noted, succeed)
 *   api count                prints the number of cases
 * Exit status: 0 rejected cleanly or the expected result, 10 accepted with the right
 * logits, 20 wrong (accepted with other logits, loaders disagree, an unexpected status),
 * 2 a harness failure.  A crash is a signal or a sanitizer report. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tiny.h"

#define NOUT (2 * TINY_VOCAB)

static int
run_model(tiny_ctx *ctx, float *out)
{
	int32_t toks[3] = { 1, 2, 3 };
	int s = tiny_reset(ctx);
	if (s == TINY_OK)
		s = tiny_step(ctx, 1, 0, out);
	if (s == TINY_OK)
		s = tiny_prefill(ctx, toks, 3, 1, out + TINY_VOCAB);
	return s;
}

static unsigned char *
slurp(const char *path, size_t *n)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return NULL;
	unsigned char *p = NULL;
	size_t cap = 0, len = 0, got;
	do {
		if (len == cap) {
			cap = cap ? cap * 2 : 65536;
			p = realloc(p, cap);
		}
		got = fread(p + len, 1, cap - len, f);
		len += got;
	} while (got > 0);
	fclose(f);
	*n = len;
	return p;
}

/* the bytes of data copied to 64-aligned memory ending at a PROT_NONE page */
static unsigned char *
guarded(const unsigned char *data, size_t size, void **region, size_t *span)
{
	size_t page = (size_t)sysconf(_SC_PAGESIZE);
	size_t off = (page - (size & (page - 1))) & (page - 1) & ~(size_t)63;
	*span = (off + size + page - 1) / page * page + page;
	unsigned char *r = mmap(NULL, *span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (r == MAP_FAILED)
		return NULL;
	mprotect(r + *span - page, page, PROT_NONE);
	memcpy(r + off, data, size);
	*region = r;
	return r + off;
}

static unsigned char *want; /* the good logits (static: reachable to the end) */

static int
cmd_blob(const char *file, const char *baseline)
{
	size_t bn = 0, size = 0;
	want = slurp(baseline, &bn);
	if (!want || bn != sizeof(float) * NOUT) {
		fprintf(stderr, "api: bad baseline '%s'\n", baseline);
		return 2;
	}
	unsigned char *data = slurp(file, &size);
	if (!data)
		data = malloc(1);
	float out_f[NOUT], out_m[NOUT];
	tiny_ctx *ctx = tiny_create();
	if (!ctx)
		return 2;
	int sf = tiny_load_weights(ctx, file), rf = -1;
	if (sf == TINY_OK)
		rf = run_model(ctx, out_f);
	tiny_destroy(ctx);
	void *region = NULL;
	size_t span = 0;
	unsigned char *g = guarded(data, size, &region, &span);
	if (!g)
		return 2;
	ctx = tiny_create();
	if (!ctx)
		return 2;
	int sm = tiny_load_weights_mem(ctx, g, size), rm = -1;
	if (sm == TINY_OK)
		rm = run_model(ctx, out_m);
	tiny_destroy(ctx);
	munmap(region, span);
	free(data);
	printf("file: status %d run %d; memory: status %d run %d\n", sf, rf, sm, rm);
	if ((sf == TINY_OK) != (sm == TINY_OK)) {
		printf("WRONG: the two loaders disagree\n");
		return 20;
	}
	if (sf != TINY_OK)
		return 0;
	if (rf != TINY_OK || rm != TINY_OK) {
		printf("WRONG: accepted weights, then a step failed\n");
		return 20;
	}
	if (memcmp(out_f, want, bn) || memcmp(out_m, want, bn)) {
		printf("WRONG: accepted, logits differ from the good blob's\n");
		return 20;
	}
	return 10;
}

static int
cmd_baseline(const char *file, const char *outpath)
{
	float out[NOUT];
	tiny_ctx *ctx = tiny_create();
	if (!ctx || tiny_load_weights(ctx, file) != TINY_OK || run_model(ctx, out) != TINY_OK)
		return 2;
	tiny_destroy(ctx);
	FILE *f = fopen(outpath, "wb");
	if (!f || fwrite(out, sizeof out, 1, f) != 1 || fclose(f))
		return 2;
	return 0;
}

/* ---- misuse cases ---- */

static const char *weights;
static float out[NOUT];

static tiny_ctx *
loaded(void)
{
	tiny_ctx *c = tiny_create();
	if (!c || tiny_load_weights(c, weights) != TINY_OK) {
		fprintf(stderr, "api: cannot load '%s'\n", weights);
		exit(2);
	}
	return c;
}

/* the model still computes the good logits after the misuse */
static int
still_good(tiny_ctx *c)
{
	float a[NOUT], b[NOUT];
	tiny_ctx *ref = loaded();
	if (run_model(ref, a) != TINY_OK || run_model(c, b) != TINY_OK)
		return 0;
	tiny_destroy(ref);
	return !memcmp(a, b, sizeof a);
}

#define EXPECT(call, want)                                                                      \
	do {                                                                                    \
		int got_ = (call);                                                              \
		printf("%s -> %d (want %d)\n", #call, got_, (want));                             \
		if (got_ != (want))                                                             \
			return 20;                                                              \
	} while (0)
#define CHECK(cond)                                                                             \
	do {                                                                                    \
		printf("%s: %s\n", #cond, (cond) ? "yes" : "NO");                                \
		if (!(cond))                                                                    \
			return 20;                                                              \
	} while (0)

static const int32_t bad_tokens[] = { -1, TINY_VOCAB, TINY_VOCAB + 1, INT32_MAX, INT32_MIN };
static const int32_t bad_pos[] = { -1, TINY_CTX, TINY_CTX + 1, INT32_MAX, INT32_MIN };
static const int32_t bad_len[] = { 0, -1, TINY_CTX + 1, INT32_MAX, INT32_MIN };
static const double bad_knob_values[] = { NAN, INFINITY, -INFINITY, 1e300, -1e300, -1.0 };

#define N_TOK (int)(sizeof bad_tokens / sizeof bad_tokens[0])
#define N_POS (int)(sizeof bad_pos / sizeof bad_pos[0])
#define N_LEN (int)(sizeof bad_len / sizeof bad_len[0])
#define N_KV (int)(sizeof bad_knob_values / sizeof bad_knob_values[0])

/* case groups: [0, N_TOK) tokens to step, then tokens to prefill, positions to step,
 * positions to prefill, lengths to prefill, knob values, then the fixed cases */
enum {
	G_STEP_TOK = 0,
	G_PRE_TOK = G_STEP_TOK + N_TOK,
	G_STEP_POS = G_PRE_TOK + N_TOK,
	G_PRE_POS = G_STEP_POS + N_POS,
	G_PRE_LEN = G_PRE_POS + N_POS,
	G_KNOB = G_PRE_LEN + N_LEN,
	G_FIXED = G_KNOB + N_KV,
	N_FIXED = 38,
	N_CASES = G_FIXED + N_FIXED,
};

static int
fixed_case(int k)
{
	int32_t toks[TINY_CTX + 1] = { 1, 2, 3 };
	tiny_ctx *c;
	char dir[] = "/tmp/elide-api-XXXXXX";
	switch (k) {
	case 0:
		c = tiny_create();
		EXPECT(tiny_step(c, 1, 0, out), TINY_ERR_NO_WEIGHTS);
		EXPECT(tiny_prefill(c, toks, 3, 0, out), TINY_ERR_NO_WEIGHTS);
		tiny_destroy(c);
		return 0;
	case 1:
		EXPECT(tiny_step(NULL, 1, 0, out), TINY_ERR_ARG);
		return 0;
	case 2:
		c = loaded();
		EXPECT(tiny_step(c, 1, 0, NULL), TINY_ERR_ARG);
		CHECK(still_good(c));
		tiny_destroy(c);
		return 0;
	case 3:
		c = loaded();
		EXPECT(tiny_prefill(c, NULL, 3, 0, out), TINY_ERR_ARG);
		EXPECT(tiny_prefill(c, toks, 3, 0, NULL), TINY_ERR_ARG);
		EXPECT(tiny_prefill(NULL, toks, 3, 0, out), TINY_ERR_ARG);
		tiny_destroy(c);
		return 0;
	case 4:
		c = loaded();
		EXPECT(tiny_prefill(c, toks, 2, TINY_CTX - 1, out), TINY_ERR_POS);
		EXPECT(tiny_prefill(c, toks, TINY_CTX, 1, out), TINY_ERR_POS);
		EXPECT(tiny_prefill(c, toks, 1, TINY_CTX - 1, out), TINY_OK);
		tiny_destroy(c);
		return 0;
	case 5:
		c = tiny_create();
		EXPECT(tiny_load_weights(c, NULL), TINY_ERR_ARG);
		EXPECT(tiny_load_weights(NULL, weights), TINY_ERR_ARG);
		tiny_destroy(c);
		return 0;
	case 6:
		c = tiny_create();
		EXPECT(tiny_load_weights_mem(c, NULL, TINY_WEIGHTS_SIZE), TINY_ERR_ARG);
		EXPECT(tiny_load_weights_mem(NULL, out, sizeof out), TINY_ERR_ARG);
		tiny_destroy(c);
		return 0;
	case 7: {
		size_t n;
		unsigned char *b = slurp(weights, &n), *a = aligned_alloc(64, n + 64);
		memcpy(a + 1, b, n);
		c = tiny_create();
		EXPECT(tiny_load_weights_mem(c, a + 1, n), TINY_ERR_ALIGN);
		EXPECT(tiny_load_weights_mem(c, a + 1, 0), TINY_ERR_BLOB_SIZE);
		EXPECT(tiny_step(c, 1, 0, out), TINY_ERR_NO_WEIGHTS);
		tiny_destroy(c);
		free(a);
		free(b);
		return 0;
	}
	case 8:
		c = tiny_create();
		EXPECT(tiny_load_weights(c, "/tmp"), TINY_ERR_IO);
		EXPECT(tiny_load_weights(c, "/dev/zero"), TINY_ERR_IO);
		EXPECT(tiny_load_weights(c, "/dev/null"), TINY_ERR_IO);
		EXPECT(tiny_load_weights(c, "/nonexistent/tiny.weights"), TINY_ERR_IO);
		EXPECT(tiny_load_weights(c, ""), TINY_ERR_IO);
		tiny_destroy(c);
		return 0;
	case 9: {
		if (!mkdtemp(dir))
			return 2;
		char fifo[64];
		snprintf(fifo, sizeof fifo, "%s/fifo", dir);
		mkfifo(fifo, 0600);
		c = tiny_create();
		EXPECT(tiny_load_weights(c, fifo), TINY_ERR_IO); /* must not block */
		tiny_destroy(c);
		unlink(fifo);
		rmdir(dir);
		return 0;
	}
	case 10:
		c = tiny_create();
		EXPECT(tiny_load_weights_abi(c, weights, TINY_ABI_HASH ^ 1), TINY_ERR_ABI);
		EXPECT(tiny_step(c, 1, 0, out), TINY_ERR_NO_WEIGHTS);
		tiny_destroy(c);
		return 0;
	case 11: {
		static _Alignas(64) unsigned char mem[TINY_CTX_SIZE + 64];
		CHECK(tiny_init(NULL, TINY_CTX_SIZE) == NULL);
		CHECK(tiny_init(mem, TINY_CTX_SIZE - 1) == NULL);
		CHECK(tiny_init(mem + 1, TINY_CTX_SIZE) == NULL);
		CHECK(tiny_init(mem, 0) == NULL);
		CHECK(tiny_init(mem, TINY_CTX_SIZE) != NULL);
		return 0;
	}
	case 12:
		EXPECT(tiny_reset(NULL), TINY_ERR_ARG);
		tiny_destroy(NULL);
		return 0;
	case 13:
		c = loaded();
		EXPECT(tiny_set_threads(c, -1), TINY_ERR_ARG);
		CHECK(still_good(c));
		tiny_destroy(c);
		return 0;
	case 14:
		c = loaded();
		{
			int s = tiny_set_threads(c, 1000000);
			printf("set_threads(1000000) -> %d\n", s);
			CHECK(s == TINY_OK || s == TINY_ERR_ARG);
		}
		CHECK(still_good(c));
		tiny_destroy(c);
		return 0;
	case 15:
		c = loaded();
		EXPECT(tiny_set_threads(c, INT32_MIN), TINY_ERR_ARG);
		EXPECT(tiny_set_threads(NULL, 2), TINY_ERR_ARG);
		tiny_destroy(c);
		return 0;
	case 16:
		c = loaded();
		EXPECT(tiny_set_knob(c, -1, 0.5), TINY_ERR_ARG);
		EXPECT(tiny_set_knob(c, TINY_NKNOBS, 0.5), TINY_ERR_ARG);
		EXPECT(tiny_set_knob(c, INT32_MAX, 0.5), TINY_ERR_ARG);
		EXPECT(tiny_set_knob(NULL, 0, 0.5), TINY_ERR_ARG);
		CHECK(isnan(tiny_get_knob(c, -1)));
		CHECK(isnan(tiny_get_knob(c, TINY_NKNOBS)));
		CHECK(tiny_knob_name(-1) == NULL);
		CHECK(tiny_knob_name(TINY_NKNOBS) == NULL);
		CHECK(tiny_knob_name(INT32_MIN) == NULL);
		tiny_destroy(c);
		return 0;
	case 17:
		c = loaded();
		CHECK(tiny_stat(c, -1) == -1);
		CHECK(tiny_stat(c, TINY_NSTATS) == -1);
		CHECK(tiny_stat(c, INT32_MAX) == -1);
		CHECK(tiny_stat_name(-1) == NULL);
		CHECK(tiny_stat_name(TINY_NSTATS) == NULL);
		tiny_destroy(c);
		return 0;
	case 18: { /* a failed reload after a good load: no crash, a documented state */
		size_t n;
		unsigned char *b = slurp(weights, &n);
		unsigned char *a = aligned_alloc(64, (n + 63) / 64 * 64);
		memcpy(a, b, n);
		a[n - 1] ^= 1;
		c = loaded();
		EXPECT(tiny_load_weights_mem(c, a, n), TINY_ERR_BLOB_CHECKSUM);
		int s = tiny_step(c, 1, 0, out);
		printf("step after a failed reload -> %d\n", s);
		CHECK(s == TINY_OK || s == TINY_ERR_NO_WEIGHTS);
		if (s == TINY_OK)
			CHECK(still_good(c));
		tiny_destroy(c);
		free(a);
		free(b);
		return 0;
	}
	case 19:
		c = loaded();
		EXPECT(tiny_load_weights(c, weights), TINY_OK);
		EXPECT(tiny_load_weights(c, weights), TINY_OK);
		CHECK(still_good(c));
		tiny_destroy(c);
		return 0;
	case 20:
		c = loaded();
		tiny_set_parallel_for(c, NULL, NULL);
		CHECK(still_good(c));
		tiny_destroy(c);
		return 0;
	case 21: /* steps at every position, then past the end */
		c = loaded();
		for (int p = 0; p < TINY_CTX; p++)
			EXPECT(tiny_step(c, p % TINY_VOCAB, p, out), TINY_OK);
		EXPECT(tiny_step(c, 1, TINY_CTX, out), TINY_ERR_POS);
		tiny_destroy(c);
		return 0;
	case 22: /* a failed call writes nothing to out */
		c = loaded();
		for (int i = 0; i < NOUT; i++)
			out[i] = 12345.0f;
		EXPECT(tiny_step(c, -1, 0, out), TINY_ERR_TOKEN);
		EXPECT(tiny_prefill(c, toks, 3, TINY_CTX, out), TINY_ERR_POS);
		for (int i = 0; i < NOUT; i++)
			if (out[i] != 12345.0f)
				CHECK(!"out untouched");
		tiny_destroy(c);
		return 0;
	case 23: /* a failed call leaves the statistics alone */
		c = loaded();
		{
			tiny_stats a, b;
			EXPECT(tiny_step(c, 1, 0, out), TINY_OK);
			tiny_get_stats(c, &a);
			EXPECT(tiny_step(c, TINY_VOCAB, 1, out), TINY_ERR_TOKEN);
			tiny_get_stats(c, &b);
			CHECK(!memcmp(&a, &b, sizeof a));
		}
		tiny_destroy(c);
		return 0;
	case 24: /* prefill tokens, one of them bad: nothing written to the cache */
		c = loaded();
		{
			float a[TINY_VOCAB], b[TINY_VOCAB];
			int32_t t[4] = { 1, 2, -7, 3 };
			EXPECT(tiny_step(c, 1, 0, a), TINY_OK);
			EXPECT(tiny_prefill(c, t, 4, 1, out), TINY_ERR_TOKEN);
			EXPECT(tiny_step(c, 2, 1, a), TINY_OK);
			tiny_ctx *r = loaded();
			EXPECT(tiny_step(r, 1, 0, b), TINY_OK);
			EXPECT(tiny_step(r, 2, 1, b), TINY_OK);
			CHECK(!memcmp(a, b, sizeof a));
			tiny_destroy(r);
		}
		tiny_destroy(c);
		return 0;
	case 25: /* many contexts */
		for (int i = 0; i < 200; i++) {
			c = loaded();
			EXPECT(tiny_step(c, i % TINY_VOCAB, 0, out), TINY_OK);
			tiny_destroy(c);
		}
		return 0;
	case 26: { /* the file changes after loading: the context keeps its copy */
		if (!mkdtemp(dir))
			return 2;
		char p[96], cmd[256];
		snprintf(p, sizeof p, "%s/w", dir);
		snprintf(cmd, sizeof cmd, "cp '%s' '%s'", weights, p);
		if (system(cmd))
			return 2;
		c = tiny_create();
		EXPECT(tiny_load_weights(c, p), TINY_OK);
		if (truncate(p, 100))
			return 2;
		CHECK(still_good(c));
		unlink(p);
		rmdir(dir);
		tiny_destroy(c);
		return 0;
	}
	case 27:
		c = loaded();
		{
			tiny_stats s;
			tiny_get_stats(c, &s);
			CHECK(s.weight_loads == 1);
		}
		tiny_destroy(c);
		return 0;
	case 28: /* knob: fractions, bounds */
		c = loaded();
		for (int k = 0; k < TINY_NKNOBS; k++) {
			double d = tiny_get_knob(c, k);
			printf("knob %d '%s' = %g\n", k, tiny_knob_name(k), d);
			CHECK(!isnan(d));
			EXPECT(tiny_set_knob(c, k, d), TINY_OK);
		}
		CHECK(still_good(c));
		tiny_destroy(c);
		return 0;
	case 29: /* a weights path longer than PATH_MAX */
		c = tiny_create();
		{
			char *p = malloc(70000);
			memset(p, 'a', 69999);
			p[69999] = 0;
			EXPECT(tiny_load_weights(c, p), TINY_ERR_IO);
			free(p);
		}
		tiny_destroy(c);
		return 0;
	case 30: /* prefill: pos negative with a valid length */
		c = loaded();
		EXPECT(tiny_prefill(c, toks, 3, -3, out), TINY_ERR_POS);
		EXPECT(tiny_prefill(c, toks, 3, INT32_MAX - 1, out), TINY_ERR_POS);
		tiny_destroy(c);
		return 0;
	case 31: /* load_weights_mem with a size larger than the blob's */
		{
			size_t n;
			unsigned char *b = slurp(weights, &n);
			unsigned char *a = aligned_alloc(64, n + 4096);
			memset(a, 0, n + 4096);
			memcpy(a, b, n);
			c = tiny_create();
			EXPECT(tiny_load_weights_mem(c, a, n + 64), TINY_ERR_BLOB_SIZE);
			EXPECT(tiny_load_weights_mem(c, a, SIZE_MAX), TINY_ERR_BLOB_SIZE);
			EXPECT(tiny_load_weights_mem(c, a, n - 1), TINY_ERR_BLOB_SIZE);
			EXPECT(tiny_load_weights_mem(c, a, n), TINY_OK);
			CHECK(still_good(c));
			tiny_destroy(c);
			free(a);
			free(b);
		}
		return 0;
	case 32: /* get_stats on a context that has run nothing */
		c = tiny_create();
		{
			tiny_stats s;
			memset(&s, 0xff, sizeof s);
			tiny_get_stats(c, &s);
			CHECK(s.calls == 0 && s.tokens == 0 && s.weight_loads == 0);
		}
		tiny_destroy(c);
		return 0;
	case 33: /* init over garbage memory: as good as create */
		{
			static _Alignas(64) unsigned char mem[TINY_CTX_SIZE];
			memset(mem, 0xa5, sizeof mem);
			c = tiny_init(mem, sizeof mem);
			CHECK(c != NULL);
			EXPECT(tiny_step(c, 1, 0, out), TINY_ERR_NO_WEIGHTS);
			EXPECT(tiny_load_weights(c, weights), TINY_OK);
			CHECK(still_good(c));
			tiny_destroy(c);
		}
		return 0;
	case 34: /* set_threads up and down, results equal */
		c = loaded();
		EXPECT(tiny_set_threads(c, 3), TINY_OK);
		CHECK(still_good(c));
		EXPECT(tiny_set_threads(c, 1), TINY_OK);
		CHECK(still_good(c));
		EXPECT(tiny_set_threads(c, 0), TINY_OK);
		CHECK(still_good(c));
		tiny_destroy(c);
		return 0;
	case 35: /* reset on a context without weights */
		c = tiny_create();
		EXPECT(tiny_reset(c), TINY_OK);
		tiny_destroy(c);
		return 0;
	case 36: /* a directory as weights through the _mem path's sibling: a symlink loop */
		if (!mkdtemp(dir))
			return 2;
		{
			char p[96];
			snprintf(p, sizeof p, "%s/loop", dir);
			if (symlink(p, p))
				return 2;
			c = tiny_create();
			EXPECT(tiny_load_weights(c, p), TINY_ERR_IO);
			tiny_destroy(c);
			unlink(p);
			rmdir(dir);
		}
		return 0;
	case 37: /* ELIDE_THREADS hostile values with set_threads(0) */
		c = loaded();
		{
			static const char *const v[] = { "-5", "99999999999999", "abc", "", "0", "1e9", "2x" };
			for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
				setenv("ELIDE_THREADS", v[i], 1);
				int s = tiny_set_threads(c, 0);
				printf("ELIDE_THREADS=%s -> %d\n", v[i], s);
				CHECK(s == TINY_OK || s == TINY_ERR_ARG);
			}
			unsetenv("ELIDE_THREADS");
			CHECK(still_good(c));
		}
		tiny_destroy(c);
		return 0;
	}
	return 2;
}

static int
cmd_case(int n)
{
	int32_t toks[TINY_CTX + 1] = { 1, 2, 3 };
	tiny_ctx *c;
	if (n < G_PRE_TOK) {
		c = loaded();
		EXPECT(tiny_step(c, bad_tokens[n - G_STEP_TOK], 0, out), TINY_ERR_TOKEN);
	} else if (n < G_STEP_POS) {
		c = loaded();
		toks[1] = bad_tokens[n - G_PRE_TOK];
		EXPECT(tiny_prefill(c, toks, 3, 0, out), TINY_ERR_TOKEN);
	} else if (n < G_PRE_POS) {
		c = loaded();
		EXPECT(tiny_step(c, 1, bad_pos[n - G_STEP_POS], out), TINY_ERR_POS);
	} else if (n < G_PRE_LEN) {
		c = loaded();
		EXPECT(tiny_prefill(c, toks, 3, bad_pos[n - G_PRE_POS], out), TINY_ERR_POS);
	} else if (n < G_KNOB) {
		c = loaded();
		EXPECT(tiny_prefill(c, toks, bad_len[n - G_PRE_LEN], 0, out), TINY_ERR_SEQ_LEN);
	} else if (n < G_FIXED) {
		c = loaded();
		if (TINY_NKNOBS == 0) {
			printf("no knobs\n");
		} else {
			for (int k = 0; k < TINY_NKNOBS; k++)
				EXPECT(tiny_set_knob(c, k, bad_knob_values[n - G_KNOB]), TINY_ERR_ARG);
		}
	} else {
		return fixed_case(n - G_FIXED);
	}
	CHECK(still_good(c));
	tiny_destroy(c);
	return 0;
}

int
main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc == 4 && !strcmp(argv[1], "blob"))
		return cmd_blob(argv[2], argv[3]);
	if (argc == 4 && !strcmp(argv[1], "baseline"))
		return cmd_baseline(argv[2], argv[3]);
	if (argc == 4 && !strcmp(argv[1], "case")) {
		weights = argv[3];
		return cmd_case(atoi(argv[2]));
	}
	if (argc == 2 && !strcmp(argv[1], "count")) {
		printf("%d\n", N_CASES);
		return 0;
	}
	fprintf(stderr, "usage: api blob FILE BASELINE | baseline FILE OUT | case N WEIGHTS | count\n");
	return 2;
}
