/* cg_driver.c - a product-style program built by test_cg_cli.c: compiled with cc
 * against the generated llama.h and linked with llama.o, it is what a user of
 * elide writes.  Usage:
 *   cg_driver decode|prefill WEIGHTS|- THREADS OUT.logits TOKENS...
 *     decode: step over the tokens at positions 0.., one row of logits each;
 *     prefill: one prefill over all tokens, the last row.  WEIGHTS '-' uses the
 *     embedded blob.  Each row is written as vocab floats.
 *   cg_driver hostile WEIGHTS OTHER_MODEL.weights
 *     checks every rejected input gets its status code; exit 0 when all did.
 *   cg_driver twoctx WEIGHTS
 *     two contexts (one malloc'ed, one in caller memory) agree over 32 steps.
 *   cg_driver truncate WEIGHTS
 *     loads a copy of WEIGHTS, truncates the copy on disk, and steps again: same logits.
 *   cg_driver threads WEIGHTS
 *     two threads call into one context at once: every call that succeeds has the
 *     single-threaded logits, the others get LLAMA_ERR_BUSY. */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "llama.h"
#include "runtime/elide_rt.h"

#define CHECK(cond)                                                                     \
	do {                                                                            \
		if (!(cond)) {                                                          \
			fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
			return 1;                                                       \
		}                                                                       \
	} while (0)

static int
run(int argc, char **argv)
{
	const char *mode = argv[1], *weights = argv[2], *outp = argv[4];
	int threads = atoi(argv[3]);
	int n = argc - 5;
	int32_t *toks = malloc((size_t)(n > 0 ? n : 1) * sizeof *toks);
	for (int i = 0; i < n; i++)
		toks[i] = atoi(argv[5 + i]);
	llama_ctx *ctx = llama_create();
	CHECK(ctx);
	CHECK(llama_abi_hash() == LLAMA_ABI_HASH);
	if (strcmp(weights, "-") != 0)
		CHECK(llama_load_weights(ctx, weights) == LLAMA_OK);
	CHECK(llama_set_threads(ctx, threads) == LLAMA_OK);
	FILE *out = fopen(outp, "wb");
	CHECK(out);
	float *logits = malloc(LLAMA_VOCAB * sizeof *logits);
	if (strcmp(mode, "decode") == 0) {
		for (int i = 0; i < n; i++) {
			CHECK(llama_step(ctx, toks[i], i, logits) == LLAMA_OK);
			CHECK(fwrite(logits, sizeof *logits, LLAMA_VOCAB, out) == LLAMA_VOCAB);
		}
		llama_stats st;
		llama_get_stats(ctx, &st);
		/* every token runs at least one layer and at most all of them (exits and
		 * skipping run fewer; test_cg_model checks a dense model runs all) */
		CHECK(st.calls == (uint64_t)n && st.tokens == (uint64_t)n && st.layers_run >= (uint64_t)n &&
		      st.layers_run <= (uint64_t)n * LLAMA_LAYERS);
	} else {
		CHECK(llama_prefill(ctx, toks, n, 0, logits) == LLAMA_OK);
		CHECK(fwrite(logits, sizeof *logits, LLAMA_VOCAB, out) == LLAMA_VOCAB);
	}
	CHECK(fclose(out) == 0);
	llama_destroy(ctx);
	free(logits);
	free(toks);
	return 0;
}

static unsigned char *
slurp(const char *path, size_t *n)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return NULL;
	fseek(f, 0, SEEK_END);
	*n = (size_t)ftell(f);
	fseek(f, 0, SEEK_SET);
	unsigned char *b = aligned_alloc(64, (*n + 64) & ~(size_t)63);
	if (fread(b, 1, *n, f) != *n) {
		fclose(f);
		free(b);
		return NULL;
	}
	fclose(f);
	return b;
}

static int
hostile(const char *weights, const char *other)
{
	float logits[LLAMA_VOCAB];
	int32_t toks[LLAMA_CTX + 1] = { 0 };
	llama_ctx *ctx = llama_create();
	CHECK(ctx);
	CHECK(llama_step(ctx, 1, 0, logits) == LLAMA_ERR_NO_WEIGHTS);
	size_t n, no;
	unsigned char *b = slurp(weights, &n), *ob = slurp(other, &no);
	CHECK(b && ob);
	CHECK(llama_load_weights(ctx, "/nonexistent/llama.weights") == LLAMA_ERR_IO);
	CHECK(llama_load_weights_mem(ctx, b, n - 1) == LLAMA_ERR_BLOB_SIZE); /* truncated */
	CHECK(llama_load_weights_mem(ctx, b, 16) == LLAMA_ERR_BLOB_SIZE);    /* header cut */
	b[n / 2] ^= 0x10;
	CHECK(llama_load_weights_mem(ctx, b, n) == LLAMA_ERR_BLOB_CHECKSUM);  /* flipped bit */
	b[n / 2] ^= 0x10;
	b[1] ^= 0xff;
	CHECK(llama_load_weights_mem(ctx, b, n) == LLAMA_ERR_BLOB_MAGIC); /* wrong magic */
	CHECK(llama_load_weights_mem(ctx, b + 64, n - 64) == LLAMA_ERR_BLOB_MAGIC); /* not a blob */
	b[1] ^= 0xff;
	CHECK(llama_load_weights_mem(ctx, ob, no) == LLAMA_ERR_BLOB_MODEL);   /* another model */
	CHECK(llama_load_weights(ctx, other) == LLAMA_ERR_BLOB_MODEL);
	/* another model's blob with this model's hash copied in: the checksum covers the
	 * header; with the checksum rewritten too, its size is not LLAMA_WEIGHTS_SIZE */
	uint64_t hash = LLAMA_MODEL_HASH;
	memcpy(ob + 16, &hash, 8);
	CHECK(llama_load_weights_mem(ctx, ob, no) != LLAMA_OK);
	elide_blob_header_init(ob, hash, ob + 64, no - 64);
	CHECK(llama_load_weights_mem(ctx, ob, no) == LLAMA_ERR_BLOB_SIZE);
	/* half the payload with its size and checksum rewritten */
	unsigned char *half = aligned_alloc(64, n);
	memcpy(half, b, n);
	size_t hn = 64 + ((n - 64) / 2 & ~(size_t)63);
	elide_blob_header_init(half, hash, half + 64, hn - 64);
	CHECK(llama_load_weights_mem(ctx, half, hn) == LLAMA_ERR_BLOB_SIZE);
	free(half);
	/* any reserved header byte set */
	for (int i = 40; i < 64; i++) {
		b[i] ^= 0x80;
		CHECK(llama_load_weights_mem(ctx, b, n) == LLAMA_ERR_BLOB_VERSION);
		b[i] ^= 0x80;
	}
	CHECK(n == LLAMA_WEIGHTS_SIZE);
	CHECK(llama_step(ctx, 1, 0, logits) == LLAMA_ERR_NO_WEIGHTS);
	CHECK(llama_load_weights_mem(ctx, b, n) == LLAMA_OK);
	CHECK(llama_step(ctx, LLAMA_VOCAB, 0, logits) == LLAMA_ERR_TOKEN);
	CHECK(llama_step(ctx, -3, 0, logits) == LLAMA_ERR_TOKEN);
	CHECK(llama_step(ctx, 1, LLAMA_CTX, logits) == LLAMA_ERR_POS);
	CHECK(llama_step(ctx, 1, -1, logits) == LLAMA_ERR_POS);
	CHECK(llama_step(NULL, 1, 0, logits) == LLAMA_ERR_ARG);
	CHECK(llama_step(ctx, 1, 0, NULL) == LLAMA_ERR_ARG);
	CHECK(llama_prefill(ctx, toks, LLAMA_CTX + 1, 0, logits) == LLAMA_ERR_SEQ_LEN);
	CHECK(llama_prefill(ctx, toks, 0, 0, logits) == LLAMA_ERR_SEQ_LEN);
	CHECK(llama_prefill(ctx, toks, 8, LLAMA_CTX - 4, logits) == LLAMA_ERR_POS);
	toks[5] = LLAMA_VOCAB;
	CHECK(llama_prefill(ctx, toks, 8, 0, logits) == LLAMA_ERR_TOKEN);
	CHECK(llama_step(ctx, 1, 0, logits) == LLAMA_OK);
	CHECK(llama_reset(ctx) == LLAMA_OK);
	CHECK(llama_reset(NULL) == LLAMA_ERR_ARG);
	CHECK(llama_set_threads(ctx, -1) == LLAMA_ERR_ARG);
	CHECK(llama_init(NULL, LLAMA_CTX_SIZE) == NULL);
	static _Alignas(64) unsigned char small[128];
	CHECK(llama_init(small, sizeof small) == NULL);
	llama_destroy(ctx);
	llama_destroy(NULL);
	free(b);
	free(ob);
	return 0;
}

static int
twoctx(const char *weights)
{
	float la[LLAMA_VOCAB], lb[LLAMA_VOCAB];
	llama_ctx *a = llama_create();
	void *mem = aligned_alloc(LLAMA_CTX_ALIGN, (LLAMA_CTX_SIZE + 63) & ~(size_t)63);
	llama_ctx *b = llama_init(mem, LLAMA_CTX_SIZE);
	CHECK(a && b);
	CHECK(llama_load_weights(a, weights) == LLAMA_OK);
	CHECK(llama_load_weights(b, weights) == LLAMA_OK);
	CHECK(llama_set_threads(b, 2) == LLAMA_OK);
	for (int pos = 0; pos < 32; pos++) {
		CHECK(llama_step(a, (pos * 7 + 3) % LLAMA_VOCAB, pos, la) == LLAMA_OK);
		CHECK(llama_step(b, (pos * 7 + 3) % LLAMA_VOCAB, pos, lb) == LLAMA_OK);
		CHECK(memcmp(la, lb, sizeof la) == 0);
	}
	llama_destroy(a);
	llama_destroy(b);
	free(mem);
	return 0;
}

/* Copies the file src to dst; 0 on success. */
static int
copy_file(const char *src, const char *dst)
{
	size_t n;
	unsigned char *b = slurp(src, &n);
	FILE *f = b ? fopen(dst, "wb") : NULL;
	int ok = f && fwrite(b, 1, n, f) == n;
	if (f)
		ok &= fclose(f) == 0;
	free(b);
	return ok ? 0 : -1;
}

static int
truncated(const char *weights)
{
	char path[4096];
	float a[LLAMA_VOCAB], b[LLAMA_VOCAB];
	snprintf(path, sizeof path, "%s.copy", weights);
	CHECK(copy_file(weights, path) == 0);
	llama_ctx *ctx = llama_create();
	CHECK(ctx && llama_load_weights(ctx, path) == LLAMA_OK);
	CHECK(llama_step(ctx, 5, 0, a) == LLAMA_OK);
	FILE *f = fopen(path, "r+b");
	CHECK(f && ftruncate(fileno(f), 64) == 0 && fclose(f) == 0);
	CHECK(llama_reset(ctx) == LLAMA_OK);
	CHECK(llama_step(ctx, 5, 0, b) == LLAMA_OK); /* a mapping would fault here (SIGBUS) */
	CHECK(memcmp(a, b, sizeof a) == 0);
	CHECK(remove(path) == 0);
	llama_destroy(ctx);
	return 0;
}

typedef struct Shared {
	llama_ctx *ctx;
	const float *want;
	int calls, busy, wrong, other;
} Shared;

static void *
hammer(void *arg)
{
	Shared *sh = arg;
	float out[LLAMA_VOCAB];
	for (int i = 0; i < sh->calls; i++) {
		int s = llama_step(sh->ctx, 7, 0, out);
		if (s == LLAMA_ERR_BUSY)
			__atomic_fetch_add(&sh->busy, 1, __ATOMIC_RELAXED);
		else if (s != LLAMA_OK)
			__atomic_fetch_add(&sh->other, 1, __ATOMIC_RELAXED);
		else if (memcmp(out, sh->want, sizeof out) != 0)
			__atomic_fetch_add(&sh->wrong, 1, __ATOMIC_RELAXED);
	}
	return NULL;
}

static int
threads(const char *weights)
{
	float want[LLAMA_VOCAB];
	llama_ctx *ctx = llama_create();
	CHECK(ctx && llama_load_weights(ctx, weights) == LLAMA_OK);
	CHECK(llama_step(ctx, 7, 0, want) == LLAMA_OK);
	Shared sh = { .ctx = ctx, .want = want, .calls = 3000 };
	pthread_t t[2];
	for (int i = 0; i < 2; i++)
		CHECK(pthread_create(&t[i], NULL, hammer, &sh) == 0);
	for (int i = 0; i < 2; i++)
		pthread_join(t[i], NULL);
	fprintf(stderr, "threads: %d calls, %d busy, %d wrong, %d other\n", 2 * sh.calls, sh.busy, sh.wrong, sh.other);
	CHECK(sh.wrong == 0 && sh.other == 0);
	float again[LLAMA_VOCAB];
	CHECK(llama_step(ctx, 7, 0, again) == LLAMA_OK); /* the flag was given back */
	CHECK(memcmp(again, want, sizeof want) == 0);
	llama_destroy(ctx);
	return 0;
}

int
main(int argc, char **argv)
{
	if (argc >= 3 && strcmp(argv[1], "truncate") == 0)
		return truncated(argv[2]);
	if (argc >= 3 && strcmp(argv[1], "threads") == 0)
		return threads(argv[2]);
	if (argc >= 4 && strcmp(argv[1], "hostile") == 0)
		return hostile(argv[2], argv[3]);
	if (argc >= 3 && strcmp(argv[1], "twoctx") == 0)
		return twoctx(argv[2]);
	if (argc >= 6)
		return run(argc, argv);
	fprintf(stderr, "usage: cg_driver decode|prefill WEIGHTS THREADS OUT TOKENS... | hostile W OTHER | twoctx W\n");
	return 2;
}
