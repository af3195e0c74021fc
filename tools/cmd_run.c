/* cmd_run.c - `elide run`: load a model and its weights, feed a token sequence, print
 * the argmax of the logits at every position (and optionally dump the raw logits),
 * then the statistics of the run (layers run per token, the model's stat slots).
 *   elide run [--interp] MODEL.elide|MODEL.eir -w W.safetensors --tokens 1,17,42
 *             [--policy P] [--no-pass=LIST] [--entry NAME | --prefill] [-n N [--temperature T]
 *             [--top-p P] [--seed S]] [--knob NAME=VALUE]... [--dump-logits FILE]
 * Decode (default) feeds the tokens one at a time through `step` at positions 0, 1,
 * 2, ...; an entry over a token sequence (--prefill, or an encoder's `forward`, the
 * default when there is no `step`) runs once over the whole sequence and prints the
 * last position.  -n N then generates N tokens: each step feeds, at the next
 * position, the token chosen from the previous logits (the argmax, or a draw of the
 * runtime's temperature / top-p sampler).  The backend that executes the entries is
 * a RunBackend: the reference interpreter (--interp) or the JIT.  Both run the module after ir_verify, the
 * weights and the default pass pipeline (which applies the policy's passes), with
 * the same knob settings, and print the statistics in the same format. */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codegen/codegen.h"
#include "frontend/frontend.h"
#include "ir/ir.h"
#include "passes/passes.h"
#include "runtime/elide_rt.h"
#include "tools/driver.h"

/* How entries are executed: open on a loaded module, run an entry, close. */
typedef struct RunBackend {
	const char *name;
	void *(*open)(Module *m, char *err, size_t nerr);
	bool (*run)(void *ctx, const char *entry, const int32_t *tokens, int64_t ntokens, int32_t pos,
	            float *out, char *err, size_t nerr);
	void (*close)(void *ctx);
	/* knob: Module.knobs index, the value already checked against its range */
	bool (*set_knob)(void *ctx, uint32_t knob, double v, char *err, size_t nerr);
	/* calls, tokens, layers run (out3) and the stat slots (slots[Module.nstats]) */
	void (*stats)(void *ctx, int64_t *out3, int64_t *slots);
} RunBackend;

/* ---- the interpreter backend ---- */

typedef struct InterpRun {
	InterpState *s;
	const Module *m;
} InterpRun;

static void *
interp_open(Module *m, char *err, size_t nerr)
{
	(void)err;
	(void)nerr;
	InterpRun *r = xcalloc(1, sizeof *r);
	r->s = interp_new(m);
	r->m = m;
	return r;
}

static bool
interp_call(void *ctx, const char *entry, const int32_t *tokens, int64_t ntokens, int32_t pos, float *out,
            char *err, size_t nerr)
{
	return interp_run(((InterpRun *)ctx)->s, entry, tokens, ntokens, pos, out, err, nerr);
}

static void
interp_close(void *ctx)
{
	interp_free(((InterpRun *)ctx)->s);
	free(ctx);
}

static bool
interp_knob(void *ctx, uint32_t knob, double v, char *err, size_t nerr)
{
	InterpRun *r = ctx;
	if (knob >= r->m->nknobs || !interp_set_knob(r->s, r->m->knobs[knob].name, v)) {
		snprintf(err, nerr, "no knob %u", knob);
		return false;
	}
	return true;
}

static void
interp_get_stats(void *ctx, int64_t *out3, int64_t *slots)
{
	InterpRun *r = ctx;
	const InterpStats *st = interp_stats(r->s);
	out3[0] = st->calls;
	out3[1] = st->tokens;
	out3[2] = st->layers;
	for (uint32_t k = 0; k < r->m->nstats; k++)
		slots[k] = st->slots[k];
}

static const RunBackend interp_backend = { "interp", interp_open, interp_call, interp_close, interp_knob,
	                                   interp_get_stats };

/* The JIT backend: codegen/run_jit.c (ORC LLJIT of the compiled module). */
static const RunBackend jit_backend = { "jit", cg_run_open, cg_run_call, cg_run_close, cg_run_set_knob,
	                                cg_run_stats };

/* ---- options ---- */

typedef struct RunOpts {
	const char *model;
	const char *weights[64]; /* -w, repeatable: files whose tensors together form the weights */
	uint32_t nweights;
	const char *policy;
	const char *dump;
	int32_t *tokens;
	int64_t ntokens;
	int64_t ngen;      /* -n: tokens to generate after the prompt */
	float temperature; /* of the generated tokens; 0: greedy */
	float top_p;       /* nucleus of the sampler; 1: all tokens */
	uint64_t seed;     /* of the sampler's RNG */
	int64_t vocab; /* logits per row, from the entry's result */
	const char *entry; /* --entry, --prefill, or chosen by choose_entry */
	char **knobs;      /* --knob NAME=VALUE, in order (checked against the model later) */
	int nknobs;
	bool sequence;     /* the entry takes the whole token sequence at once */
	bool interp;
	PassOptions passes; /* --no-pass */
} RunOpts;

static void
usage(FILE *out)
{
	fprintf(out, "USAGE: elide run [--interp] MODEL.elide -w WEIGHTS.safetensors --tokens 1,17,42 [options]\n\n"
	             "OPTIONS:\n"
	             "  --interp             run with the reference interpreter\n"
	             "  -w, --weights FILE   the model's weights: safetensors, GGUF, a shard index or a\n"
	             "                       model directory; repeat -w for several files\n"
	             "  --tokens LIST        comma-separated token ids\n"
	             "  --policy NAME        the policy to apply (default: dense)\n"
	             "  --no-pass=LIST       leave these passes out of the default pipeline (comma\n"
	             "                       list; e.g. row-sink)\n"
	             "  --entry NAME         the entry to run (default: step, else forward); an entry\n"
	             "                       over a token sequence runs once over all tokens\n"
	             "  --prefill            the same as --entry prefill\n"
	             "  -n N                 then generate N tokens with the step entry\n"
	             "  --temperature T      sample the generated tokens at temperature T (default 0: greedy)\n"
	             "  --top-p P            sample from the smallest set of tokens of mass P (default 1);\n"
	             "                       needs --temperature\n"
	             "  --seed S             seed of the sampler (default 0)\n"
	             "  --knob NAME=VALUE    set a run-time knob of the model (repeatable)\n"
	             "  --dump-logits FILE   write the logits of every printed position as raw float32\n"
	             "\nAfter the run it prints the statistics: calls, tokens, layers run per token, and\n"
	             "each stat slot of the model (exits per site, K/V-only layers, ...).\n");
}

/* Parses "1,17,42"; false on anything else. */
static bool
parse_tokens(const char *s, RunOpts *o)
{
	size_t cap = 1;
	for (const char *p = s; *p; p++)
		cap += *p == ',';
	o->tokens = xcalloc(cap, sizeof *o->tokens);
	o->ntokens = 0;
	const char *p = s;
	for (;;) {
		char *end;
		errno = 0;
		long v = strtol(p, &end, 10);
		if (end == p || errno || v < INT32_MIN || v > INT32_MAX)
			return false;
		o->tokens[o->ntokens++] = (int32_t)v;
		if (*end == 0)
			return true;
		if (*end != ',')
			return false;
		p = end + 1;
	}
}

/* Parses a number in [lo, hi]; false on anything else. */
static bool
parse_float(const char *s, double lo, double hi, float *out)
{
	char *end;
	errno = 0;
	double v = strtod(s, &end);
	if (end == s || *end || errno || !(v >= lo && v <= hi))
		return false;
	*out = (float)v;
	return true;
}

/* Returns 0 on success, else the exit code. */
static int
parse_args(int argc, char **argv, RunOpts *o)
{
	bool top_p_given = false;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		const char *val = NULL;
#define TAKES(opt) ((strcmp(a, opt) == 0 && i + 1 < argc && (val = argv[++i])) || \
		    (strncmp(a, opt "=", strlen(opt) + 1) == 0 && (val = a + strlen(opt) + 1)))
		if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
			usage(stdout);
			return -1;
		} else if (strcmp(a, "--interp") == 0) {
			o->interp = true;
		} else if (strcmp(a, "--prefill") == 0) {
			o->entry = "prefill";
		} else if (TAKES("--entry")) {
			o->entry = val;
		} else if (TAKES("-w") || TAKES("--weights")) {
			if (o->nweights == sizeof o->weights / sizeof o->weights[0]) {
				fprintf(stderr, "elide: error: more than %zu weight files\n", sizeof o->weights / sizeof o->weights[0]);
				return 2;
			}
			o->weights[o->nweights++] = val;
		} else if (TAKES("--policy")) {
			o->policy = val;
		} else if (TAKES("--no-pass")) {
			o->passes.skip = val;
		} else if (TAKES("-n")) {
			char *end;
			errno = 0;
			o->ngen = strtoll(val, &end, 10);
			if (end == val || *end || errno || o->ngen < 0 || o->ngen > INT32_MAX) {
				fprintf(stderr, "elide: error: invalid count '%s' for -n (expected 0 or more)\n", val);
				return 2;
			}
		} else if (TAKES("--temperature")) {
			if (!parse_float(val, 0, 1e6, &o->temperature)) {
				fprintf(stderr, "elide: error: invalid temperature '%s' (expected a number >= 0)\n", val);
				return 2;
			}
		} else if (TAKES("--top-p")) {
			top_p_given = true;
			if (!parse_float(val, 1e-9, 1, &o->top_p)) {
				fprintf(stderr, "elide: error: invalid top-p '%s' (expected a number in (0, 1])\n", val);
				return 2;
			}
		} else if (TAKES("--seed")) {
			char *end;
			errno = 0;
			o->seed = strtoull(val, &end, 10);
			if (end == val || *end || errno || val[0] == '-') {
				fprintf(stderr, "elide: error: invalid seed '%s' (expected a non-negative integer)\n", val);
				return 2;
			}
		} else if (TAKES("--knob")) {
			if (!strchr(val, '=') || val[0] == '=') {
				fprintf(stderr, "elide: error: invalid knob setting '%s' (expected NAME=VALUE)\n", val);
				return 2;
			}
			o->knobs = xrealloc(o->knobs, (size_t)(o->nknobs + 1) * sizeof *o->knobs);
			o->knobs[o->nknobs++] = (char *)val;
		} else if (TAKES("--dump-logits")) {
			o->dump = val;
		} else if (TAKES("--tokens")) {
			if (!parse_tokens(val, o)) {
				fprintf(stderr, "elide: error: invalid token list '%s' (expected e.g. 1,17,42)\n", val);
				return 2;
			}
		} else if (a[0] == '-' && a[1]) {
			fprintf(stderr, "elide: error: unknown or incomplete option '%s' (see 'elide run --help')\n", a);
			return 2;
		} else if (!o->model) {
			o->model = a;
		} else {
			fprintf(stderr, "elide: error: more than one model given ('%s' and '%s')\n", o->model, a);
			return 2;
		}
#undef TAKES
	}
	if (top_p_given && !(o->temperature > 0)) {
		fprintf(stderr, "elide: error: --top-p needs --temperature T > 0 (without it decoding is greedy and "
		                "top-p would be ignored)\n");
		return 2;
	}
	if (!o->model) {
		fprintf(stderr, "elide: error: no model given\n");
		usage(stderr);
		return 2;
	}
	if (!o->nweights) {
		fprintf(stderr, "elide: error: no weights given (use -w FILE.safetensors)\n");
		return 2;
	}
	if (!o->ntokens) {
		fprintf(stderr, "elide: error: no tokens given (use --tokens 1,17,42)\n");
		return 2;
	}
	return 0;
}

/* The argmax of x[0..n) ignoring NaNs (the first on ties); -1 when all are NaN.
 * *nnan receives the number of NaNs. */
static int
argmax(const float *x, int64_t n, int64_t *nnan)
{
	int64_t b = -1;
	*nnan = 0;
	for (int64_t i = 0; i < n; i++) {
		if (isnan(x[i]))
			++*nnan;
		else if (b < 0 || x[i] > x[b])
			b = i;
	}
	return (int)b;
}

/* Writes rows to path (an exclusive temporary renamed into place: cg_write_file). */
static bool
dump_logits(const char *path, const float *rows, size_t n)
{
	char err[512];
	bool ok = cg_write_file(path, rows, n * sizeof *rows, err, sizeof err);
	if (!ok)
		fprintf(stderr, "elide: error: %s\n", err);
	return ok;
}

/* The entry that returns f32 logits, or NULL after an error. */
static Func *
logits_entry(const RunOpts *o, Module *m, const char *entry)
{
	Func *f = ir_find_func(m, entry);
	if (!f) {
		fprintf(stderr, "%s: error: model '%s' has no entry '%s'\n", o->model, m->name, entry);
		return NULL;
	}
	if (f->nrets < 1 || f->rets[0].dtype != DT_F32) {
		fprintf(stderr, "%s: error: entry '%s' does not return f32 logits\n", o->model, entry);
		return NULL;
	}
	return f;
}

/* The entry to run: the one asked for, else `step` (decoders), else `forward`
 * (encoders); whether it takes the token sequence at once (its first argument is a
 * sequence) or one token at a time. */
static Func *
choose_entry(RunOpts *o, Module *m)
{
	if (!o->entry)
		o->entry = ir_find_func(m, "step") || !ir_find_func(m, "forward") ? "step" : "forward";
	Func *f = logits_entry(o, m, o->entry);
	if (!f)
		return NULL;
	o->sequence = f->nargs > 0 && f->args[0].type.rank > 0;
	if (!o->ngen)
		return f;
	if (!logits_entry(o, m, "step")) /* -n generates with step */
		return NULL;
	if (strcmp(o->entry, "step") != 0 && !o->sequence) {
		fprintf(stderr, "%s: error: -n continues a prompt run by 'step' or by an entry over the whole sequence, "
		                "not by '%s'\n", o->model, o->entry);
		return NULL;
	}
	return f;
}

/* Row r of the run: the prompt (one row for a sequence entry, one per token
 * otherwise), then the generated tokens, each fed to `step` at the next position.
 * Returns false after an error; *next is the argmax (the token the next generated
 * row feeds, unless the caller samples another). */
static bool
run_row(const RunOpts *o, const RunBackend *be, void *ctx, int64_t r, float *row, int32_t *next, char *err,
        size_t nerr)
{
	int64_t nprompt = o->sequence ? 1 : o->ntokens;
	bool ok;
	int64_t p;
	int32_t tok;
	if (r < nprompt && o->sequence) {
		p = o->ntokens - 1;
		tok = o->tokens[p];
		ok = be->run(ctx, o->entry, o->tokens, o->ntokens, 0, row, err, nerr);
	} else {
		p = r < nprompt ? r : o->ntokens + (r - nprompt);
		tok = r < nprompt ? o->tokens[r] : *next;
		ok = p <= INT32_MAX && be->run(ctx, r < nprompt ? o->entry : "step", &tok, 1, (int32_t)p, row, err, nerr);
	}
	if (!ok)
		return false;
	int64_t nnan;
	*next = (int32_t)argmax(row, o->vocab, &nnan);
	if (*next < 0) {
		snprintf(err, nerr, "all %lld logits at position %lld are NaN; there is no token to report",
		         (long long)o->vocab, (long long)p);
		return false;
	}
	if (nnan)
		fprintf(stderr, "elide: warning: %lld of %lld logits at position %lld are NaN; the argmax ignores them\n",
		        (long long)nnan, (long long)o->vocab, (long long)p);
	printf("pos %lld token %d argmax %d logit %.6g\n", (long long)p, tok, *next, row[*next]);
	return true;
}

/* Checks every --knob against the model's knobs (name, number, range, integer for an
 * i32 knob) and sets it; false after an error. */
static bool
apply_knobs(const RunOpts *o, const RunBackend *be, void *ctx, const Module *m)
{
	for (int i = 0; i < o->nknobs; i++) {
		const char *eq = strchr(o->knobs[i], '=');
		char name[256];
		snprintf(name, sizeof name, "%.*s", (int)(eq - o->knobs[i]), o->knobs[i]);
		int32_t k = ir_find_knob(m, name);
		if (k < 0) {
			fprintf(stderr, "elide: error: model '%s' has no knob '%s'", m->name, name);
			for (uint32_t j = 0; j < m->nknobs; j++)
				fprintf(stderr, "%s'%s'", j ? ", " : " (its knobs: ", m->knobs[j].name);
			fprintf(stderr, "%s\n", m->nknobs ? ")" : " (it has none)");
			return false;
		}
		const Knob *kn = &m->knobs[k];
		char *end;
		errno = 0;
		double v = strtod(eq + 1, &end);
		bool ok = end != eq + 1 && !*end && !errno && v >= kn->lo && v <= kn->hi;
		if (ok && kn->dtype == DT_I32 && v != (double)(int64_t)v)
			ok = false;
		if (!ok) {
			fprintf(stderr, "elide: error: invalid value '%s' for knob '%s' (expected %s in [%g, %g])\n", eq + 1,
			        name, kn->dtype == DT_I32 ? "an integer" : "a number", kn->lo, kn->hi);
			return false;
		}
		char err[256];
		if (!be->set_knob(ctx, (uint32_t)k, v, err, sizeof err)) {
			fprintf(stderr, "elide: error: %s\n", err);
			return false;
		}
	}
	return true;
}

/* The statistics of the run, the same lines for every backend. */
static void
print_stats(const RunBackend *be, void *ctx, const Module *m)
{
	int64_t st[3];
	int64_t *slots = xcalloc(m->nstats + 1, sizeof *slots);
	be->stats(ctx, st, slots);
	printf("stats: calls %lld tokens %lld layers %lld (%.2f of %d per token)\n", (long long)st[0],
	       (long long)st[1], (long long)st[2], st[1] ? (double)st[2] / (double)st[1] : 0.0, m->nlayers);
	for (uint32_t k = 0; k < m->nstats; k++)
		printf("stat %s %lld\n", m->stats[k].name, (long long)slots[k]);
	free(slots);
}

static int
execute(RunOpts *o, const RunBackend *be, Module *m)
{
	Func *f = choose_entry(o, m);
	if (!f)
		return 1;
	o->vocab = ir_type_numel(f->rets[0]);
	int64_t nrows = (o->sequence ? 1 : o->ntokens) + o->ngen;
	float *logits = xcalloc((size_t)(nrows * o->vocab), sizeof *logits);
	char err[512] = "";
	void *ctx = be->open(m, err, sizeof err);
	if (!ctx) {
		fprintf(stderr, "elide: error: %s\n", err);
		free(logits);
		return 1;
	}
	if (!apply_knobs(o, be, ctx, m)) {
		be->close(ctx);
		free(logits);
		return 2;
	}
	int rc = 0;
	int32_t next = 0;
	uint64_t rng = o->seed;
	void *scratch = xmalloc(ELIDE_TOP_P_SCRATCH(o->vocab));
	for (int64_t r = 0; r < nrows && rc == 0; r++) {
		float *row = logits + r * o->vocab;
		if (!run_row(o, be, ctx, r, row, &next, err, sizeof err)) {
			fprintf(stderr, "elide: error: %s\n", err);
			rc = 1;
		} else if (o->temperature > 0 && r + 1 >= nrows - o->ngen) { /* the next row is generated */
			next = elide_sample_top_p(row, (int32_t)o->vocab, o->temperature, o->top_p, &rng, scratch,
			                          ELIDE_TOP_P_SCRATCH(o->vocab));
		}
	}
	free(scratch);
	if (rc == 0)
		print_stats(be, ctx, m);
	be->close(ctx);
	if (rc == 0 && o->dump && !dump_logits(o->dump, logits, (size_t)(nrows * o->vocab)))
		rc = 1;
	free(logits);
	return rc;
}

int
cmd_run(int argc, char **argv)
{
	RunOpts o = { .top_p = 1 };
	int rc = parse_args(argc, argv, &o);
	if (rc) {
		free(o.tokens);
		free(o.knobs);
		return rc < 0 ? 0 : rc;
	}
	const RunBackend *be = o.interp ? &interp_backend : &jit_backend;
	/* static: fe_load keeps the sources it registers with d for the life of the
	 * process, so they stay reachable from here until exit */
	static Diag d;
	diag_init(&d, stderr);
	Module *m = cmd_load_model(o.model, o.policy, &d);
	/* the graph that runs is the one `elide compile` would build: verified, weights
	 * loaded (policy passes score and slice them), then the default pipeline */
	if (!m || !ir_verify(m, &d) || !ir_load_weights(m, o.weights, o.nweights, &d) || !pass_run_default_opts(m, &o.passes, &d)) {
		ir_free_module(m);
		free(o.tokens);
		free(o.knobs);
		return 1;
	}
	rc = execute(&o, be, m);
	ir_free_module(m);
	free(o.tokens);
	free(o.knobs);
	return rc;
}
