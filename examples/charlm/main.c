/* main.c - the charlm driver: links the object and header that `elide compile`
 * generates from charlm.elide (any policy) and generates bytes, or measures
 * bits per byte on a text file.
 *   charlm [-w charlm.weights] [--prompt TEXT] [-n N] [--temperature T] [--seed S]
 *          [--threads N] [--eval FILE]
 * Generation prints the text as it is produced, then the speed.  --eval scores a
 * file the way train.py does: consecutive chunks of CHARLM_CTX bytes, each from an
 * empty context, byte i+1 of a chunk predicted from bytes 0..i. */
#define _POSIX_C_SOURCE 200809L /* clock_gettime */
#include "charlm.h"
#include "runtime/elide_rt.h" /* samplers */

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifndef CHARLM_DEFAULT_WEIGHTS
#define CHARLM_DEFAULT_WEIGHTS "charlm.weights"
#endif

typedef struct Opts {
	const char *weights;      /* the blob `elide compile` wrote */
	const char *prompt;       /* generation starts from these bytes */
	const char *eval;         /* file to score, or NULL to generate */
	int n;                    /* bytes to generate */
	float temperature;        /* 0: greedy */
	uint64_t seed;            /* sampler seed */
	int threads;              /* kernel threads */
} Opts;

static double
now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void
usage(FILE *f)
{
	fprintf(f, "usage: charlm [-w WEIGHTS] [--prompt TEXT] [-n N] [--temperature T] [--seed S]\n"
	           "              [--threads N] [--eval FILE]\n");
}

static int
check(int st, const char *what)
{
	if (st != CHARLM_OK) {
		fprintf(stderr, "charlm: error: %s failed with status %d\n", what, st);
		exit(1);
	}
	return st;
}

/* -log2 p(next) under the logits */
static double
nll_bits(const float *lo, int next)
{
	float mx = lo[0];
	for (int i = 1; i < CHARLM_VOCAB; i++)
		mx = lo[i] > mx ? lo[i] : mx;
	double s = 0;
	for (int i = 0; i < CHARLM_VOCAB; i++)
		s += exp((double)lo[i] - mx);
	return (log(s) - ((double)lo[next] - mx)) / log(2.0);
}

static int
run_eval(charlm_ctx *c, const char *path)
{
	FILE *f = fopen(path, "rb");
	if (!f) {
		fprintf(stderr, "charlm: error: cannot open '%s'\n", path);
		return 1;
	}
	static unsigned char buf[1 << 20];
	size_t n = fread(buf, 1, sizeof buf, f);
	int more = fgetc(f) != EOF;
	fclose(f);
	if (more) {
		fprintf(stderr, "charlm: error: '%s' is larger than %zu bytes\n", path, sizeof buf);
		return 1;
	}
	float lo[CHARLM_VOCAB];
	double bits = 0;
	size_t scored = 0;
	double t0 = now_s();
	for (size_t s = 0; s < n; s += CHARLM_CTX) {
		size_t len = n - s < CHARLM_CTX ? n - s : CHARLM_CTX;
		if (len < 2)
			continue;
		check(charlm_reset(c), "reset");
		for (size_t i = 0; i + 1 < len; i++) {
			check(charlm_step(c, buf[s + i], (int32_t)i, lo), "step");
			bits += nll_bits(lo, buf[s + i + 1]);
			scored++;
		}
	}
	double dt = now_s() - t0;
	if (!scored) {
		fprintf(stderr, "charlm: error: '%s' is too short to score\n", path);
		return 1;
	}
	printf("bits-per-byte %.4f (%zu bytes scored, %.1f tokens/s)\n", bits / (double)scored, scored,
	       (double)scored / dt);
	return 0;
}

/* Feeds the last `keep` bytes of text[0..len) from position 0; returns the logits
 * of the last one in lo. */
static void
refill(charlm_ctx *c, const unsigned char *text, size_t len, size_t keep, float *lo)
{
	int32_t toks[CHARLM_CTX];
	size_t from = len - keep;
	for (size_t i = 0; i < keep; i++)
		toks[i] = text[from + i];
	check(charlm_reset(c), "reset");
	check(charlm_prefill(c, toks, (int32_t)keep, 0, lo), "prefill");
}

static int
run_generate(charlm_ctx *c, const Opts *o)
{
	size_t plen = strlen(o->prompt);
	if (plen == 0) {
		fprintf(stderr, "charlm: error: the prompt is empty\n");
		return 1;
	}
	size_t cap = plen + (size_t)o->n + 1;
	unsigned char *text = malloc(cap);
	if (!text)
		return 1;
	memcpy(text, o->prompt, plen);
	size_t len = plen;
	float lo[CHARLM_VOCAB];
	uint64_t rng = o->seed;
	fwrite(text, 1, len, stdout);
	fflush(stdout);
	double t0 = now_s();
	size_t keep = len < CHARLM_CTX ? len : CHARLM_CTX / 2;
	refill(c, text, len, keep, lo);
	size_t pos = keep;
	double tp = now_s() - t0;
	for (int k = 0; k < o->n; k++) {
		int next = o->temperature > 0 ? elide_sample_temperature(lo, CHARLM_VOCAB, o->temperature, &rng)
		                              : elide_sample_argmax(lo, CHARLM_VOCAB);
		text[len++] = (unsigned char)next;
		fputc(next, stdout);
		fflush(stdout);
		if (k + 1 == o->n)
			break;
		if (pos == CHARLM_CTX) {   /* context full: keep the latest half */
			refill(c, text, len, CHARLM_CTX / 2, lo);
			pos = CHARLM_CTX / 2;
		} else {
			check(charlm_step(c, next, (int32_t)pos, lo), "step");
			pos++;
		}
	}
	double dt = now_s() - t0 - tp;
	printf("\n[%d tokens in %.3f s: %.1f tokens/s; prompt of %zu bytes in %.3f s]\n", o->n, dt,
	       dt > 0 ? o->n / dt : 0.0, keep, tp);
	free(text);
	return 0;
}

int
main(int argc, char **argv)
{
	Opts o = { CHARLM_DEFAULT_WEIGHTS, "The meaning of life is", NULL, 200, 0.8f, 42, 1 };
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
			usage(stdout);
			return 0;
		}
		if (!v) {
			fprintf(stderr, "charlm: error: '%s' needs a value (or is unknown)\n", a);
			usage(stderr);
			return 2;
		}
		if (!strcmp(a, "-w") || !strcmp(a, "--weights"))
			o.weights = v;
		else if (!strcmp(a, "--prompt"))
			o.prompt = v;
		else if (!strcmp(a, "-n"))
			o.n = atoi(v);
		else if (!strcmp(a, "--temperature"))
			o.temperature = (float)atof(v);
		else if (!strcmp(a, "--seed"))
			o.seed = strtoull(v, NULL, 10);
		else if (!strcmp(a, "--threads"))
			o.threads = atoi(v);
		else if (!strcmp(a, "--eval"))
			o.eval = v;
		else {
			fprintf(stderr, "charlm: error: unknown option '%s'\n", a);
			usage(stderr);
			return 2;
		}
		i++;
	}
	if (o.n < 0 || o.temperature < 0) {
		fprintf(stderr, "charlm: error: -n and --temperature must not be negative\n");
		return 2;
	}
	charlm_ctx *c = charlm_create();
	if (!c) {
		fprintf(stderr, "charlm: error: out of memory\n");
		return 1;
	}
	int st = charlm_load_weights(c, o.weights);
	if (st != CHARLM_OK) {
		fprintf(stderr, "charlm: error: cannot load '%s' (status %d)\n", o.weights, st);
		charlm_destroy(c);
		return 1;
	}
	check(charlm_set_threads(c, o.threads), "set_threads");
	int rc = o.eval ? run_eval(c, o.eval) : run_generate(c, &o);
	charlm_destroy(c);
	return rc;
}
