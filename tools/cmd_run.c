/* cmd_run.c - `elide run`: load a model and its weights, feed a token sequence, print
 * the argmax of the logits at every position (and optionally dump the raw logits).
 *   elide run [--interp] MODEL.elide -w W.safetensors --tokens 1,17,42
 *             [--policy P] [--entry NAME | --prefill] [-n N [--temperature T]
 *             [--top-p P] [--seed S]] [--dump-logits FILE]
 * Decode (default) feeds the tokens one at a time through `step` at positions 0, 1,
 * 2, ...; an entry over a token sequence (--prefill, or an encoder's `forward`, the
 * default when there is no `step`) runs once over the whole sequence and prints the
 * last position.  -n N then generates N tokens: each step feeds, at the next
 * position, the token chosen from the previous logits (the argmax, or a draw of the
 * runtime's temperature / top-p sampler).  The backend that executes the entries is
 * a RunBackend: the reference interpreter (--interp) or the JIT.  Both run the module after ir_verify, the
 * weights and the default pass pipeline (which applies the policy's passes). */
#include <errno.h>
#include <limits.h>
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
} RunBackend;

/* ---- the interpreter backend ---- */

static void *
interp_open(Module *m, char *err, size_t nerr)
{
	(void)err;
	(void)nerr;
	return interp_new(m);
}

static bool
interp_call(void *ctx, const char *entry, const int32_t *tokens, int64_t ntokens, int32_t pos, float *out,
            char *err, size_t nerr)
{
	return interp_run(ctx, entry, tokens, ntokens, pos, out, err, nerr);
}

static void
interp_close(void *ctx)
{
	interp_free(ctx);
}

static const RunBackend interp_backend = { "interp", interp_open, interp_call, interp_close };

/* The JIT backend: codegen/run_jit.c (ORC LLJIT of the compiled module). */
static const RunBackend jit_backend = { "jit", cg_run_open, cg_run_call, cg_run_close };

/* ---- options ---- */

typedef struct RunOpts {
	const char *model;
	const char *weights;      /* the first weights file (NULL: none given) */
	const char *wfiles[64];   /* every -w, in order (a checkpoint in shards) */
	uint32_t nw;
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
	bool sequence;     /* the entry takes the whole token sequence at once */
	bool interp;
} RunOpts;

static void
usage(FILE *out)
{
	fprintf(out, "USAGE: elide run [--interp] MODEL.elide -w WEIGHTS.safetensors --tokens 1,17,42 [options]\n\n"
	             "OPTIONS:\n"
	             "  --interp             run with the reference interpreter\n"
	             "  -w, --weights FILE   safetensors file with the model's weights; repeat it for a\n"
	             "                       checkpoint in shards\n"
	             "  --tokens LIST        comma-separated token ids\n"
	             "  --policy NAME        the policy to apply (default: dense)\n"
	             "  --entry NAME         the entry to run (default: step, else forward); an entry\n"
	             "                       over a token sequence runs once over all tokens\n"
	             "  --prefill            the same as --entry prefill\n"
	             "  -n N                 then generate N tokens with the step entry\n"
	             "  --temperature T      sample the generated tokens at temperature T (default 0: greedy)\n"
	             "  --top-p P            sample from the smallest set of tokens of mass P (default 1);\n"
	             "                       needs --temperature\n"
	             "  --seed S             seed of the sampler (default 0)\n"
	             "  --dump-logits FILE   write the logits of every printed position as raw float32\n");
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
			if (o->nw == 64) {
				fprintf(stderr, "elide: error: more than 64 weights files\n");
				return 2;
			}
			if (!o->weights)
				o->weights = val;
			o->wfiles[o->nw++] = val;
		} else if (TAKES("--policy")) {
			o->policy = val;
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
	if (!o->weights) {
		fprintf(stderr, "elide: error: no weights given (use -w FILE.safetensors)\n");
		return 2;
	}
	if (!o->ntokens) {
		fprintf(stderr, "elide: error: no tokens given (use --tokens 1,17,42)\n");
		return 2;
	}
	return 0;
}

static int
argmax(const float *x, int64_t n)
{
	int64_t b = 0;
	for (int64_t i = 1; i < n; i++)
		if (x[i] > x[b])
			b = i;
	return (int)b;
}

/* Writes rows to path through a temporary file, renamed when complete. */
static bool
dump_logits(const char *path, const float *rows, size_t n)
{
	size_t len = strlen(path) + 16;
	char *tmp = xmalloc(len);
	snprintf(tmp, len, "%s.tmp", path);
	FILE *f = fopen(tmp, "wb");
	bool ok = f && fwrite(rows, sizeof *rows, n, f) == n;
	if (f && fclose(f) != 0)
		ok = false;
	if (ok && rename(tmp, path) != 0)
		ok = false;
	if (!ok) {
		fprintf(stderr, "elide: error: cannot write '%s': %s\n", path, strerror(errno));
		remove(tmp);
	}
	free(tmp);
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
	*next = (int32_t)argmax(row, o->vocab);
	printf("pos %lld token %d argmax %d logit %.6g\n", (long long)p, tok, *next, row[*next]);
	return true;
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
		return rc < 0 ? 0 : rc;
	}
	const RunBackend *be = o.interp ? &interp_backend : &jit_backend;
	/* static: fe_load keeps the sources it registers with d for the life of the
	 * process, so they stay reachable from here until exit */
	static Diag d;
	diag_init(&d, stderr);
	Module *m = fe_load(o.model, o.policy, &d);
	/* the graph that runs is the one `elide compile` would build: verified, weights
	 * loaded (policy passes score and slice them), then the default pipeline */
	if (!m || !ir_verify(m, &d) || !ir_load_params_files(m, o.wfiles, o.nw, &d, NULL, NULL) || !pass_run_default(m, &d)) {
		ir_free_module(m);
		free(o.tokens);
		return 1;
	}
	rc = execute(&o, be, m);
	ir_free_module(m);
	free(o.tokens);
	return rc;
}
