/* main.c - the driver of the byte-level example models (charlm, charlm8): links the
 * object and header that `elide compile` generates from the model's .elide file (any
 * policy) and generates bytes, or measures bits per byte on a text file.
 *   charlm [-w WEIGHTS] [--prompt TEXT] [-n N] [--temperature T] [--seed S]
 *          [--threads N] [--eval FILE [--ctx N]] [--knob NAME=VALUE]...
 * Generation prints the text as it is produced, then the speed.  --eval scores a
 * file the way train.py does: consecutive chunks of N bytes (--ctx, default the
 * model's context), each from an empty context, byte i+1 of a chunk predicted from
 * bytes 0..i; it prints the bits per byte, the tokens per second, a 64-bit FNV-1a
 * hash of every scored position's logits (equal hashes: bit-identical logits) and
 * the statistics.
 * The model is charlm unless MODEL (its name, lower case), MODEL_UPPER (upper case)
 * and MODEL_HEADER (its header, a string) are defined, as examples/CMakeLists.txt
 * does for charlm8; CHARLM_DEFAULT_WEIGHTS names the default weight blob. */
#define _POSIX_C_SOURCE 200809L /* clock_gettime */
#ifndef MODEL
#define MODEL charlm
#define MODEL_UPPER CHARLM
#define MODEL_HEADER "charlm.h"
#endif
#include MODEL_HEADER
#include "runtime/elide_rt.h" /* samplers */

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define M_CAT_(a, b) a##b
#define M_CAT(a, b) M_CAT_(a, b)
#define M_STR_(a) #a
#define M_STR(a) M_STR_(a)
#define MODEL_NAME M_STR(MODEL)
/* the generated API under neutral names: charlm_step -> model_step, ... */
#define model_ctx M_CAT(MODEL, _ctx)
#define model_create M_CAT(MODEL, _create)
#define model_destroy M_CAT(MODEL, _destroy)
#define model_load_weights M_CAT(MODEL, _load_weights)
#define model_set_threads M_CAT(MODEL, _set_threads)
#define model_reset M_CAT(MODEL, _reset)
#define model_step M_CAT(MODEL, _step)
#define model_prefill M_CAT(MODEL, _prefill)
#define model_stats M_CAT(MODEL, _stats)
#define model_get_stats M_CAT(MODEL, _get_stats)
#define model_stat M_CAT(MODEL, _stat)
#define model_stat_name M_CAT(MODEL, _stat_name)
#define model_set_knob M_CAT(MODEL, _set_knob)
#define model_knob_name M_CAT(MODEL, _knob_name)
#define MODEL_OK M_CAT(MODEL_UPPER, _OK)
#define MODEL_VOCAB M_CAT(MODEL_UPPER, _VOCAB)
#define MODEL_CTX M_CAT(MODEL_UPPER, _CTX)
#define MODEL_LAYERS M_CAT(MODEL_UPPER, _LAYERS)
#define MODEL_NKNOBS M_CAT(MODEL_UPPER, _NKNOBS)
#define MODEL_NSTATS M_CAT(MODEL_UPPER, _NSTATS)

#ifndef CHARLM_DEFAULT_WEIGHTS
#define CHARLM_DEFAULT_WEIGHTS MODEL_NAME ".weights"
#endif

typedef struct Opts {
	const char *weights;      /* the blob `elide compile` wrote */
	const char *prompt;       /* generation starts from these bytes */
	const char *eval;         /* file to score, or NULL to generate */
	int n;                    /* bytes to generate */
	float temperature;        /* 0: greedy */
	uint64_t seed;            /* sampler seed */
	int threads;              /* kernel threads */
	int ctx;                  /* --eval: bytes per chunk, 2..MODEL_CTX */
	const char *knobs[16];    /* --knob NAME=VALUE settings, in order */
	int nknobs;
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
	fprintf(f, "usage: %s [-w WEIGHTS] [--prompt TEXT] [-n N] [--temperature T] [--seed S]\n"
	           "       [--threads N] [--eval FILE [--ctx N]] [--knob NAME=VALUE]...\n", MODEL_NAME);
}

static int
check(int st, const char *what)
{
	if (st != MODEL_OK) {
		fprintf(stderr, MODEL_NAME ": error: %s failed with status %d\n", what, st);
		exit(1);
	}
	return st;
}

/* -log2 p(next) under the logits */
static double
nll_bits(const float *lo, int next)
{
	float mx = lo[0];
	for (int i = 1; i < MODEL_VOCAB; i++)
		mx = lo[i] > mx ? lo[i] : mx;
	double s = 0;
	for (int i = 0; i < MODEL_VOCAB; i++)
		s += exp((double)lo[i] - mx);
	return (log(s) - ((double)lo[next] - mx)) / log(2.0);
}

/* The statistics of several context resets, summed. */
typedef struct Tally {
	uint64_t tokens, layers;
	int64_t slots[MODEL_NSTATS + 1];
} Tally;

static void
tally(const model_ctx *c, Tally *t)
{
	model_stats st;
	model_get_stats(c, &st);
	t->tokens += st.tokens;
	t->layers += st.layers_run;
	for (int k = 0; k < MODEL_NSTATS; k++)
		t->slots[k] += model_stat(c, k);
}

/* Applies NAME=VALUE to the knob of that name; false with a message otherwise. */
static bool
set_knob(model_ctx *c, const char *setting)
{
	const char *eq = strchr(setting, '=');
	for (int k = 0; eq && k < MODEL_NKNOBS; k++)
		if (strlen(model_knob_name(k)) == (size_t)(eq - setting) && !strncmp(model_knob_name(k), setting, eq - setting)) {
			if (model_set_knob(c, k, atof(eq + 1)) == MODEL_OK)
				return true;
			fprintf(stderr, MODEL_NAME ": error: knob value out of range in '%s'\n", setting);
			return false;
		}
	fprintf(stderr, MODEL_NAME ": error: no knob for '%s' (expected NAME=VALUE with a knob of the model)\n", setting);
	return false;
}

static int
run_eval(model_ctx *c, const char *path, size_t ctx)
{
	FILE *f = fopen(path, "rb");
	if (!f) {
		fprintf(stderr, MODEL_NAME ": error: cannot open '%s'\n", path);
		return 1;
	}
	static unsigned char buf[1 << 20];
	size_t n = fread(buf, 1, sizeof buf, f);
	int more = fgetc(f) != EOF;
	fclose(f);
	if (more) {
		fprintf(stderr, MODEL_NAME ": error: '%s' is larger than %zu bytes\n", path, sizeof buf);
		return 1;
	}
	float lo[MODEL_VOCAB];
	double bits = 0;
	size_t scored = 0;
	uint64_t hash = 0xcbf29ce484222325u; /* FNV-1a 64 over the logits' bytes */
	double t0 = now_s();
	Tally t = { 0 };
	for (size_t s = 0; s < n; s += ctx) {
		size_t len = n - s < ctx ? n - s : ctx;
		if (len < 2)
			continue;
		tally(c, &t); /* a reset clears the context's statistics */
		check(model_reset(c), "reset");
		for (size_t i = 0; i + 1 < len; i++) {
			check(model_step(c, buf[s + i], (int32_t)i, lo), "step");
			bits += nll_bits(lo, buf[s + i + 1]);
			scored++;
			const unsigned char *b = (const unsigned char *)lo;
			for (size_t k = 0; k < sizeof lo; k++)
				hash = (hash ^ b[k]) * 0x100000001b3u;
		}
	}
	double dt = now_s() - t0;
	if (!scored) {
		fprintf(stderr, MODEL_NAME ": error: '%s' is too short to score\n", path);
		return 1;
	}
	tally(c, &t);
	printf("bits-per-byte %.4f (%zu bytes scored in chunks of %zu, %.1f tokens/s)\n",
	       bits / (double)scored, scored, ctx, (double)scored / dt);
	printf("logits-fnv1a %016llx\n", (unsigned long long)hash);
	printf("layers-per-token %.4f of %d\n", t.tokens ? (double)t.layers / (double)t.tokens : 0.0, MODEL_LAYERS);
	for (int k = 0; k < MODEL_NSTATS; k++)
		printf("stat %s %lld\n", model_stat_name(k), (long long)t.slots[k]);
	return 0;
}

/* Feeds the last `keep` bytes of text[0..len) from position 0; returns the logits
 * of the last one in lo. */
static void
refill(model_ctx *c, const unsigned char *text, size_t len, size_t keep, float *lo)
{
	int32_t toks[MODEL_CTX];
	size_t from = len - keep;
	for (size_t i = 0; i < keep; i++)
		toks[i] = text[from + i];
	check(model_reset(c), "reset");
	check(model_prefill(c, toks, (int32_t)keep, 0, lo), "prefill");
}

static int
run_generate(model_ctx *c, const Opts *o)
{
	size_t plen = strlen(o->prompt);
	if (plen == 0) {
		fprintf(stderr, MODEL_NAME ": error: the prompt is empty\n");
		return 1;
	}
	size_t cap = plen + (size_t)o->n + 1;
	unsigned char *text = malloc(cap);
	if (!text)
		return 1;
	memcpy(text, o->prompt, plen);
	size_t len = plen;
	float lo[MODEL_VOCAB];
	uint64_t rng = o->seed;
	fwrite(text, 1, len, stdout);
	fflush(stdout);
	double t0 = now_s();
	size_t keep = len < MODEL_CTX ? len : MODEL_CTX / 2;
	refill(c, text, len, keep, lo);
	size_t pos = keep;
	double tp = now_s() - t0;
	for (int k = 0; k < o->n; k++) {
		int next = o->temperature > 0 ? elide_sample_temperature(lo, MODEL_VOCAB, o->temperature, &rng)
		                              : elide_sample_argmax(lo, MODEL_VOCAB);
		text[len++] = (unsigned char)next;
		fputc(next, stdout);
		fflush(stdout);
		if (k + 1 == o->n)
			break;
		if (pos == MODEL_CTX) {   /* context full: keep the latest half */
			refill(c, text, len, MODEL_CTX / 2, lo);
			pos = MODEL_CTX / 2;
		} else {
			check(model_step(c, next, (int32_t)pos, lo), "step");
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
	Opts o = { CHARLM_DEFAULT_WEIGHTS, "The meaning of life is", NULL, 200, 0.8f, 42, 1, MODEL_CTX, { NULL }, 0 };
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
			usage(stdout);
			return 0;
		}
		if (!v) {
			fprintf(stderr, MODEL_NAME ": error: '%s' needs a value (or is unknown)\n", a);
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
		else if (!strcmp(a, "--ctx"))
			o.ctx = atoi(v);
		else if (!strcmp(a, "--knob") && o.nknobs < 16)
			o.knobs[o.nknobs++] = v;
		else {
			fprintf(stderr, MODEL_NAME ": error: unknown option '%s'\n", a);
			usage(stderr);
			return 2;
		}
		i++;
	}
	if (o.ctx < 2 || o.ctx > MODEL_CTX) {
		fprintf(stderr, MODEL_NAME ": error: --ctx must be in [2, %d]\n", MODEL_CTX);
		return 2;
	}
	if (o.n < 0 || o.temperature < 0) {
		fprintf(stderr, MODEL_NAME ": error: -n and --temperature must not be negative\n");
		return 2;
	}
	model_ctx *c = model_create();
	if (!c) {
		fprintf(stderr, MODEL_NAME ": error: out of memory\n");
		return 1;
	}
	int st = model_load_weights(c, o.weights);
	if (st != MODEL_OK) {
		fprintf(stderr, MODEL_NAME ": error: cannot load '%s' (status %d)\n", o.weights, st);
		model_destroy(c);
		return 1;
	}
	check(model_set_threads(c, o.threads), "set_threads");
	for (int k = 0; k < o.nknobs; k++)
		if (!set_knob(c, o.knobs[k])) {
			model_destroy(c);
			return 2;
		}
	int rc = o.eval ? run_eval(c, o.eval, (size_t)o.ctx) : run_generate(c, &o);
	model_destroy(c);
	return rc;
}
